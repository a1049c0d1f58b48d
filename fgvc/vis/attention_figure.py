"""The attention figure: one row per image with the input, the mean map as a heat overlay (and the object
box, where the method localises one) and, on request, the individual maps. It draws what one
:meth:`fgvc.methods.base.Method.infer` pass returned; it runs no model and imports no method.

Methods without part maps (``Outputs.maps`` is None) are drawn with a class activation map stand-in: the
channel mean of the backbone's feature map (``Outputs.feature_map``); the figure's title says so.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from fgvc.methods.base import Outputs
from fgvc.vis.overlay import check_batch, denormalize, heat_overlay, save_figure, upsample_maps

__all__ = ["draw_attention", "maps_or_cam", "figure_pixels", "MAP_MODES", "CAM_NOTE"]

MAP_MODES = ("mean", "top4", "all")
PANEL_IN, ROW_TITLE_IN, HEADER_IN, DPI = 2.0, 0.4, 0.5, 100
MAX_MAPS = 32  # --maps all draws at most this many maps per image
CAM_NOTE = "no attention maps: CAM = channel mean of the backbone's last feature map"


def figure_pixels(n_images: int, n_cols: int) -> tuple[int, int]:
    """(width, height) in pixels of the figure :func:`draw_attention` writes."""
    w = n_cols * PANEL_IN * DPI
    h = (HEADER_IN + n_images * (PANEL_IN + ROW_TITLE_IN)) * DPI
    return int(round(w)), int(round(h))


def maps_or_cam(out: Outputs) -> tuple[Tensor, bool]:
    """``(maps: B, M, h, w, is_cam)``: the method's part maps, or the channel mean of its feature map."""
    if out.maps is None:
        return out.feature_map.float().mean(1, keepdim=True), True  # B, 1, h, w
    if out.maps.ndim != 4 or out.maps.shape[0] != out.feature_map.shape[0]:
        raise ValueError(f"Outputs.maps has shape {tuple(out.maps.shape)}; the Method contract is B, M, h, w "
                         "(see fgvc/methods/base.py)")
    return out.maps.float(), False


def _label(class_names: Sequence[str], k: int, width: int = 28) -> str:
    name = str(class_names[k]) if 0 <= k < len(class_names) else f"class {k}"
    return name if len(name) <= width else name[: width - 1] + "~"


def draw_attention(
    out: Outputs,
    images: Tensor,
    targets: Tensor | Sequence[int],
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    path: str | Path,
    maps: str = "mean",
    title: str | None = None,
    map_name: str | None = None,
) -> Path:
    """Write the attention figure of ``images: B, 3, H, W`` (normalised by ``mean``/``std``) and the ``out`` of
    their inference pass to ``path``. ``maps``: ``mean`` (input + mean-map overlay), ``top4`` (+ the 4 maps of
    largest mass), ``all`` (+ every map, at most :data:`MAX_MAPS`). ``map_name`` labels the overlay panel instead of
    "mean of M maps" (e.g. "attention rollout"). Returns the path written."""
    if maps not in MAP_MODES:
        raise ValueError(f"maps must be one of {MAP_MODES}, got '{maps}'")
    check_batch(images)
    targets_t = torch.as_tensor(targets).long().flatten().cpu()
    if len(targets_t) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets_t)} targets")
    raw_maps, is_cam = maps_or_cam(out)
    raw_maps = raw_maps.cpu()
    conf, pred = out.prediction.float().softmax(1).cpu().max(1)
    m = raw_maps.shape[1]
    mass = raw_maps.clamp_min(0).flatten(2).sum(-1)  # B, M
    share = mass / mass.sum(1, keepdim=True).clamp_min(1e-12)  # B, M
    n_extra = 0 if is_cam or maps == "mean" else min(4, m) if maps == "top4" else min(m, MAX_MAPS)
    heading = title or f"attention ({'mean map' if n_extra == 0 else maps} over {m} maps)"
    if is_cam:
        heading = f"{title} - {CAM_NOTE}" if title else CAM_NOTE
    if maps == "all" and m > MAX_MAPS and not is_cam:
        heading += f" (first {MAX_MAPS} of {m} maps)"
    head_note = f", {out.headline}" if len(out.logits) > 1 else ""
    rows = []
    for i in range(len(images)):
        t, p = int(targets_t[i]), int(pred[i])
        text = f"true: {_label(class_names, t)}  |  pred: {_label(class_names, p)}  ({float(conf[i]):.0%}{head_note})"
        order = share[i].argsort(descending=True)[:n_extra] if maps == "top4" else torch.arange(n_extra)
        rows.append((text, t == p, order))
    boxes = None if out.boxes is None else out.boxes.float().cpu()
    return _render(images, raw_maps, share, is_cam, rows, boxes, mean, std, heading, Path(path), map_name)


