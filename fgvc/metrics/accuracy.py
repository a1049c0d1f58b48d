"""Classification metrics: top-k, mean per-class accuracy, per-class table, confusion matrix.

Fine-grained papers report top-1 over all test images; with unbalanced classes the mean of
per-class accuracies is the fairer number, so both are reported.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

__all__ = ["topk_correct", "summarize", "classification_metrics", "per_class_table", "confusion_matrix"]


def topk_correct(logits: Tensor, targets: Tensor, k: int = 1) -> Tensor:
    """Bool ``B``: the target is among the ``k`` highest logits."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices  # B, k
    return (top == targets[:, None]).any(dim=1)


def confusion_matrix(preds: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[t, p]`` = number of images of class t predicted as p."""
    idx = targets.astype(np.int64) * num_classes + preds.astype(np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def summarize(logits: Tensor, targets: Tensor) -> dict[str, float]:
    """top1/top5 (percent), mean per-class accuracy (percent, over classes present) and n_images."""
    n = int(targets.numel())
    if n == 0:
        return {"top1": float("nan"), "top5": float("nan"), "mean_class_acc": float("nan"), "n_images": 0}
    top1 = topk_correct(logits, targets, 1)
    top5 = topk_correct(logits, targets, 5)
    present = torch.unique(targets)
    per_class = torch.stack([top1[targets == c].float().mean() for c in present])
    return {
        "top1": 100.0 * top1.float().mean().item(),
        "top5": 100.0 * top5.float().mean().item(),
        "mean_class_acc": 100.0 * per_class.mean().item(),
        "n_images": n,
    }


def per_class_table(logits: Tensor, targets: Tensor, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per class: name, n_images, correct, accuracy (percent), most confused with."""
    preds = logits.argmax(1).numpy()
    t = targets.numpy()
    cm = confusion_matrix(preds, t, len(class_names))
    rows = []
    for c, name in enumerate(class_names):
        n = int(cm[c].sum())
        off = cm[c].copy()
        off[c] = 0
        worst = int(off.argmax()) if off.sum() else -1
        rows.append({
            "class_index": c,
            "class_name": name,
            "n_images": n,
            "correct": int(cm[c, c]),
            "accuracy": 100.0 * cm[c, c] / n if n else float("nan"),
            "most_confused_with": class_names[worst] if worst >= 0 else "",
            "n_confused": int(off.max()) if off.sum() else 0,
        })
    return pd.DataFrame(rows)


def classification_metrics(logits: dict[str, Tensor], headline: str, targets: Tensor) -> dict[str, Any]:
    """``summarize`` of the headline plus ``<head>_top1`` for every head; ``prediction`` names the headline."""
    result: dict[str, Any] = summarize(logits[headline], targets)
    result["prediction"] = headline
    for key, value in logits.items():
        result[f"{key}_top1"] = summarize(value, targets)["top1"]
    return result
