"""``python -m fgvc.visualize RUN_DIR_OR_CHECKPOINT [--split test] [--n 8] [--indices 0 5 9] [--maps mean|all|top4]
[--out PATH.png] [--checkpoint last|best] [--set k=v ...]``

Draws what a trained method looks at: for N images of a split (evenly spaced over the split, or the given
``--indices``), one PNG with a row per image: the de-normalised input, the mean attention map as a jet heat
overlay (alpha 0.5) and, with ``--maps top4`` / ``all``, the 4 maps with the largest mass / every map. Each
row's title is the true class vs the headline prediction (green if right, red if wrong) and its confidence.
The object box a method localises (WS-DAN's test-time crop, RA-CNN's first zoom) is drawn dashed in white.
Maps, boxes and predictions come from one :meth:`~fgvc.methods.base.Method.infer` pass
(:class:`~fgvc.engine.inference.TrainedRun`); the figure is drawn by :mod:`fgvc.vis.attention_figure`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fgvc.cli import add_run_arguments, friendly
from fgvc.vis.attention_figure import MAP_MODES, draw_attention

__all__ = ["evenly_spaced", "main"]


def evenly_spaced(n_total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (first and last included), deterministic."""
    if n_total <= 0 or n <= 0:
        return []
    if n >= n_total:
        return list(range(n_total))
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, n)})


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
    import torch

    from fgvc.engine.inference import TrainedRun

    if args.n < 1:
        print("error: --n must be >= 1 (the number of images to draw)", file=sys.stderr)
        return 2
    run = TrainedRun.load(args.target, args.checkpoint, args.sets, args.weights)
    split = args.split or run.cfg["data"]["test_split"]
    ds = run.dataset(split)
    indices = args.indices if args.indices else evenly_spaced(len(ds), args.n)
    bad = [i for i in indices if not 0 <= i < len(ds)]
    if bad or not indices:
        print(f"error: --indices {bad or indices} out of range: split '{split}' of {run.cfg['data']['root']} has "
              f"{len(ds)} images (valid indices 0..{len(ds) - 1})", file=sys.stderr)
        return 2
    samples = [ds[i] for i in indices]
    images = torch.stack([s[0] for s in samples])  # B, 3, H, W
    targets = torch.tensor([int(s[1]) for s in samples])
    out = Path(args.out) if args.out else run.run_dir / "vis" / f"attention-{split}-{args.checkpoint}-{args.maps}.png"
    model = run.cfg["model"]
    title = f"{run.run_dir.name}: {model['name']} / {model['backbone']}, {split} {indices}"
    path = draw_attention(run.infer(images), images, targets, run.class_names, run.data_config["mean"],
                          run.data_config["std"], out, maps=args.maps, title=title)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
