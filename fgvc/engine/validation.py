"""The per-epoch validation of the trainer: one pass over the validation split, the metrics of its row.

``val_top1`` and ``val_<head>_top1`` of every other head come from the classification protocol's own
:func:`~fgvc.metrics.accuracy.classification_metrics` (so they equal what ``fgvc.evaluate --split val``
reports), and ``val_loss`` is the mean cross-entropy (nats, no label smoothing) of the headline logits: a
method's training loss may add terms (WS-DAN's center loss, views) that say nothing about generalisation, so the
validation loss is plain cross-entropy for every method. ``val_loss_se`` is its standard error and ``val_n`` the
number of images validated: :mod:`fgvc.metrics.fit_verdict` reads all four, the last two to tell overfitting from noise.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch.nn.functional as F

from fgvc.metrics.accuracy import classification_metrics

if TYPE_CHECKING:
    from fgvc.engine.inference import TrainedRun

__all__ = ["validate"]


def validate(run: "TrainedRun", split: str) -> dict[str, Any]:
    """``{"val_top1", "val_loss", "val_loss_se", "val_n", "val_<head>_top1" ...}`` of ``run`` on ``split`` (one
    pass, no TTA)."""
    got = run.collect(split, ["logits"])
    res = classification_metrics(got.logits, got.headline, got.targets)
    row: dict[str, Any] = {"val_top1": res["top1"]}
    row.update({f"val_{k}": v for k, v in res.items() if k.endswith("_top1") and k != "top1"})
    n = int(got.targets.numel())
    ce = F.cross_entropy(got.prediction.float(), got.targets.long(), reduction="none")
    row["val_loss"] = float(ce.mean()) if n else math.nan
    row["val_loss_se"] = float(ce.std() / math.sqrt(n)) if n > 1 else math.nan  # its standard error
    row["val_n"] = n  # the split's size: fgvc.metrics.fit_verdict tells a real gap from noise with it
    return row
