"""The statistics of an ablation table: mean and sample standard deviation over seeds."""
from __future__ import annotations

import statistics
from typing import Sequence

__all__ = ["mean_std"]


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); the std is None below two values, both None for none."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)
