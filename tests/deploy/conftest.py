"""Fixtures of the deploy tests: one tiny synthetic set and one tiny trained run (baseline, 32 px), shared."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def deploy_data(synthetic_set) -> Path:
    return synthetic_set(4)


@pytest.fixture(scope="session")
def deploy_run(deploy_data, tiny_run) -> Path:
    """A baseline trained for two steps: a real run directory with checkpoints/last.pt (no best.pt)."""
    return tiny_run(deploy_data, "train.max_steps=2")
