"""Benchmark reporting and speed measurement.

``python -m fgvc.bench report RUN_DIR [RUN_DIR ...] [--published benchmarks/published.csv] [--out benchmarks/results/report.md]``
    Reads each run directory (config.yaml, final.json, metrics.jsonl) and writes a Markdown table of our
    test top-1 / top-5 / mean per-class accuracy, training time and throughput next to the matching
    published number (same method and data set, same backbone preferred) and the gap, plus a bar chart
    PNG beside the Markdown. Runs on a subset (``data.root`` containing ``mini``) or on synthetic data are
    flagged: their numbers are not comparable with the papers'.

``python -m fgvc.bench speed --backbone NAME [--img-size 160] [--batch 32] [--steps 5] [--warmup 2] [--channels-last]
[--device auto|cpu|cuda] [--amp none|bf16|fp16] [--method baseline] [--compile] [--results PATH]``
    Train and inference images/s of a method on random input (warm-up steps excluded); prints them and
    appends one JSON line with the machine (platform, CPU count, torch version, device name), the date and
    the command to ``benchmarks/results/speed.jsonl`` (or ``--results``).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from fgvc.cli import friendly
from fgvc.errors import BenchError
from fgvc.engine.speed import SpeedError, measure_speed

__all__ = ["load_published", "read_run", "match_published", "is_subset", "write_report", "main"]

PUBLISHED_COLUMNS = ("method", "backbone", "dataset", "img_size", "top1", "source", "venue", "notes")
DATASET_ALIASES = {"cub": "cub200", "cub200": "cub200", "cub2002011": "cub200", "flowers": "flowers102",
                   "flowers102": "flowers102", "oxfordflowers102": "flowers102"}


# ---------------------------------------------------------------- published
def _norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name or "").lower())


def norm_dataset(name: Any) -> str:
    key = _norm(name)
    return DATASET_ALIASES.get(key, key)


def norm_backbone(name: Any) -> str:
    """``resnet50.a1_in1k`` -> ``resnet50``; ``VGG-16`` -> ``vgg16`` (the timm tag after '.' is dropped)."""
    return _norm(str(name or "").split(".")[0])


def load_published(path: str | Path) -> list[dict[str, Any]]:
    """Rows of the published-results CSV; ``top1`` a float or None (paper gives no number)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"published results table not found: {path}; pass --published PATH "
                         "(the repository's is benchmarks/published.csv)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PUBLISHED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchError(f"{path} lacks the column(s) {missing}; its header must be {','.join(PUBLISHED_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            top1 = (row.get("top1") or "").strip()
            try:
                row["top1"] = float(top1) if top1 else None
            except ValueError:
                raise BenchError(f"{path}:{line}: top1 '{top1}' is not a number (leave it empty when unknown)") from None
            rows.append(row)
    return rows


def method_key(cfg: dict[str, Any]) -> str:
    """The published table's method name for a run: the registry name, ``bcnn_compact`` for compact B-CNN."""
    name = str(cfg.get("model", {}).get("name", "")).lower()
    if name == "bcnn" and (cfg["model"].get("args") or {}).get("pooling") == "compact":
        return "bcnn_compact"
    return name


def match_published(rows: list[dict[str, Any]], method: str, backbone: str, dataset: str) -> tuple[dict | None, str]:
    """(row, how): the published row of the same method and data set, same backbone preferred.

    ``how`` is ``backbone`` (same backbone), ``other-backbone`` (first row with a number for the method and
    data set), ``no-number`` (the paper reports none, e.g. ImageNet only) or ``none``.
    """
    ds = norm_dataset(dataset)
    same = [r for r in rows if _norm(r["method"]) == _norm(method) and norm_dataset(r["dataset"]) == ds]
    numbered = [r for r in same if r["top1"] is not None]
    for r in numbered:
        if norm_backbone(r["backbone"]) == norm_backbone(backbone):
            return r, "backbone"
    if numbered:
        return numbered[0], "other-backbone"
    if same:
        return same[0], "no-number"
    return None, "none"


# --------------------------------------------------------------------- runs
def read_run(run_dir: str | Path) -> dict[str, Any]:
    """config.yaml, final.json (None when absent) and metrics.jsonl rows of one run directory."""
    from fgvc.engine.rundir import read_metrics

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise BenchError(f"{run_dir} is not an fgvc run directory (no config.yaml); pass the folder that "
                         "fgvc.train created, e.g. runs/baseline-cub200-20250101-120000")
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BenchError(f"{cfg_path} is not valid YAML: {exc}") from exc
    final = None
    if (run_dir / "final.json").is_file():
        try:
            final = json.loads((run_dir / "final.json").read_text())
        except json.JSONDecodeError as exc:
            raise BenchError(f"{run_dir / 'final.json'} is not valid JSON ({exc}); re-run fgvc.evaluate") from exc
    return {"dir": run_dir, "cfg": cfg, "final": final, "metrics": read_metrics(run_dir)}


def is_subset(cfg: dict[str, Any]) -> bool:
    """True for a subset / mini / synthetic data set, whose accuracy is not comparable with the papers'."""
    data = cfg.get("data", {})
    return "mini" in str(data.get("root", "")).lower() or str(data.get("name", "")).lower() == "synthetic"


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None or v == "":
        return ""
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def summarize_run(run: dict[str, Any], published: list[dict[str, Any]]) -> dict[str, Any]:
    cfg, final, rows = run["cfg"], run["final"] or {}, run["metrics"]
    data, model = cfg.get("data", {}), cfg.get("model", {})
    ips = [r["images_per_s"] for r in rows if isinstance(r.get("images_per_s"), (int, float))]
    method = method_key(cfg)
    pub, how = match_published(published, method, model.get("backbone", ""), data.get("name", ""))
    ours = final.get("top1")
    pub_top1 = pub["top1"] if pub else None
    return {
        "run": run["dir"].name, "method": method, "backbone": model.get("backbone", ""),
        "dataset": data.get("name", ""), "root": data.get("root", ""), "img_size": data.get("img_size"),
        # epochs done: final.json's, else the epochs metrics.jsonl has rows for (an unfinished run)
        "epochs": final.get("epochs", 1 + max((int(r.get("epoch", 0)) for r in rows), default=-1)),
        "steps": final.get("steps"),
        "top1": ours, "top5": final.get("top5"), "mean_class_acc": final.get("mean_class_acc"),
        "train_seconds": final.get("train_seconds"), "images_per_s": sum(ips) / len(ips) if ips else None,
        "published": pub_top1, "published_row": pub, "match": how,
        "gap": ours - pub_top1 if ours is not None and pub_top1 is not None else None,
        "subset": is_subset(cfg), "finished": run["final"] is not None,
    }


def write_report(run_dirs: list[str | Path], published_csv: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Markdown table + bar chart (``out`` with ``.png``); returns both paths."""
    published = load_published(published_csv)
    runs = [summarize_run(read_run(d), published) for d in run_dirs]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = ["run", "method", "backbone", "dataset (root)", "img", "epochs", "steps", "top-1", "top-5", "mean/class",
            "train s", "train img/s", "published", "gap"]
    lines = [
        "# fgvc benchmark report", "",
        f"Generated {dt.datetime.now().isoformat(timespec='seconds')} by `python -m fgvc.bench report` from "
        f"{len(runs)} run(s); published numbers from `{published_csv}`. Accuracies in %, test split, "
        "final-epoch model (final.json). `gap` = ours - published.", "",
        "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
    ]
    notes: list[str] = []
    sources: list[dict[str, Any]] = []  # published rows cited, numbered [1], [2], ...

    def cite(row: dict[str, Any]) -> int:
        if row not in sources:
            sources.append(row)
        return sources.index(row) + 1

    for r in runs:
        marks = (" †" if r["subset"] else "") + ("" if r["finished"] else " ‡")
        pub = r["published_row"]
        pub_cell = ""
        if r["match"] in ("backbone", "other-backbone"):
            pub_cell = f"{r['published']:.1f}" + ("" if r["match"] == "backbone" else f" ({pub['backbone']})")
            pub_cell += f" [{cite(pub)}]"
            if pub.get("img_size") and str(pub["img_size"]) != str(r["img_size"]):
                notes.append(f"`{r['run']}`: trained at {r['img_size']} px, the published number at "
                             f"{pub['img_size']} px.")
        elif r["match"] == "no-number":
            pub_cell = f"n/a [{cite(pub)}]"  # the paper gives no number for this data set; the source list says why
        cells = [f"`{r['run']}`{marks}", r["method"], r["backbone"], f"{r['dataset']} ({r['root']})",
                 _fmt(r["img_size"]), _fmt(r["epochs"]), _fmt(r["steps"]), _fmt(r["top1"]), _fmt(r["top5"]),
                 _fmt(r["mean_class_acc"]), _fmt(r["train_seconds"], 0), _fmt(r["images_per_s"], 1), pub_cell,
                 f"{r['gap']:+.1f}" if r["gap"] is not None else ""]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines.append("")
    if any(r["subset"] for r in runs):
        lines += ["**† Not a like-for-like comparison.** These runs use a subset, mini or synthetic data set "
                  "(`data.root` contains 'mini' or `data.name` is 'synthetic'): fewer classes and images, often "
                  "lower resolution and far shorter schedules than the papers. Their accuracy and the gap say "
                  "nothing about how the method compares with the published full-data-set number; they only show "
                  "that the pipeline runs end to end.", ""]
    if any(not r["finished"] for r in runs):
        lines += ["‡ No final.json: the run did not finish (or its final evaluation failed); accuracy cells are "
                  "empty.", ""]
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    if sources:
        lines += ["Published numbers:", ""]
        for i, row in enumerate(sources, start=1):
            num = "no number" if row["top1"] is None else f"{row['top1']:.1f}"
            size = f" at {row['img_size']} px" if row.get("img_size") else ""
            venue = f", {row['venue']}" if row.get("venue") else ""
            lines.append(f"{i}. {row['method']} / {row['backbone']} / {row['dataset']}{size}: {num}. "
                         f"{row['source']}{venue}. {row['notes']}")
        lines.append("")
    out.write_text("\n".join(lines))
    png = _bar_chart(runs, out.with_suffix(".png"))
    return out, png


def _bar_chart(runs: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['run'][:28]}{' †' if r['subset'] else ''}" for r in runs]
    xs = range(len(runs))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(runs) + 2), 3.6))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], [r["top1"] or 0 for r in runs], w, label="ours (test top-1)")
    ax.bar([x + w / 2 for x in xs], [r["published"] or 0 for r in runs], w, label="published", color="grey")
    for x, r in zip(xs, runs):
        for dx, v in ((-w / 2, r["top1"]), (w / 2, r["published"])):
            if v is None:
                ax.text(x + dx, 1, "n/a", ha="center", fontsize=7, rotation=90)
    ax.set_xticks(list(xs), labels, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 115)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2, frameon=False)
    if any(r["subset"] for r in runs):
        ax.set_title("† subset/mini/synthetic data: not comparable with the published numbers", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- CLI
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-bench", description="fgvc benchmark report and speed measurement.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("report", help="Markdown table of runs vs published numbers (+ bar chart)")
    rp.add_argument("runs", nargs="+", help="run directories made by fgvc.train")
    rp.add_argument("--published", default="benchmarks/published.csv", help="published results CSV")
    rp.add_argument("--out", default="benchmarks/results/report.md", help="Markdown output (PNG written beside it)")
    sp = sub.add_parser("speed", help="train / inference images per second on random input")
    sp.add_argument("--backbone", required=True, help="timm model name, e.g. resnet50 or test_resnet.r160_in1k")
    sp.add_argument("--method", default="baseline", help="registered method (baseline, wsdan, bcnn, racnn, ...)")
    sp.add_argument("--img-size", type=int, default=160)
    sp.add_argument("--batch", type=int, default=32)
    sp.add_argument("--steps", type=int, default=5, help="timed steps (after the warm-up)")
    sp.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    sp.add_argument("--num-classes", type=int, default=200)
    sp.add_argument("--channels-last", action="store_true")
    sp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    sp.add_argument("--compile", action="store_true", help="torch.compile the method (compile time is in the warm-up)")
    sp.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    sp.add_argument("--results", default="benchmarks/results/speed.jsonl", help="JSON lines file to append to")
    args = ap.parse_args(argv)
    if args.cmd == "speed":
        for key in ("img_size", "batch", "steps", "num_classes"):
            if getattr(args, key) < 1:
                ap.error(f"--{key.replace('_', '-')} must be >= 1")
        if args.warmup < 0:
            ap.error("--warmup must be >= 0")
    return args


@friendly
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    try:
        if args.cmd == "report":
            md, png = write_report(args.runs, args.published, args.out)
            print(md)
            print(png)
            return 0
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        rec = measure_speed(args)
    except (BenchError, SpeedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{rec['method']} / {rec['backbone']} at {rec['img_size']} px, batch {rec['batch']}, amp {rec['amp']}, "
          f"channels_last {rec['channels_last']}, compile {rec['compile']} on {rec['machine']['device_name']}: "
          f"train {rec['train_images_per_s']:.1f} img/s, inference {rec['infer_images_per_s']:.1f} img/s")
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