def _render(images: Tensor, raw_maps: Tensor, share: Tensor, is_cam: bool, rows: list, boxes: Tensor | None,
            mean: Sequence[float], std: Sequence[float], heading: str, path: Path, map_name: str | None = None) -> Path:
    """The matplotlib part of :func:`draw_attention`: one sub-figure per image row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    size, m = tuple(images.shape[-2:]), raw_maps.shape[1]
    label = "CAM (feature mean)" if is_cam else map_name or f"mean of {m} maps"
    n_cols = 2 + len(rows[0][2])
    mean_maps = upsample_maps(raw_maps.mean(1, keepdim=True), size)[:, 0]  # B, H, W
    w_px, h_px = figure_pixels(len(rows), n_cols)
    fig = plt.figure(figsize=(w_px / DPI, h_px / DPI), dpi=DPI)
    header_frac = HEADER_IN * DPI / h_px
    head, body = fig.subfigures(2, 1, height_ratios=[header_frac, 1 - header_frac])
    chars = max(int(n_cols * PANEL_IN / 0.075), 30)  # ~characters per line at 8 pt (row titles)
    head_chars = int(n_cols * PANEL_IN * 72 / (0.62 * 7.5))  # bold 7.5 pt: 3 lines fit the header
    head.text(0.5, 0.5, textwrap.fill(heading, head_chars), ha="center", va="center", fontsize=7.5, weight="bold")
    subs = body.subfigures(len(rows), 1) if len(rows) > 1 else [body]
    for i, (text, ok, order) in enumerate(rows):
        img = denormalize(images[i], mean, std)  # H, W, 3
        subs[i].suptitle(textwrap.fill(text, chars), color="green" if ok else "red", fontsize=8, y=0.985, va="top")
        axes = subs[i].subplots(1, n_cols, squeeze=False)[0]
        subs[i].subplots_adjust(left=0.02, right=0.98, bottom=0.08, top=PANEL_IN / (PANEL_IN + ROW_TITLE_IN) - 0.02,
                                wspace=0.06)
        axes[0].imshow(img)
        axes[0].set_xlabel("input", fontsize=7)
        axes[1].imshow(heat_overlay(img, mean_maps[i].numpy(), 0.5))
        axes[1].set_xlabel(label, fontsize=7)
        if boxes is not None:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            axes[1].add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor="white",
                                        linewidth=1.5, linestyle="--"))
            axes[1].set_xlabel(f"{'CAM' if is_cam else label} + object box", fontsize=7)
        if len(order):
            ups = upsample_maps(raw_maps[i : i + 1, order], size)[0]  # n_extra, H, W
            for j, k in enumerate(order.tolist()):
                axes[2 + j].imshow(heat_overlay(img, ups[j].numpy(), 0.5))
                axes[2 + j].set_xlabel(f"map {k} ({float(share[i, k]):.0%} of mass)", fontsize=7)
        for ax in axes:
            ax.set_xticks([]), ax.set_yticks([])
    return save_figure(fig, path, DPI)
