"""The figures of ``fgvc.explain``: one PNG per image (the input and its class activation map as a heat overlay,
titled with the true and predicted class and the probability) and one grid of every overlay.

Maps come from :func:`fgvc.vis.cam.cam_maps` (Grad-CAM, Selvaraju et al. 2017; Grad-CAM++, Chattopadhay et al.
2018; Score-CAM, Wang et al. 2020); this module only draws (it runs no model), with the helpers of
:mod:`fgvc.vis.overlay`.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fgvc.vis.overlay import heat_overlay, save_figure

__all__ = ["CamPanel", "draw_cam_image", "draw_cam_grid", "grid_shape", "DPI"]

DPI = 100
PANEL_IN = 2.4  # inches per image panel
TITLE_IN = 0.5  # inches above each panel of the grid for its caption


@dataclass
class CamPanel:
    """One explained image: ``image: H, W, 3`` in ``[0, 1]``, ``heat: H, W`` in ``[0, 1]`` and its captions."""

    image: np.ndarray
    heat: np.ndarray
    true: str | None  # None: unknown (an arbitrary photo)
    pred: str
    prob: float  # of the predicted class
    explained: str  # the class the map explains
    name: str = ""  # the image's file name or dataset index, for the caption

    @property
    def correct(self) -> bool | None:
        return None if self.true is None else self.true == self.pred

    def caption(self, width: int = 34) -> str:
        def short(s: str) -> str:
            return s if len(s) <= width else s[: width - 1] + "~"

        true = "?" if self.true is None else short(self.true)
        return f"true: {true}\npred: {short(self.pred)} ({self.prob:.0%})"


def _colour(ok: bool | None) -> str:
    return "black" if ok is None else "green" if ok else "red"


def _figure(width_in: float, height_in: float):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width_in, height_in), dpi=DPI)


def draw_cam_image(panel: CamPanel, path: str | Path, what: str, alpha: float = 0.5) -> Path:
    """Input | overlay, one PNG; ``what`` names the map (e.g. ``Grad-CAM @ backbone.model.layer4``)."""
    head, foot, gap = 0.5, 0.45, 0.1  # inches: caption above, labels below, between the panels
    width, height = 2 * PANEL_IN + 3 * gap, head + PANEL_IN + foot
    plt, fig = _figure(width, height)
    name = f"{panel.name}: " if panel.name else ""
    fig.text(0.5, 1 - 0.06 / height, f"{name}{panel.caption(48)}".replace("\n", "  |  ", 1) + f"\nmap of: "
             f"{panel.explained}", ha="center", va="top", fontsize=8, color=_colour(panel.correct))
    for j, (img, label) in enumerate([(panel.image, "input"),
                                      (heat_overlay(panel.image, panel.heat, alpha), what)]):
        ax = fig.add_axes((((gap + j * (PANEL_IN + gap)) / width), foot / height, PANEL_IN / width, PANEL_IN / height))
        ax.imshow(img)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlabel(textwrap.fill(label, 44), fontsize=7)
    return save_figure(fig, path, DPI)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of the grid for ``n`` panels: at most 6 columns, as square as possible."""
    cols = min(6, max(1, math.ceil(math.sqrt(n))))
    return max(1, math.ceil(n / cols)), cols


def draw_cam_grid(panels: Sequence[CamPanel], path: str | Path, title: str, alpha: float = 0.5) -> Path:
    """Every overlay of ``panels`` in a grid (captions green when right, red when wrong, black when unknown)."""
    if not panels:
        raise ValueError("draw_cam_grid needs at least one panel")
    rows, cols = grid_shape(len(panels))
    head, gap = 0.35, 0.08  # inches: the title band, the margin around each panel
    cell_w, cell_h = PANEL_IN + gap, PANEL_IN + TITLE_IN
    width, height = cols * cell_w + gap, head + rows * cell_h + gap
    plt, fig = _figure(width, height)
    fig.text(0.5, 1 - 0.05 / height, textwrap.fill(title, int(width * 13)), ha="center", va="top", fontsize=8,
             weight="bold")
    for k, panel in enumerate(panels):
        r, c = divmod(k, cols)
        bottom = height - head - (r + 1) * cell_h
        ax = fig.add_axes(((gap + c * cell_w) / width, bottom / height, PANEL_IN / width, PANEL_IN / height))
        ax.imshow(heat_overlay(panel.image, panel.heat, alpha))
        ax.set_xticks([]), ax.set_yticks([])
        caption = (f"{panel.name}\n" if panel.name else "") + panel.caption(30)
        ax.set_title(caption, fontsize=6.5, color=_colour(panel.correct), pad=2)
    return save_figure(fig, path, DPI)
