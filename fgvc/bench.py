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

``python -m fgvc.bench pipeline|steps|infer ...`` (:mod:`fgvc.benchmarking.pipeline`, ``bench_steps``, ``bench_infer``)
    fgvc side by side with a reference: its data loaders against a torchvision loader, each method's training step
    against the plain baseline's, each inference path against eager fp32; one table each, recorded through
    :mod:`fgvc.benchmarking.results`. ``python -m fgvc.bench tables`` writes ``benchmarks/results/speed.md`` from them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from fgvc.cli import friendly
from fgvc.benchmarking.published import (PUBLISHED_COLUMNS, Report, ReportRow, compare_runs, is_subset, load_published,
                                match_published, read_run)
from fgvc.benchmarking.results import RESULTS, write_speed_md
from fgvc.benchmarking.speed import SpeedSpec, measure_speed
from fgvc.errors import BenchError, SpeedError

# the report's computing part lives in fgvc.benchmarking.published; its names stay importable from here
__all__ = ["load_published", "read_run", "match_published", "is_subset", "write_report", "main", "compare_runs",
           "format_markdown", "draw_chart", "speed_spec", "PUBLISHED_COLUMNS", "BenchError", "SpeedError"]

# subcommand -> (module, help); each module has add_arguments(parser) and run(args, command) -> int, and records its
# table through fgvc.benchmarking.results.finish_table (kind, batch, name, images_per_s, ratio, machine, command)
SUBCOMMANDS = {
    "pipeline": ("fgvc.benchmarking.pipeline", "images/s of fgvc's train/eval loaders vs a torchvision reference"),
    "steps": ("fgvc.benchmarking.steps", "each method's training step time vs the plain baseline's"),
    "infer": ("fgvc.benchmarking.infer", "inference paths (eager, channels-last, compile, TorchScript, ORT) vs eager"),
}

TABLE_HEAD = ["run", "method", "backbone", "dataset (root)", "img", "epochs", "steps", "top-1", "top-5", "mean/class",
              "train s", "train img/s", "published", "gap"]


# ------------------------------------------------------------------- report
def _fmt(v: Any, nd: int = 2) -> str:
    if v is None or v == "":
        return ""
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _cells(r: ReportRow) -> list[str]:
    """One table row: our numbers, the published number with its citation, the gap."""
    marks = (" †" if r.subset else "") + ("" if r.finished else " ‡")
    pub_cell = ""
    if r.match in ("backbone", "other-backbone"):
        pub_cell = f"{r.published:.1f}" + ("" if r.match == "backbone" else f" ({r.published_row['backbone']})")
        pub_cell += f" [{r.cite}]"
    elif r.match == "no-number":
        pub_cell = f"n/a [{r.cite}]"  # the paper gives no number for this data set; the source list says why
    return [f"`{r.run}`{marks}", r.method, r.backbone, f"{r.dataset} ({r.root})", _fmt(r.img_size),
            _fmt(r.epochs), _fmt(r.steps), _fmt(r.top1), _fmt(r.top5), _fmt(r.mean_class_acc),
            _fmt(r.train_seconds, 0), _fmt(r.images_per_s, 1), pub_cell,
            f"{r.gap:+.1f}" if r.gap is not None else ""]


