"""Fixtures of the data-layer tests: tiny fake CUB-200-2011 / Flowers 102 trees in tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest
from data_fakes import SHARED, make_cub, make_flowers


@pytest.fixture
def fake_cub(tmp_path: Path) -> Path:
    """3 classes with ids 3, 7, 12; 4 train + 2 test images each; boxes and 15 parts per image."""
    return make_cub(tmp_path / "cub")


@pytest.fixture
def fake_flowers(tmp_path: Path) -> Path:
    """12 images of classes 2, 5, 7, 9; 3 train / 3 val / 3 test listed (class 7 has none listed)."""
    return make_flowers(tmp_path / "flowers", names={"5": "rose", "9": "tulip"})


@pytest.fixture
def shared_data() -> Path:
    """The real data beside the repository (../shared/data); skips when absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path
