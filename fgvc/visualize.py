"""``python -m fgvc.visualize RUN_DIR_OR_CHECKPOINT [--split test] [--n 8] [--indices 0 5 9] [--maps mean|all|top4]
[--out PATH.png] [--checkpoint last|best] [--set k=v ...]``

Draws what a trained method looks at: for N images of a split (evenly spaced over the split, or the
given ``--indices``), one PNG with a row per image: the de-normalised input, the mean attention map as a
jet heat overlay (alpha 0.5) and, with ``--maps top4`` / ``all``, the 4 maps with the largest mass / every
map. Each row's title is the true class vs the predicted class (green if right, red if wrong) and the
confidence of the headline prediction (the first key of ``predict_all``). For WS-DAN the box of the object
crop its refined pass classifies (mean map above ``test_theta`` = 0.1 of its max) is drawn in white.

Methods without attention maps (``attention_maps`` returns None) are drawn with a class activation map
stand-in: the channel mean of the backbone's last feature map; the figure title says so.

:func:`render_attention` is the library entry point (the CLI calls it after loading the run).
"""
from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from fgvc.cli import add_run_arguments, friendly
from fgvc.vis.overlay import denormalize, heat_overlay, upsample_maps

log = logging.getLogger("fgvc")

__all__ = ["render_attention", "figure_pixels", "evenly_spaced", "main", "MAP_MODES"]

MAP_MODES = ("mean", "top4", "all")
PANEL_IN, ROW_TITLE_IN, HEADER_IN, DPI = 2.0, 0.4, 0.5, 100
MAX_MAPS = 32  # --maps all draws at most this many maps per image
CAM_NOTE = "no attention maps: CAM = channel mean of the backbone's last feature map"


def figure_pixels(n_images: int, n_cols: int) -> tuple[int, int]:
    """(width, height) in pixels of the figure :func:`render_attention` writes."""
    w = n_cols * PANEL_IN * DPI
    h = (HEADER_IN + n_images * (PANEL_IN + ROW_TITLE_IN)) * DPI
    return int(round(w)), int(round(h))


