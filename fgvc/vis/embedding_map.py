"""The embedding map: 2-D points (a t-SNE, van der Maaten & Hinton 2008; UMAP, McInnes et al. 2018; or PCA
projection, :mod:`fgvc.vis.projection`) coloured by class, with a legend of class names outside the axes and the
most-confused class pairs marked by a numbered line between the two classes' centroids.

Colours: ``tab10`` up to 10 classes, ``tab20`` beyond; past 20 classes the colours repeat with another marker
(circle, square, triangle, ...), so 200 classes get 200 distinct colour x marker styles. The legend gets more
columns and a smaller font as the number of classes grows. This module only draws (no model, no projection).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from fgvc.metrics.confusions import Pair
from fgvc.vis.overlay import save_figure

__all__ = ["MARKERS", "class_style", "legend_layout", "draw_embedding_map"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
DPI = 110
PLOT_IN = 7.0  # the square plot's side, inches
NAME_CHARS = 28  # legend names are cut to this many characters


def class_style(k: int, num_classes: int) -> tuple[tuple[float, float, float, float], str]:
    """(RGBA colour, marker) of class ``k``: ``tab10``/``tab20`` colours, a new marker every 10/20 classes."""
    from matplotlib import colormaps

    n = 10 if num_classes <= 10 else 20
    cmap = colormaps["tab10" if n == 10 else "tab20"]
    return tuple(cmap(k % n)), MARKERS[(k // n) % len(MARKERS)]


def legend_layout(num_classes: int) -> tuple[int, float]:
    """(columns, font size in points) of the legend: one column up to 30 classes, then about 40 per column;
    the font shrinks from 8 pt to 4.5 pt as classes are added."""
    cols = 1 if num_classes <= 30 else math.ceil(num_classes / 40)
    size = float(np.clip(8.5 - num_classes / 40, 4.5, 8.0))
    return cols, size


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "~"


def draw_embedding_map(points: np.ndarray, labels: Sequence[int] | np.ndarray, class_names: Sequence[str],
                       path: str | Path, pairs: Sequence[Pair] = (), title: str | None = None,
                       pairs_note: str = "confusions") -> Path:
    """Write the map of ``points: N, 2`` (class indices ``labels: N`` into ``class_names``) to ``path`` (PNG).

    ``pairs``: class pairs of :func:`fgvc.metrics.confusions.confused_pairs`, each drawn as a
    dashed line between the two classes' centroids, numbered by rank and listed under the plot with its
    ``count`` ``pairs_note`` (e.g. "test confusions" or "kNN confusions"). Returns the path written."""
    pts = np.asarray(points, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    k = len(class_names)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) != len(y):
        raise ValueError(f"points must be N x 2 with one label each; got {pts.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must index the {k} class names; got {y.min()}..{y.max()}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    present = sorted(set(y.tolist()))
    cols, size = legend_layout(len(present))
    col_in = (min(max((len(_short(str(class_names[c]))) for c in present), default=4), NAME_CHARS) * 0.62 + 2.5) \
        * size / 72
    pair_lines = [f"{r + 1}. {_short(str(class_names[i]))} <-> {_short(str(class_names[j]))}: {n} {pairs_note}"
                  for r, (i, j, n) in enumerate(p.unordered() for p in pairs)]
    head_in, foot_in, margin = 0.55, 0.25 + 0.16 * len(pair_lines), 0.3
    width, height = margin + PLOT_IN + 0.2 + cols * col_in + 0.2, head_in + PLOT_IN + foot_in + 0.3
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((margin / width, (foot_in + 0.3) / height, PLOT_IN / width, PLOT_IN / height))
    dot = float(np.clip(3000 / max(len(pts), 1), 4, 30))
    handles = []
    for c in present:
        colour, marker = class_style(c, k)
        sel = y == c
        ax.scatter(pts[sel, 0], pts[sel, 1], s=dot, color=colour, marker=marker, alpha=0.8, linewidths=0)
        handles.append(Line2D([], [], color=colour, marker=marker, linestyle="", markersize=size * 0.8,
                              label=_short(str(class_names[c]))))
    centroids = {c: pts[y == c].mean(0) for c in present}
    for r, (i, j, n) in enumerate(p.unordered() for p in pairs):
        if i not in centroids or j not in centroids:
            continue
        (x1, y1), (x2, y2) = centroids[i], centroids[j]
        ax.plot([x1, x2], [y1, y2], color="black", linestyle="--", linewidth=1.2, alpha=0.8, zorder=3)
        ax.scatter([x1, x2], [y1, y2], s=40, facecolors="none", edgecolors="black", linewidths=1.2, zorder=4)
        ax.annotate(f"{r + 1}", ((x1 + x2) / 2, (y1 + y2) / 2), fontsize=8, weight="bold", ha="center", va="center",
                    zorder=5, bbox={"boxstyle": "circle,pad=0.2", "facecolor": "white", "edgecolor": "black"})
    ax.set_xticks([]), ax.set_yticks([])
    fig.legend(handles=handles, loc="upper left", ncols=cols, fontsize=size, frameon=False, handletextpad=0.2,
               columnspacing=0.6, borderaxespad=0.0, labelspacing=0.25,
               bbox_to_anchor=((margin + PLOT_IN + 0.2) / width, 1 - head_in / height))
    if title:
        fig.text(0.5, 1 - 0.08 / height, textwrap.fill(title, int(width * 14)), ha="center", va="top", fontsize=9,
                 weight="bold")
    if pair_lines:
        fig.text(margin / width, (foot_in + 0.15) / height, "most confused pairs (numbered on the map):\n"
                 + "\n".join(pair_lines), ha="left", va="top", fontsize=7.5)
    return save_figure(fig, path, DPI)
