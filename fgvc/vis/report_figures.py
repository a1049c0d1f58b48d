"""Figures and thumbnails of the HTML run report (matplotlib, Agg backend; no model).

* :func:`confusion_figure`: the confusion matrix as a heat map, rows normalised to the share of each true class (so
  that classes with few test images read like the others), class names on the axes up to 40 classes;
* :func:`photo` / :func:`seen_by_model`: a data set image as the file is (the thumbnail a person recognises) or as
  the model saw it (resized, centre-cropped, de-normalised), for CAM overlays.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fgvc.data.base import BadImageError, load_image
from fgvc.vis.overlay import denormalize

__all__ = ["confusion_figure", "photo", "seen_by_model", "MAX_TICK_CLASSES"]

MAX_TICK_CLASSES = 40  # above this many classes the axes carry indices only


def confusion_figure(cm: np.ndarray, class_names: Sequence[str], title: str = "") -> Any:
    """``cm: K, K`` (true x predicted counts) as a heat map of row shares (0-100 %)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    rows = cm.sum(1, keepdims=True).astype(np.float64)
    share = np.divide(100.0 * cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    side = min(11.0, max(5.0, 0.22 * k + 3.0))
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
    if k <= MAX_TICK_CLASSES:
        names = [n if len(n) <= 24 else n[:23] + "\u2026" for n in class_names]
        size = 8 if k <= 25 else 6
        ax.set_xticks(range(k), names, rotation=90, fontsize=size)
        ax.set_yticks(range(k), names, fontsize=size)
        if k <= 25:  # counts in the off-diagonal cells that are not zero
            for i, j in zip(*np.nonzero(cm)):
                if i != j:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color="#c62828")
    ax.set_xlabel("predicted class"), ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="% of the true class")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def photo(path: str | Path, max_side: int = 320) -> np.ndarray | None:
    """The image file as ``H, W, 3`` uint8 (:func:`fgvc.data.base.load_image`), shrunk to at most ``max_side`` px a
    side; None when unreadable."""
    from PIL import Image


    try:
        im = Image.fromarray(load_image(path))
    except BadImageError:
        return None
    im.thumbnail((max_side, max_side))
    return np.asarray(im)


def seen_by_model(image: Any, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised ``3, H, W`` tensor back to ``H, W, 3`` floats in [0, 1]."""
    return denormalize(image, mean, std)
