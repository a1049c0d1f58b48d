"""Does WS-DAN's test-time object crop localise, and does the refined view help? On finished WS-DAN runs.

For each run and each (normalisation, theta) of the mean attention map, one pass over the validation and the test
split: the mean share of the image the object box covers, and top-1 of the raw view and of the refined view (the
mean of the raw and object-crop logits). Choose on validation; the test columns only report.

    python benchmarks/wsdan_test_crop.py runs/mini_methods/cub200/wsdan/seed0 [RUN ...] \\
        [--thetas 0.1 0.3 0.5] [--out benchmarks/results/wsdan_test_crop.md]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fgvc.engine.inference import TrainedRun  # noqa: E402
from fgvc.models.attention_crop import box_areas  # noqa: E402


def variant(run: TrainedRun, split: str) -> dict[str, float]:
    got = run.collect(split, ["logits", "boxes"])
    size = run.dataset(split)[0][0].shape[-2:]
    top1 = {k: 100.0 * float((v.argmax(1) == got.targets).float().mean()) for k, v in got.logits.items()}
    return {"area": 100.0 * float(box_areas(got.boxes, (int(size[0]), int(size[1]))).mean()), **top1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--thetas", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    ap.add_argument("--norms", nargs="+", default=["max", "minmax"])
    ap.add_argument("--out", default="benchmarks/results/wsdan_test_crop.md")
    args = ap.parse_args()
    lines = ["# WS-DAN's test-time object crop on real images", "",
             f"- command: `python {' '.join(sys.argv)}`",
             f"- machine: {platform.platform()}, CPU only, torch {torch.__version__}; date {time.strftime('%Y-%m-%d %H:%M')}",
             "- box area: the mean share of the image the test-time box covers (100 % = the whole image, when the crop "
             "changes nothing); raw: the first view alone; refined: mean of the raw and object-crop logits", ""]
    for target in args.runs:
        run = TrainedRun.load(target, "last", ["data.num_workers=0"])
        splits = [s for s in (run.cfg["data"]["val_split"], run.cfg["data"]["test_split"]) if s]
        lines += [f"## `{target}`", "", "| norm | theta | " + " | ".join(
            f"{s} box area | {s} raw | {s} refined" for s in splits) + " |", "|---|---|" + "---|---|---|" * len(splits)]
        for norm in args.norms:
            for theta in args.thetas:
                run.method.test_norm, run.method.test_theta = norm, theta
                cells = []
                for split in splits:
                    r = variant(run, split)
                    cells.append(f"{r['area']:.0f} % | {r['raw']:.2f} | {r['refined']:.2f}")
                lines.append(f"| {norm} | {theta:g} | " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
        lines.append("")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
