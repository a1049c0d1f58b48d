"""Helpers of the deploy tests."""
from __future__ import annotations

from pathlib import Path


def files_under(folder: Path) -> set[Path]:
    """Every file and folder below ``folder`` (to check that a failed command left nothing behind)."""
    return set(folder.rglob("*"))