def evenly_spaced(n_total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (first and last included), deterministic."""
    if n_total <= 0 or n <= 0:
        return []
    if n >= n_total:
        return list(range(n_total))
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, n)})


def _crop_box_fn(method: torch.nn.Module) -> Callable[[Tensor, Tensor], Tensor] | None:
    """WS-DAN only: ``(images, maps) -> boxes B, 4`` of its test-time object crop; None otherwise.

    ``fgvc.methods.wsdan`` is imported lazily, and a missing or broken module just means no box.
    """
    try:
        from fgvc.methods import wsdan
    except Exception as exc:  # noqa: BLE001  (a sibling module being edited must not break drawing)
        log.debug("no WS-DAN crop boxes: fgvc.methods.wsdan does not import (%s)", exc)
        return None
    boxes_fn = getattr(wsdan, "attention_crop_boxes", None)
    cls = getattr(wsdan, "WSDAN", None)
    if boxes_fn is None or cls is None or not isinstance(method, cls):
        return None
    theta = float(getattr(method, "test_theta", 0.1))
    padding = float(getattr(method, "test_padding", 0.05))

    def crop_boxes(images: Tensor, maps: Tensor) -> Tensor:
        size = tuple(images.shape[-2:])
        mean_map = torch.nn.functional.interpolate(
            maps.float().mean(1, keepdim=True), size=size, mode="bilinear", align_corners=False
        )[:, 0]  # B, H, W
        thr = torch.full((images.shape[0],), theta, device=maps.device)
        return boxes_fn(mean_map, thr, padding)  # B, 4 (x1, y1, x2, y2)

    return crop_boxes


def _maps_or_cam(method: Any, images: Tensor) -> tuple[Tensor, bool]:
    """``(maps: B, M, h, w, is_cam)``: the method's attention maps, or the channel-mean CAM stand-in."""
    maps = method.attention_maps(images)
    if maps is None:
        feats = method.backbone(images)  # B, C, h, w
        if feats.ndim != 4:
            raise ValueError(
                f"{type(method).__name__} has no attention maps and its backbone returns shape {tuple(feats.shape)}, "
                "not a B, C, h, w feature map, so no class activation map can be drawn"
            )
        return feats.float().mean(1, keepdim=True), True  # B, 1, h, w
    if maps.ndim == 3:  # B, h, w: one map per image
        maps = maps[:, None]
    if maps.ndim != 4 or maps.shape[0] != images.shape[0]:
        raise ValueError(
            f"{type(method).__name__}.attention_maps returned shape {tuple(maps.shape)}; the Method contract "
            f"is B, M, h, w with B = {images.shape[0]} (see fgvc/methods/base.py)"
        )
    return maps.float(), False


def _label(class_names: Sequence[str], k: int, width: int = 28) -> str:
    name = str(class_names[k]) if 0 <= k < len(class_names) else f"class {k}"
    return name if len(name) <= width else name[: width - 1] + "~"


def render_attention(
    method: Any,
    images: Tensor,
    targets: Tensor | Sequence[int],
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    out_path: str | Path,
    maps: str = "mean",
    title: str | None = None,
) -> Path:
    """Write the attention figure of ``images: B, 3, H, W`` (normalised by ``mean``/``std``) to ``out_path``.

    ``maps``: ``mean`` (input + mean-map overlay), ``top4`` (+ the 4 maps of largest mass), ``all``
    (+ every map, at most :data:`MAX_MAPS`). Returns the path written.
    """
    if maps not in MAP_MODES:
        raise ValueError(f"maps must be one of {MAP_MODES}, got '{maps}'")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a batch B, 3, H, W; got shape {tuple(images.shape)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    targets_t = torch.as_tensor(targets).long().flatten().cpu()
    if len(targets_t) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets_t)} targets")
    try:
        device = next(method.parameters()).device
    except StopIteration:
        device = images.device
    was_training = bool(getattr(method, "training", False))
    method.eval()
    x = images.to(device)
    with torch.no_grad():
        raw_maps, is_cam = _maps_or_cam(method, x)  # B, M, h, w
        preds = method.predict_all(x)
        key = next(iter(preds))
        probs = preds[key].float().softmax(1).cpu()  # B, K
        box_fn = None if is_cam else _crop_box_fn(method)
        boxes = box_fn(x, raw_maps).cpu() if box_fn is not None else None
    method.train(was_training)

    b, m = raw_maps.shape[:2]
    size = tuple(images.shape[-2:])
    mean_maps = upsample_maps(raw_maps.mean(1, keepdim=True), size)[:, 0].cpu()  # B, H, W
    mass = raw_maps.clamp_min(0).flatten(2).sum(-1).cpu()  # B, M
    share = mass / mass.sum(1, keepdim=True).clamp_min(1e-12)  # B, M
    if is_cam or maps == "mean":
        n_extra = 0
    elif maps == "top4":
        n_extra = min(4, m)
    else:
        n_extra = min(m, MAX_MAPS)
    n_cols = 2 + n_extra
    conf, pred = probs.max(1)

    w_px, h_px = figure_pixels(b, n_cols)
    fig = plt.figure(figsize=(w_px / DPI, h_px / DPI), dpi=DPI)
    header_frac = HEADER_IN * DPI / h_px
    head, body = fig.subfigures(2, 1, height_ratios=[header_frac, 1 - header_frac])
    heading = title or f"{type(method).__name__}: attention ({'mean map' if n_extra == 0 else maps} over {m} maps)"
    if is_cam:
        heading = f"{title + ' - ' if title else type(method).__name__ + ': '}{CAM_NOTE}"
    if maps == "all" and m > MAX_MAPS and not is_cam:
        heading += f" (first {MAX_MAPS} of {m} maps)"
    chars = max(int(n_cols * PANEL_IN / 0.075), 30)  # ~characters per line at 8-9 pt
    head.text(0.5, 0.5, textwrap.fill(heading, chars), ha="center", va="center", fontsize=9, weight="bold")
    rows = body.subfigures(b, 1) if b > 1 else [body]
    for i in range(b):
        img = denormalize(images[i], mean, std)  # H, W, 3
        t, p = int(targets_t[i]), int(pred[i])
        ok = t == p
        which = f", {key}" if len(preds) > 1 else ""
        row_title = f"true: {_label(class_names, t)}  |  pred: {_label(class_names, p)}  ({float(conf[i]):.0%}{which})"
        rows[i].suptitle(textwrap.fill(row_title, chars), color="green" if ok else "red", fontsize=8, y=0.985,
                         va="top")
        axes = rows[i].subplots(1, n_cols, squeeze=False)[0]
        rows[i].subplots_adjust(left=0.02, right=0.98, bottom=0.08, top=PANEL_IN / (PANEL_IN + ROW_TITLE_IN) - 0.02,
                                wspace=0.06)
        axes[0].imshow(img)
        axes[0].set_xlabel("input", fontsize=7)
        axes[1].imshow(heat_overlay(img, mean_maps[i].numpy(), 0.5))
        axes[1].set_xlabel("CAM (feature mean)" if is_cam else f"mean of {m} maps", fontsize=7)
        if boxes is not None:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            axes[1].add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor="white",
                                        linewidth=1.5, linestyle="--"))
            axes[1].set_xlabel(f"mean of {m} maps + refined crop", fontsize=7)
        if n_extra:
            order = share[i].argsort(descending=True)[:n_extra] if maps == "top4" else torch.arange(n_extra)
            ups = upsample_maps(raw_maps[i : i + 1, order.to(raw_maps.device)], size)[0].cpu()  # n_extra, H, W
            for j, k in enumerate(order.tolist()):
                axes[2 + j].imshow(heat_overlay(img, ups[j].numpy(), 0.5))
                axes[2 + j].set_xlabel(f"map {k} ({float(share[i, k]):.0%} of mass)", fontsize=7)
        for ax in axes:
            ax.set_xticks([]), ax.set_yticks([])
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-visualize", description="Draw the attention maps of a trained fgvc run.")
    add_run_arguments(ap, "split to draw from")
    ap.add_argument("--n", type=int, default=8, help="number of images, evenly spaced over the split (default 8)")
    ap.add_argument("--indices", type=int, nargs="+", default=None, help="draw these dataset indices instead of --n")
    ap.add_argument("--maps", default="mean", choices=MAP_MODES, help="mean map only, + the 4 largest, or + all maps")
    ap.add_argument("--out", default=None, help="output PNG (default RUN/vis/attention-<split>-<checkpoint>-<maps>.png)")
    return ap.parse_args(argv)


