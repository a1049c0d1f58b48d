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

``python -m fgvc.bench pipeline|steps|infer ...`` (:mod:`fgvc.benchmarking.pipeline`, ``.steps``, ``.infer``)
    fgvc side by side with a reference: its data loaders against a torchvision loader, each method's training step
    against the plain baseline's, each inference path against eager fp32; one table each, recorded through
    :mod:`fgvc.benchmarking.results`. ``python -m fgvc.bench tables`` writes ``benchmarks/results/speed.md`` from them.
"""
from __future__ import annotations

import argparse
import shlex
import sys

import torch

from fgvc.benchmarking import infer, pipeline, steps
from fgvc.benchmarking.infer import InferOptions
from fgvc.benchmarking.pipeline import PipelineOptions
from fgvc.benchmarking.published import (PUBLISHED_COLUMNS, compare_runs, is_subset, load_published,
                                         match_published, read_run)
from fgvc.benchmarking.published_report import draw_chart, format_markdown, write_report
from fgvc.benchmarking.results import RESULTS, append_rows, write_speed_md
from fgvc.benchmarking.speed import SpeedSpec, measure_speed
from fgvc.benchmarking.steps import StepsOptions
from fgvc.cli import (add_batch_size, add_checkpoint, add_device, add_output, add_set, add_threads, add_weights,
                      friendly)
from fgvc.deploy.fast_infer import PATHS
from fgvc.errors import BenchError, SpeedError

# the report's library lives in fgvc.benchmarking.published (computing) and .published_report (Markdown, chart);
# its names stay importable from here
__all__ = ["load_published", "read_run", "match_published", "is_subset", "write_report", "main", "compare_runs",
           "format_markdown", "draw_chart", "speed_spec", "PUBLISHED_COLUMNS", "BenchError", "SpeedError"]

# subcommand -> help; each is measured by fgvc.benchmarking.<subcommand>.run(options, command), which records its
# table through fgvc.benchmarking.results.finish_table (kind, batch, name, images_per_s, ratio, machine, command)
SUBCOMMANDS = {
    "pipeline": "images/s of fgvc's train/eval loaders vs a torchvision reference",
    "steps": "each method's training step time vs the plain baseline's",
    "infer": "inference paths (eager, channels-last, compile, TorchScript, ORT) vs eager",
}


# ---------------------------------------------------------------------- CLI
def _pipeline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML whose data section (data set, root, sizes, augmentation) is measured")
    add_set(p)
    p.add_argument("--images", type=int, default=256, help="images per timed pass of each loader (default 256)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default data.num_workers)")
    add_batch_size(p, None, "images per loader batch (None: the recipe's train.batch_size)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per row; the median is reported (default 3)")
    p.add_argument("--levers", choices=["all", "none"], default="all",
                   help="all: also time fgvc's train loader with each lever off (default); none: the four main rows")
    p.add_argument("--label", default="", help="a label stored with every row (e.g. the data set)")
    add_device(p)  # where batches go (and uint8 batches are normalised)


def _steps_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipes", nargs="+", metavar="RECIPE", help="recipe YAMLs whose methods are timed")
    p.add_argument("--backbone", default=None, help="timm model name (default: the first recipe's model.backbone)")
    p.add_argument("--img-size", type=int, default=None, help="input size (default: the first recipe's data.img_size)")
    add_batch_size(p, None, "images per training step (None: the first recipe's train.batch_size)")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast dtype (default fp32)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last layout (default: the first recipe's train.channels_last; auto is on for CNNs)")
    add_device(p)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds, one step per row each (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per row first (default 2)")
    p.add_argument("--isolate", action="store_true",
                   help="time each row in a process of its own in every round (see the module docstring)")
    p.add_argument("--steps-per-process", type=int, default=3,
                   help="with --isolate: timed steps per row and round, after --warmup (default 3)")
    add_threads(p)
    p.add_argument("--num-classes", type=int, default=200, help="classifier outputs (default 200, CUB's)")
    p.add_argument("--label", default="", help="a label stored with every row (e.g. the backbone and size)")


def _infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="run directory (or checkpoint file), or a recipe (.yaml: its pretrained or "
                                   "random-init weights, untrained head)")
    add_set(p)
    add_checkpoint(p)
    add_weights(p)
    p.add_argument("--images", type=int, default=64, help="real test images timed and compared (default 64)")
    add_batch_size(p, [1, 32], "the batch sizes timed", many=True, old="--batches")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="paths to measure (default all)")
    add_device(p)
    add_threads(p, "torch's and ONNX Runtime's")
    p.add_argument("--repeats", type=int, default=0, help="timed calls per round (0: 20 at batch 1, else 5)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the row is their median")
    p.add_argument("--label", default=None, help="a label stored with every row (default: the target as given), "
                                                 "so that tables of different models stay apart in speed.md")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-bench", description="fgvc benchmark report and speed measurement.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("report", help="Markdown table of runs vs published numbers (+ bar chart)")
    rp.add_argument("runs", nargs="+", help="run directories made by fgvc.train")
    rp.add_argument("--published", default="benchmarks/published.csv", help="published results CSV")
    add_output(rp, "Markdown output, the PNG written beside it (default benchmarks/results/report.md)",
               default="benchmarks/results/report.md", metavar="FILE.md", old_out=True)
    sp = sub.add_parser("speed", help="train / inference images per second on random input")
    sp.add_argument("--backbone", required=True, help="timm model name, e.g. resnet50 or test_resnet.r160_in1k")
    sp.add_argument("--method", default="baseline", help="registered method (baseline, wsdan, bcnn, racnn, ...)")
    sp.add_argument("--img-size", type=int, default=160)
    add_batch_size(sp, 32, "images per step")
    sp.add_argument("--steps", type=int, default=5, help="timed steps (after the warm-up)")
    sp.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    sp.add_argument("--num-classes", type=int, default=200)
    sp.add_argument("--channels-last", action="store_true")
    add_device(sp)
    sp.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    sp.add_argument("--compile", action="store_true", help="torch.compile the method (compile time is in the warm-up)")
    add_threads(sp)
    sp.add_argument("--results", default="benchmarks/results/speed.jsonl", help="JSON lines file to append to")
    for name, add in (("pipeline", _pipeline_arguments), ("steps", _steps_arguments), ("infer", _infer_arguments)):
        p = sub.add_parser(name, help=SUBCOMMANDS[name])
        add(p)
        p.add_argument("--results", default=RESULTS, help=f"JSON lines file to append to (default {RESULTS})")
    tp = sub.add_parser("tables", help="write speed.md from the latest pipeline/steps/infer tables")
    tp.add_argument("--results", default=RESULTS, help="JSON lines file to read")
    add_output(tp, "Markdown file to write (default benchmarks/results/speed.md)", default="benchmarks/results/speed.md",
               metavar="FILE.md", old_out=True)
    args = ap.parse_args(argv)
    if args.cmd == "speed":
        for key in ("img_size", "batch_size", "steps", "num_classes"):
            if getattr(args, key) < 1:
                ap.error(f"--{key.replace('_', '-')} must be >= 1")
        if args.warmup < 0:
            ap.error("--warmup must be >= 0")
    return args


def speed_spec(args: argparse.Namespace) -> SpeedSpec:
    """The :class:`SpeedSpec` of parsed ``speed`` arguments."""
    return SpeedSpec(backbone=args.backbone, method=args.method, img_size=args.img_size, batch=args.batch_size,
                     steps=args.steps, warmup=args.warmup, device=args.device, amp=args.amp,
                     channels_last=args.channels_last, compile=args.compile, num_classes=args.num_classes)


def pipeline_options(args: argparse.Namespace) -> PipelineOptions:
    """The :class:`PipelineOptions` of parsed ``pipeline`` arguments."""
    return PipelineOptions(recipe=args.recipe, sets=args.sets, images=args.images, workers=args.workers,
                           batch=args.batch_size, repeats=args.repeats, levers=args.levers, label=args.label,
                           device=_device(args.device), results=args.results)


def steps_options(args: argparse.Namespace) -> StepsOptions:
    """The :class:`StepsOptions` of parsed ``steps`` arguments."""
    return StepsOptions(recipes=args.recipes, backbone=args.backbone, img_size=args.img_size, batch=args.batch_size,
                        amp=args.amp, channels_last=args.channels_last, device=args.device, repeats=args.repeats,
                        warmup=args.warmup, isolate=args.isolate, steps_per_process=args.steps_per_process,
                        threads=args.threads or 0, num_classes=args.num_classes, label=args.label, results=args.results)


def _device(name: str) -> str:
    """``--device auto``: cuda when available, else cpu (the rule of every command's --device)."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def infer_options(args: argparse.Namespace) -> InferOptions:
    """The :class:`InferOptions` of parsed ``infer`` arguments."""
    return InferOptions(target=args.target, sets=args.sets, checkpoint=args.checkpoint, weights=args.weights,
                        images=args.images, batches=args.batch_size, paths=args.paths, device=args.device,
                        threads=args.threads or 0,
                        repeats=args.repeats, rounds=args.rounds, label=args.label, results=args.results)


@friendly  # BenchError / SpeedError (user errors) -> one "error: ..." line, exit 2
def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.cmd == "report":
        md, png = write_report(args.runs, args.published, args.output)
        print(md)
        print(png)
        return
    if args.cmd == "tables":
        print(write_speed_md(args.results, args.output))
        return
    command = "python -m fgvc.bench " + shlex.join(argv)
    tables = {"pipeline": (pipeline.run, pipeline_options), "steps": (steps.run, steps_options),
              "infer": (infer.run, infer_options)}
    if args.cmd in tables:
        run, options = tables[args.cmd]
        run(options(args), command)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    rec = measure_speed(speed_spec(args), command=command)
    print(f"{rec['method']} / {rec['backbone']} at {rec['img_size']} px, batch {rec['batch']}, amp {rec['amp']}, "
          f"channels_last {rec['channels_last']}, compile {rec['compile']} on {rec['machine']['device_name']}: "
          f"train {rec['train_images_per_s']:.1f} img/s, inference {rec['infer_images_per_s']:.1f} img/s")
    print(append_rows(args.results, [rec]))


if __name__ == "__main__":
    raise SystemExit(main())
