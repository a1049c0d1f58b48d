"""Fixtures of the deploy tests: one tiny synthetic set, one tiny trained run (baseline, 32 px), shared, and a tiny
recipe on that set (for untrained runs of every method, :func:`deploy_helpers.untrained`)."""
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


@pytest.fixture(scope="module")
def recipe(deploy_data, tiny_recipe, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("deploy_recipe")
    return tiny_recipe(folder / "r.yaml", deploy_data, f"output: {{root: {folder / 'runs'}}}\n")
