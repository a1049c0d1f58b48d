"""``python -m fgvc.bench infer RUN_DIR_OR_RECIPE``: every inference path of a run, side by side with eager fp32.

The paths (:data:`fgvc.deploy.fast_infer.PATHS`): eager fp32 in contiguous NCHW (the reference row, ratio 1.0),
channels-last, ``torch.compile`` (its compilation reported apart, as ``setup_s``), TorchScript and ONNX Runtime (the
files :mod:`fgvc.deploy.export` writes, exported to a temporary folder, export seconds as ``setup_s``), bf16 autocast
and, on CUDA, fp16 autocast. Each is timed on the same ``N`` real test images of the run's data set, preprocessed
once (so only the model is timed), at each ``--batches`` size: :func:`fgvc.deploy.model_cost.median_ms` in
``--rounds`` interleaved rounds (every path once per round, so a busy neighbour slows them alike), the median of
the rounds' medians.

Exactness: every path computes the logits of all ``N`` images, compared with eager's. ``agrees``: the same top-1
class for every image; ``max_abs_diff``: the largest logit difference; ``exact``: agrees and the difference within
the export parity tolerance (:func:`fgvc.deploy.parity.rel_tol_for`: 1e-3 relative; 1e-2 on a CUDA device whose fp32
reference runs TF32 convolutions, as PyTorch's defaults do). No path is faster by being wrong: the
summary names the fastest *exact* path, and ``default`` marks the one ``fgvc.evaluate`` / ``fgvc.predict`` take
with ``--backend auto``. A path that cannot run here (onnxruntime missing, compile failing, fp16 on the CPU) gets
a row with ``note`` instead of numbers, and the command goes on.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from fgvc.benchmarking.results import RESULTS, finish_table
from fgvc.benchmarking.speed import machine_info
from fgvc.config import scored_split
from fgvc.deploy.fast_infer import PATHS, InferPath, auto_choice, build_path
from fgvc.deploy.model_cost import median_ms
from fgvc.deploy.parity import compare, parity_images, rel_tol_for
from fgvc.engine.inference import TrainedRun
from fgvc.errors import BenchError

__all__ = ["InferOptions", "run", "measure", "time_paths"]

DEFAULT_REPEATS = {1: 20}  # timed calls per round at batch 1; 5 at larger batches


@dataclass(frozen=True)
class InferOptions:
    """What ``python -m fgvc.bench infer`` measures (its flags, parsed by :mod:`fgvc.bench`)."""

    target: str  # run directory, checkpoint file or recipe
    sets: list[str] = field(default_factory=list)  # recipe overrides
    checkpoint: str = "last"
    weights: str = "auto"  # auto (EMA weights when the run kept an EMA), ema or model
    images: int = 64  # real test images timed and compared
    batches: list[int] = field(default_factory=lambda: [1, 32])
    paths: list[str] = field(default_factory=lambda: list(PATHS))
    device: str = "auto"
    threads: int = 0  # torch and ONNX Runtime threads (0: torch's default)
    repeats: int = 0  # timed calls per round (0: 20 at batch 1, else 5)
    rounds: int = 3
    label: str | None = None  # stored with every row (None: the target as given)
    results: str | None = RESULTS  # JSON lines file appended to (None: not written)


def time_paths(fns: dict[str, Callable[[Tensor], Any]], x: Tensor, repeats: int, rounds: int) -> dict[str, float]:
    """Median ms per call of each ``fns`` on ``x``: ``rounds`` interleaved rounds of :func:`median_ms`."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(max(rounds, 1)):
        for name, fn in fns.items():
            times[name].append(median_ms(fn, x, repeats, warmup=1 if r == 0 else 0))
    return {name: statistics.median(t) for name, t in times.items()}