@friendly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fgvc import config as C
    from fgvc.engine import builder as B
    from fgvc.evaluate import build_trained, load_run

    if args.n < 1:
        print("error: --n must be >= 1 (the number of images to draw)", file=sys.stderr)
        return 2
    cfg, state, run_dir = load_run(args.target, args.checkpoint, args.sets)
    split = args.split or cfg["data"]["test_split"]
    device = B.resolve_device(cfg["train"]["device"])
    method, weights = build_trained(cfg, state, args.weights)
    method.to(device).eval()
    dc = {k: tuple(v) if isinstance(v, list) else v for k, v in state["data_config"].items()}
    ds = B.build_split(cfg, split, False, dc)
    if list(ds.classes) != list(state["class_names"]):
        raise C.ConfigError(f"the classes of {cfg['data']['root']} ({len(ds.classes)}) differ from the ones this "
                            f"model was trained on ({len(state['class_names'])}); visualize on the same data set")
    n_total = len(ds)
    indices = args.indices if args.indices else evenly_spaced(n_total, args.n)
    bad = [i for i in indices if not 0 <= i < n_total]
    if bad or not indices:
        print(f"error: --indices {bad or indices} out of range: split '{split}' of {cfg['data']['root']} has "
              f"{n_total} images (valid indices 0..{n_total - 1})", file=sys.stderr)
        return 2
    samples = [ds[i] for i in indices]
    images = torch.stack([s[0] for s in samples])  # B, 3, H, W
    targets = torch.tensor([int(s[1]) for s in samples])
    out = Path(args.out) if args.out else run_dir / "vis" / f"attention-{split}-{args.checkpoint}-{args.maps}.png"
    title = f"{run_dir.name}: {cfg['model']['name']} / {cfg['model']['backbone']}, {split} {indices}"
    path = render_attention(method, images, targets, state["class_names"], dc["mean"], dc["std"], out,
                            maps=args.maps, title=title)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