def format_markdown(report: Report, generated: dt.datetime | None = None) -> str:
    """The report's Markdown: the table, the honesty notes and the numbered published sources."""
    generated = generated or dt.datetime.now()
    lines = [
        "# fgvc benchmark report", "",
        f"Generated {generated.isoformat(timespec='seconds')} by `python -m fgvc.bench report` from "
        f"{len(report.rows)} run(s); published numbers from `{report.published_csv}`. Accuracies in %, test split, "
        "final-epoch model (final.json). `gap` = ours - published.", "",
        "| " + " | ".join(TABLE_HEAD) + " |", "|" + "|".join("---" for _ in TABLE_HEAD) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in _cells(r)) + " |" for r in report.rows]
    lines.append("")
    if report.any_subset:
        lines += ["**† Not a like-for-like comparison.** These runs use a subset, mini or synthetic data set "
                  "(`data.root` contains 'mini' or `data.name` is 'synthetic'): fewer classes and images, often "
                  "lower resolution and far shorter schedules than the papers. Their accuracy and the gap say "
                  "nothing about how the method compares with the published full-data-set number; they only show "
                  "that the pipeline runs end to end.", ""]
    if report.any_unfinished:
        lines += ["‡ No final.json: the run did not finish (or its final evaluation failed); accuracy cells are "
                  "empty.", ""]
    notes = [f"`{r.run}`: trained at {r.img_size} px, the published number at {r.published_row['img_size']} px."
             for r in report.rows if r.img_size_differs]
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    if report.sources:
        lines += ["Published numbers:", ""]
        for i, row in enumerate(report.sources, start=1):
            num = "no number" if row["top1"] is None else f"{row['top1']:.1f}"
            size = f" at {row['img_size']} px" if row.get("img_size") else ""
            venue = f", {row['venue']}" if row.get("venue") else ""
            lines.append(f"{i}. {row['method']} / {row['backbone']} / {row['dataset']}{size}: {num}. "
                         f"{row['source']}{venue}. {row['notes']}")
        lines.append("")
    return "\n".join(lines)


def draw_chart(report: Report, path: str | Path) -> Path:
    """Bar chart PNG of our test top-1 next to the published number, per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report.rows
    labels = [f"{r.run[:28]}{' †' if r.subset else ''}" for r in runs]
    xs = range(len(runs))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(runs) + 2), 3.6))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], [r.top1 or 0 for r in runs], w, label="ours (test top-1)")
    ax.bar([x + w / 2 for x in xs], [r.published or 0 for r in runs], w, label="published", color="grey")
    for x, r in zip(xs, runs):
        for dx, v in ((-w / 2, r.top1), (w / 2, r.published)):
            if v is None:
                ax.text(x + dx, 1, "n/a", ha="center", fontsize=7, rotation=90)
    ax.set_xticks(list(xs), labels, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 115)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2, frameon=False)
    if report.any_subset:
        ax.set_title("† subset/mini/synthetic data: not comparable with the published numbers", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dirs: list[str | Path], published_csv: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Markdown table + bar chart (``out`` with ``.png``); returns both paths."""
    report = compare_runs(run_dirs, published_csv)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(format_markdown(report))
    return out, draw_chart(report, out.with_suffix(".png"))


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
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_)
        importlib.import_module(module).add_arguments(p)
        p.add_argument("--results", default=RESULTS, help=f"JSON lines file to append to (default {RESULTS})")
    tp = sub.add_parser("tables", help="write speed.md from the latest pipeline/steps/infer tables")
    tp.add_argument("--results", default=RESULTS, help="JSON lines file to read")
    tp.add_argument("--out", default="benchmarks/results/speed.md", help="Markdown file to write")
    args = ap.parse_args(argv)
    if args.cmd == "speed":
        for key in ("img_size", "batch", "steps", "num_classes"):
            if getattr(args, key) < 1:
                ap.error(f"--{key.replace('_', '-')} must be >= 1")
        if args.warmup < 0:
            ap.error("--warmup must be >= 0")
    return args


def speed_spec(args: argparse.Namespace) -> SpeedSpec:
    """The :class:`SpeedSpec` of parsed ``speed`` arguments."""
    return SpeedSpec(backbone=args.backbone, method=args.method, img_size=args.img_size, batch=args.batch,
                     steps=args.steps, warmup=args.warmup, device=args.device, amp=args.amp,
                     channels_last=args.channels_last, compile=args.compile, num_classes=args.num_classes)


@friendly  # BenchError / SpeedError (user errors) -> one "error: ..." line, exit 2
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.cmd == "report":
        md, png = write_report(args.runs, args.published, args.out)
        print(md)
        print(png)
        return 0
    if args.cmd == "tables":
        print(write_speed_md(args.results, args.out))
        return 0
    if args.cmd in SUBCOMMANDS:
        return int(importlib.import_module(SUBCOMMANDS[args.cmd][0]).run(args, "python -m fgvc.bench " + shlex.join(argv)))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rec = measure_speed(speed_spec(args), command="python -m fgvc.bench " + shlex.join(argv))
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
