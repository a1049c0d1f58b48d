"""Where WS-DAN's training step goes, against a plain step: its three backbone passes and its own work.

WS-DAN (Hu et al., 2019) runs the backbone three times per step (raw, attention-crop and attention-drop views), so
three plain steps are its floor if everything else were free. Everything else is not free: per view an attention
conv, bilinear attention pooling and a classifier over ``M x C`` part features (32 x 1280 = 40,960 inputs on
tf_efficientnet_lite0, an 8.2 M-parameter matrix at 200 classes, 2.3x the backbone's own weights), plus the crops,
the drop masks, the center loss and an optimizer step over 11.6 M instead of 3.6 M parameters.

This script times each row in a fresh process (``--steps`` timed steps after ``--warmup``, their median), every row
once per round, and reports the median over ``--rounds`` rounds; rows sharing one process disturb each other (after
WS-DAN's steps a plain step in the same process ran up to 40 % slower; at 448 px 2.9-3.7 s against 2.2-2.4 s alone):

* ``plain``: the plain fine-tuning step (``fgvc.bench steps``' reference row), and ``wsdan``: WS-DAN's step, both
  exactly as ``fgvc.bench steps`` builds them (the recipes' losses and optimizers, the trainer's per-view backward);
* the same two steps with the backbone replaced by a module that hands out a stored feature map of the real shape
  (``plain, heads only`` / ``wsdan, heads only``): what each method spends outside its backbone.

The backbone's share is the difference. ``floor`` = three plain backbone passes plus WS-DAN's heads, over the plain
step: the ratio a WS-DAN without any wasted work would reach on this machine.

    python benchmarks/wsdan_step_floor.py [--backbone tf_efficientnet_lite0 --img-size 160 --batch 32 --rounds 5]
        [--out benchmarks/results/wsdan_step_floor.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

RECIPES = {"plain": "recipes/cub200_lite0.yaml", "wsdan": "recipes/cub200_wsdan_lite0.yaml"}


class StoredFeatures(nn.Module):
    """Stands in for a backbone: returns a fresh leaf copy of ``feats`` (``B, C, h, w``), whatever the input."""

    def __init__(self, feats: Tensor) -> None:
        super().__init__()
        self.feats = feats.detach()

    def forward(self, images: Tensor) -> Tensor:
        return self.feats.clone().requires_grad_()

    def forward_pooled(self, images: Tensor) -> tuple[Tensor, Tensor]:
        fmap = self.forward(images)
        return fmap, fmap.mean((2, 3))


ROWS = ("plain", "plain, heads only", "wsdan", "wsdan, heads only")


def use_stored_features(batch: int, img_size: int, work: Any) -> None:
    """``prepare`` hook of :func:`fgvc.benchmarking.steps.time_alone`: the workload's backbone becomes
    :class:`StoredFeatures` holding its own output on a random batch (the real feature map's shape and layout)."""
    x = torch.randn(batch, 3, img_size, img_size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        feats = work.method.backbone(x)  # B, C, h, w
    work.method.backbone = StoredFeatures(feats)


def row_spec(args: argparse.Namespace, row: str) -> tuple[Any, dict[str, Any], Callable[[Any], None] | None]:
    """``(spec, recipe, prepare)`` of ``row`` (one of :data:`ROWS`), as ``fgvc.bench steps`` builds its rows."""
    from fgvc.config import load_recipe
    from fgvc.benchmarking.speed import SpeedSpec

    name = row.split(",")[0]
    spec = SpeedSpec(backbone=args.backbone, method="baseline" if name == "plain" else name, img_size=args.img_size,
                     batch=args.batch, channels_last=True, device="cpu")
    prepare = partial(use_stored_features, args.batch, args.img_size) if row.endswith("heads only") else None
    return spec, load_recipe(RECIPES[name])[0], prepare


def isolated(args: argparse.Namespace, row: str) -> float:
    """Median ms of ``row`` measured in a fresh process (rows sharing a process disturb each other's heap)."""
    from fgvc.benchmarking.steps import time_in_fresh_process

    spec, recipe, prepare = row_spec(args, row)
    return 1000 * time_in_fresh_process(spec, recipe, args.warmup, args.steps, prepare=prepare)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--img-size", type=int, default=160)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5, help="rounds; each runs every row once, in a fresh process")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per row and process")
    p.add_argument("--steps", type=int, default=3, help="timed steps per row and process (their median)")
    p.add_argument("--out", default="benchmarks/results/wsdan_step_floor.json", help="JSON; a .md beside it")
    args = p.parse_args(argv)
    from fgvc.benchmarking.speed import machine_info
    times: dict[str, list[float]] = {name: [] for name in ROWS}
    for r in range(args.rounds):
        for name in ROWS:
            times[name].append(isolated(args, name))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in times.items()), flush=True)
    ms = {name: statistics.median(v) for name, v in times.items()}
    plain = ms["plain"]
    backbone = plain - ms["plain, heads only"]  # one backbone forward + backward (and its share of the update)
    rows: list[dict[str, Any]] = [{"part": name, "ms": round(v, 1), "x_plain": round(v / plain, 3)}
                                  for name, v in ms.items()]
    derived = {"one backbone pass (plain - plain heads)": backbone,
               "wsdan's three backbone passes (wsdan - wsdan heads)": ms["wsdan"] - ms["wsdan, heads only"],
               "floor: 3 x one backbone pass + wsdan heads": 3 * backbone + ms["wsdan, heads only"]}
    rows += [{"part": name, "ms": round(v, 1), "x_plain": round(v / plain, 3)} for name, v in derived.items()]
    per_round = [w / p_ for w, p_ in zip(times["wsdan"], times["plain"])]
    print("| part | ms | x plain step |\n|---|---|---|")
    for r in rows:
        print(f"| {r['part']} | {r['ms']:.1f} | {r['x_plain']:.2f} |")
    print(f"wsdan / plain per round: median {statistics.median(per_round):.2f} "
          f"(min {min(per_round):.2f}, max {max(per_round):.2f})")
    record = {"date": dt.datetime.now().isoformat(timespec="seconds"), "command": " ".join(["python"] + sys.argv),
              "backbone": args.backbone, "img_size": args.img_size, "batch": args.batch, "rounds": args.rounds,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": machine_info(torch.device("cpu")), "rows": rows,
              "per_round_ratio": [round(v, 3) for v in per_round], "raw_ms": times}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    md = [f"# WS-DAN's step against a plain step: {args.backbone}, {args.img_size} px, batch {args.batch}, fp32, "
          "channels-last, CPU", "",
          f"{record['date']}; `{record['command']}`; {record['machine']['device_name']}, "
          f"{record['machine']['cpu_count']} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"each row in a fresh process per round ({args.steps} timed steps after {args.warmup}), medians of "
          f"{args.rounds} rounds. Heads only: the step with the backbone replaced by a "
          "stored feature map of its real shape.", "", "| part | ms | x plain step |", "|---|---|---|"]
    md += [f"| {r['part']} | {r['ms']:.1f} | {r['x_plain']:.2f} |" for r in rows]
    md += ["", f"WS-DAN / plain per round: median {statistics.median(per_round):.2f}, "
           f"min {min(per_round):.2f}, max {max(per_round):.2f}."]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(out, out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
