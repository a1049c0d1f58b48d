"""``python -m fgvc.visualize RUN_DIR_OR_CHECKPOINT [--split test] [--n 8] [--indices 0 5 9] [--maps mean|all|top4]
[--map-source auto|method|rollout|features] [--output PATH.png] [--checkpoint last|best] [--set k=v ...]``

Draws what a trained method looks at: for N images of a split (evenly spaced over the split, or the given
``--indices``), one PNG with a row per image: the de-normalised input, the mean attention map as a jet heat
overlay (alpha 0.5) and, with ``--maps top4`` / ``all``, the 4 maps with the largest mass / every map. Each
row's title is the true class vs the headline prediction (green if right, red if wrong) and its confidence.
The object box a method localises (WS-DAN's test-time crop, RA-CNN's first zoom) is drawn dashed in white.
Maps, boxes and predictions come from one :meth:`~fgvc.methods.base.Method.infer` pass
(:class:`~fgvc.engine.inference.TrainedRun`); the figure is drawn by :mod:`fgvc.vis.attention_figure`.

Which maps (``--map-source``): ``method``: the method's own maps (WS-DAN's parts, CBAM's spatial gates, RA-CNN's
zooms), else the channel mean of the feature map; ``rollout``: attention rollout of a vision transformer's class token
(:mod:`fgvc.vis.rollout`; Abnar & Zuidema 2020), one more pass of the backbone; ``features``: the channel mean of the
feature map; ``auto`` (default): the method's maps where it has them, rollout for a class-token transformer without
them (baseline, B-CNN on ViT / DeiT / EVA), else the feature mean. Where rollout does not apply (Swin: windowed
attention and no class token; CNNs) a note says so and the feature mean is drawn.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dataclasses import replace

import numpy as np
import torch

from fgvc.cli import add_output, add_run_arguments, command, load_run, require_at_least, split_of
from fgvc.engine.inference import autocast
from fgvc.errors import ConfigError
from fgvc.vis.attention_figure import MAP_MODES, draw_attention
from fgvc.vis.rollout import ROLLOUT_LABEL, ROLLOUT_NOTE, class_token_maps, rollout_unsupported

__all__ = ["evenly_spaced", "display_maps", "MAP_SOURCES", "main"]

MAP_SOURCES = ("auto", "method", "rollout", "features")


def evenly_spaced(n_total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (first and last included), deterministic."""
    if n_total <= 0 or n <= 0:
        return []
    if n >= n_total:
        return list(range(n_total))
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, n)})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-visualize", description="Draw the attention maps of a trained fgvc run.")
    add_run_arguments(ap)
    add_output(ap, "output PNG (default RUN/vis/attention-<split>-<checkpoint>-<maps>.png)", metavar="FILE.png",
               old_out=True)
    ap.add_argument("--n", type=int, default=8, help="number of images, evenly spaced over the split (default 8)")
    ap.add_argument("--indices", type=int, nargs="+", default=None, help="draw these dataset indices instead of --n")
    ap.add_argument("--maps", default="mean", choices=MAP_MODES, help="mean map only, + the 4 largest, or + all maps")
    ap.add_argument("--map-source", default="auto", choices=MAP_SOURCES,
                    help="the method's maps, attention rollout of a ViT's class token, or the feature mean (auto: the "
                         "method's maps, else rollout for a class-token transformer, else the feature mean)")
    return ap.parse_args(argv)


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    require_at_least(args, 1, "n")
    run = load_run(args)
    split = split_of(run, args.split)
    ds = run.dataset(split)
    indices = args.indices if args.indices else evenly_spaced(len(ds), args.n)
    bad = [i for i in indices if not 0 <= i < len(ds)]
    if bad or not indices:
        raise ConfigError(f"--indices {bad or indices} out of range: split '{split}' of {run.cfg['data']['root']} has "
                          f"{len(ds)} images (valid indices 0..{len(ds) - 1})")
    samples = [ds[i] for i in indices]
    images = torch.stack([s[0] for s in samples])  # B, 3, H, W
    targets = torch.tensor([int(s[1]) for s in samples])
    source = "" if args.map_source == "auto" else f"-{args.map_source}"
    name = f"attention-{split}-{args.checkpoint}-{args.maps}{source}.png"
    out = Path(args.output) if args.output else run.run_dir / "vis" / name
    model = run.cfg["model"]
    title = f"{run.run_dir.name}: {model['name']} / {model['backbone']}, {split} {indices}"
    outputs, map_name, note = display_maps(run, images, run.infer(images), args.map_source)
    if note:
        print(f"note: {note}", file=sys.stderr)
    path = draw_attention(outputs, images, targets, run.class_names, run.data_config["mean"], run.data_config["std"],
                          out, maps=args.maps, title=f"{title} - {map_name}" if map_name else title,
                          map_name=ROLLOUT_LABEL if map_name == ROLLOUT_NOTE else map_name)
    print(path)


def display_maps(run: Any, images: Any, out: Any, source: str = "auto") -> tuple[Any, str | None, str | None]:
    """``(outputs, map_name, note)``: ``out`` (the :class:`~fgvc.methods.base.Outputs` of ``images``) with the maps
    ``source`` asks for (see the module docstring), the overlay's label (None: the figure's own) and why rollout was
    not drawn where it was asked for (None otherwise)."""
    if source not in MAP_SOURCES:
        raise ValueError(f"source must be one of {MAP_SOURCES}, got {source!r}")
    if source == "method" or (source == "auto" and out.maps is not None):
        return out, None, None
    if source == "features":
        return replace(out, maps=None), None, None
    backbone = run.method.backbone
    reason = rollout_unsupported(backbone)
    if reason:  # auto: silently the feature mean; rollout asked for: say why not
        return replace(out, maps=None), None, None if source == "auto" else f"{reason}; drawing the feature mean"
    x = run.runtime.inputs(images)
    x = run.method.raw_view(x) if hasattr(run.method, "raw_view") else x  # WS-DAN: the view the backbone sees
    with autocast(run.runtime.device, run.runtime.amp):
        maps = class_token_maps(backbone, x)  # B, 1, h, w
    return replace(out, maps=maps), ROLLOUT_NOTE, None


if __name__ == "__main__":
    raise SystemExit(main())
