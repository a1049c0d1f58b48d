"""Fixtures shared by every test folder."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

TINY_RECIPE = """
seed: 1
data: {{name: cub200, root: {root}, img_size: 32, resize: 36, num_workers: 0, val_split: null,
        augment: {{hflip: false}}}}
model: {{name: baseline, backbone: test_resnet.r160_in1k, pretrained: false}}
train: {{epochs: 1, batch_size: 4, lr: 0.01, device: cpu, threads: 1, warmup_epochs: 0}}
eval: {{batch_size: 5}}
{extra}"""


def write_tiny_recipe(path: Path, root: Path, extra: str = "") -> Path:
    """A CPU-second recipe on a synthetic set at ``root`` (tiny ResNet, 32 px, no pretrained weights), plus ``extra``
    YAML lines."""
    path.write_text(TINY_RECIPE.format(root=root, extra=extra))
    return path


@pytest.fixture(scope="session")
def tiny_recipe() -> Callable[..., Path]:
    """:func:`write_tiny_recipe`: ``tiny_recipe(path, data_root, extra="")`` writes the recipe and returns its path."""
    return write_tiny_recipe
