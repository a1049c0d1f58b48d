"""Every method against the plain fine-tune on the real mini sets, at the same schedule, crop and seeds.

tf_efficientnet_lite0 with the shared ImageNet weights on ../shared/data/{cub200,flowers102}-mini: each arm is the
data set's CPU recipe (``recipes/<data>_lite0.yaml`` for the baseline, ``recipes/<data>_wsdan_lite0.yaml`` for
WS-DAN, the baseline recipe with ``model.name`` changed for the others) with the same epochs, crop, batch and
optimizer; final-epoch test top-1 (never best-on-test), per seed, mean and spread, and the paired difference to the
baseline of the same seed.

    python benchmarks/mini_methods.py --seeds 0 1 2                     # all methods, both mini sets
    python benchmarks/mini_methods.py --data cub200 --methods baseline wsdan --seeds 0 \\
        --arm "wsdan_fs10=wsdan:model.args.feature_scale=10"          # extra arms for tuning

Finished runs (RUNS/<data>/<arm>/seed<N>/final.json) are measured, not retrained. Writes a Markdown table (with the
command, machine and date) and a JSON file of every run.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fgvc.train import main as train_main  # noqa: E402

SHARED = REPO.parent / "shared"
# method -> (recipe pattern, overrides on top of it): the same schedule and crop as the baseline recipe
ARMS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("{data}_lite0.yaml", []),
    "wsdan": ("{data}_wsdan_lite0.yaml", []),
    "bcnn": ("{data}_lite0.yaml", ["model.name=bcnn", "model.args={reduce_dim: 512, drop_rate: 0.2}"]),
    "racnn": ("{data}_lite0.yaml", ["model.name=racnn", "model.args={num_scales: 3, drop_rate: 0.2}"]),
    "cbam": ("{data}_lite0.yaml", ["model.name=cbam", "model.args={drop_rate: 0.2}"]),
    "senet": ("{data}_lite0.yaml", ["model.name=senet", "model.args={drop_rate: 0.2}"]),
}
BATCH = {"cub200": 32, "flowers102": 16}  # 120 flower training images: smaller batches give more updates


def train_arm(data: str, arm: str, method: str, extra: list[str], seed: int, args: argparse.Namespace) -> Path:
    recipe, sets = ARMS[method]
    run = Path(args.runs) / data / arm / f"seed{seed}"
    if not (run / "final.json").is_file() and not args.skip_train:
        common = [f"data.root={SHARED / 'data' / f'{data}-mini'}", f"train.epochs={args.epochs}",
                  f"data.img_size={args.img_size}", f"train.batch_size={BATCH[data]}", f"seed={seed}",
                  "train.device=cpu", *args.sets]
        if (run / "checkpoints" / "last.pt").is_file():
            rc = train_main(["--resume", str(run)])
        else:
            rc = train_main([str(REPO / "recipes" / recipe.format(data=data)), "--output", str(run), "--set",
                             *common, *sets, *extra])
        if rc != 0:
            raise SystemExit(f"training {run} failed (exit {rc})")
    return run


def measure(run: Path) -> dict[str, Any]:
    final = json.loads((run / "final.json").read_text())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    out = {"run": str(run), "top1": final["top1"], "train_seconds": final["train_seconds"],
           "heads": {k[:-5]: final[k] for k in final if k.endswith("_top1")}}
    for key in ("crop_area", "drop_frac"):  # WS-DAN's attention diagnostics, last epoch
        if rows and key in rows[-1]:
            out[key] = rows[-1][key]
    return out


def table(data: str, results: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    base = results.get("baseline", {})
    lines = [f"### {data}-mini", "",
             "| arm | top-1 per seed | mean (min-max) | minus baseline, paired by seed | mean paired | other heads (mean) "
             "| train s (mean) |", "|---|---|---|---|---|---|---|"]
    for arm, runs in results.items():
        seeds = sorted(runs)
        top = [runs[s]["top1"] for s in seeds]
        paired = [runs[s]["top1"] - base[s]["top1"] for s in seeds if s in base and arm != "baseline"]
        heads = {k for s in seeds for k in runs[s]["heads"] if len(runs[s]["heads"]) > 1}
        other = ", ".join(f"{k} {statistics.mean(runs[s]['heads'][k] for s in seeds):.2f}" for k in sorted(heads))
        spread = f" ({min(top):.2f}-{max(top):.2f})" if len(top) > 1 else ""
        lines.append(
            f"| {arm} | {' / '.join(f'{t:.2f}' for t in top)} | {statistics.mean(top):.2f}{spread} "
            f"| {' / '.join(f'{d:+.2f}' for d in paired) or '-'} "
            f"| {f'{statistics.mean(paired):+.2f}' if paired else '-'} | {other or '-'} "
            f"| {statistics.mean(runs[s]['train_seconds'] for s in seeds):.0f} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["cub200", "flowers102"], choices=list(BATCH))
    ap.add_argument("--methods", nargs="*", default=list(ARMS), choices=list(ARMS),
                    help="the methods to run as they are (default: all); none with only --arm")
    ap.add_argument("--arm", action="append", default=[], metavar="NAME=METHOD:KEY=VALUE[,KEY=VALUE...]",
                    help="an extra arm: a method with overrides, e.g. wsdan_fs10=wsdan:model.args.feature_scale=10")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--img-size", type=int, default=160)
    ap.add_argument("--set", dest="sets", nargs="+", default=[], help="overrides for every arm")
    ap.add_argument("--runs", default="runs/mini_methods")
    ap.add_argument("--out", default="benchmarks/results/mini_methods.md")
    ap.add_argument("--skip-train", action="store_true", help="only measure finished runs")
    args = ap.parse_args()
    arms = [(m, m, []) for m in args.methods]
    for spec in args.arm:
        name, _, rest = spec.partition("=")
        method, _, sets = rest.partition(":")
        if method not in ARMS:
            ap.error(f"--arm {spec}: method must be one of {list(ARMS)}")
        arms.append((name, method, [s for s in sets.split(",") if s]))
    all_rows, lines = [], []
    for data in args.data:
        results: dict[str, dict[int, dict[str, Any]]] = {}
        for seed in args.seeds:
            for arm, method, extra in arms:
                run = train_arm(data, arm, method, extra, seed, args)
                if (run / "final.json").is_file():
                    results.setdefault(arm, {})[seed] = measure(run)
                    all_rows.append({"data": data, "arm": arm, "method": method, "seed": seed, "overrides": extra,
                                     **results[arm][seed]})
                    print(data, arm, seed, results[arm][seed]["top1"], flush=True)
        lines += [*table(data, results), ""]
    header = [
        "# Methods against the plain fine-tune on the real mini sets", "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, CPU only",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- tf_efficientnet_lite0, ImageNet weights, {args.img_size} px crop (crop_pct 0.87), {args.epochs} epochs, "
        "AdamW 1e-3 warmup + cosine (recipes/*_lite0.yaml), batch 32 (CUB) / 16 (Flowers); the same for every arm; "
        "final-epoch test top-1 (CUB mini: 588 test images, 1 image = 0.17 point; Flowers mini: 341, 0.29 point)",
        f"- extra overrides for every arm: {' '.join(args.sets) or 'none'}", "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header + lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(all_rows, indent=2) + "\n")
    print("\n".join(header + lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