def _batch_of(x: Tensor, b: int) -> Tensor:
    """The first ``b`` images of ``x`` (cycled when there are fewer)."""
    return x[:b] if b <= len(x) else x.repeat((b + len(x) - 1) // len(x), 1, 1, 1)[:b]


def _all_logits(fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int) -> np.ndarray:
    return np.concatenate([fn(x[i:i + chunk]).numpy() for i in range(0, len(x), chunk)])


def _note(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:160]


def measure(trained: Any, images: Tensor, batches: list[int], paths: list[str], repeats: int = 0, rounds: int = 3,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """The rows of one table: ``images`` (``N, 3, S, S``, normalised, on the run's device) through each of ``paths``
    of ``trained`` (a :class:`TrainedRun`) at each batch size (see the module doc)."""
    chunk = max(batches)
    built: dict[str, InferPath] = {}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="fgvc-bench-infer-") as folder:
        order = ["eager"] + [p for p in paths if p != "eager" and p != "compile"] + [p for p in paths if p == "compile"]
        for name in order:  # compile last: the exports move the method between layouts while they run
            try:
                built[name] = build_path(trained, name, Path(folder))
            except Exception as e:
                notes[name] = _note(e)
        if "eager" not in built:
            raise BenchError(f"the reference path (eager fp32) cannot run this model: {notes['eager']}")
        ref = _all_logits(built["eager"].fn, images, chunk)
        quality: dict[str, dict[str, Any]] = {}
        setup: dict[tuple[str, int], float] = {}
        for name, path in list(built.items()):
            try:
                for b in batches:  # the first call of each shape: torch.compile compiles here, excluded from timing
                    t0 = time.perf_counter()
                    path.fn(_batch_of(images, b))
                    setup[name, b] = path.setup_s + (time.perf_counter() - t0 if name == "compile" else 0.0)
                got = _all_logits(path.fn, images, chunk)
            except Exception as e:
                notes[name] = _note(e)
                del built[name]
                continue
            report = compare(ref, got, rel_tol_for(trained.runtime.device))
            agrees = bool((ref.argmax(1) == got.argmax(1)).all())
            within = report.max_abs_diff <= report.tolerance and name not in ("bf16", "fp16")  # autocast: approximate
            quality[name] = {"agrees": agrees, "max_abs_diff": float(report.max_abs_diff), "exact": agrees and within}
        default = auto_choice(trained)[0]
        rows = []
        for b in batches:
            reps = repeats or DEFAULT_REPEATS.get(b, 5)
            log(f"timing batch {b}: {', '.join(built)} ({rounds} rounds x {reps} calls)")
            ms = time_paths({n: p.fn for n, p in built.items()}, _batch_of(images, b), reps, rounds)
            for name in paths:
                row: dict[str, Any] = {"path": name, "batch": b}
                if name in built:
                    ips = b * 1000.0 / ms[name]
                    row.update(images_per_s=round(ips, 2), ratio=round(ms["eager"] / ms[name], 3),
                               ms_per_batch=round(ms[name], 2), **quality[name])
                    if name in ("compile", "torchscript", "onnx"):
                        row["setup_s"] = round(setup[name, b], 2)
                else:
                    row.update(images_per_s=None, ratio=None, ms_per_batch=None, agrees=None, max_abs_diff=None,
                               exact=False, note=notes.get(name, "not run"))
                row["default"] = name == default
                rows.append(row)
    return rows


def _fastest_line(rows: list[dict[str, Any]], batch: int) -> str:
    exact = [r for r in rows if r["batch"] == batch and r.get("exact") and r["images_per_s"]]
    best = max(exact, key=lambda r: r["images_per_s"])
    default = next((r for r in rows if r["batch"] == batch and r["default"]), None)
    line = f"fastest exact path at batch {batch}: {best['path']} ({best['ratio']:.2f}x eager fp32)"
    if default is not None and default["ratio"] is not None:
        line += f"; evaluate/predict --backend auto: {default['path']} ({default['ratio']:.2f}x)"
    return line


def run(args: InferOptions, command: str) -> None:
    """Measure, print and record the table of ``args`` (``command``: the command line stored with each row)."""
    if args.images < 1 or min(args.batches) < 1 or args.repeats < 0 or args.rounds < 1:
        raise BenchError("--images, --batches and --rounds must be >= 1 and --repeats >= 0")
    if not Path(args.target).exists():
        raise BenchError(f"no such run directory, checkpoint or recipe: {args.target}")
    sets = list(args.sets)
    if args.device != "auto":
        sets.append(f"train.device={args.device}")
    if args.threads:
        torch.set_num_threads(args.threads)
        sets.append(f"train.threads={args.threads}")
    trained = TrainedRun.load(args.target, args.checkpoint, sets, args.weights)
    paths = ["eager"] + [p for p in args.paths if p != "eager"]
    if trained.runtime.device.type != "cuda" and "fp16" in paths:
        paths.remove("fp16")  # fp16 autocast is a CUDA path
    split = scored_split(trained.cfg)
    images = trained.runtime.inputs(parity_images(trained.dataset(split), args.images)).float().contiguous()
    print(f"fgvc.bench infer: {trained.describe()}, {len(images)} {split} images at {images.shape[-1]} px, "
          f"{trained.runtime.device.type}, {torch.get_num_threads()} threads")
    rows = measure(trained, images, args.batches, paths, args.repeats, args.rounds)
    label = args.target if args.label is None else args.label
    rows = [{**r, "label": label} for r in rows] if label else rows
    finish_table("infer", rows, command, machine_info(trained.runtime.device), args.results)
    for b in args.batches:
        print(_fastest_line(rows, b))
