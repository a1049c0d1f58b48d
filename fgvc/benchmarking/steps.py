"""``python -m fgvc.bench steps RECIPE [RECIPE ...]``: the training step of each recipe's method against a plain step.

A part-attention method costs more per step than plain fine-tuning: WS-DAN (Hu et al. 2019, arXiv:1901.09891) runs
the backbone forward and backward three times (raw, attention-crop and attention-drop views), so ~3x a plain step is
its floor. This command measures each method's step against the plain baseline (``model.name: baseline``, default
arguments) on the same backbone, input size, batch, precision (fp32 unless ``--amp``) and memory layout.

One step is what the trainer does per batch: the method's forward with targets (its ``training_step``), the loss,
backward and the optimizer step. Each recipe's method gets its model arguments (e.g. WS-DAN's attention count,
B-CNN's pooling), loss and optimizer from its recipe, in the one-stage objective ``main``; the baseline gets the
first recipe's loss (no ``loss.aux``) and optimizer. Input and weights are random (``pretrained: false``; no data
or weight files). After ``--warmup`` untimed steps each, the rows' steps are timed interleaved, one step per row in
each of ``--repeats`` rounds, so that load on a shared machine hits every row alike; ``step_ms`` is the median.

With ``--isolate`` every round runs each row in a fresh process instead (``--warmup`` steps, then
``--steps-per-process`` timed ones whose median is that round's time): rows timed in one process share its heap,
and on this 2-core CPU a WS-DAN step left the plain step that followed it up to 40 % slower (949 against 628-696 ms
alone), which inflated WS-DAN's ratio. Slower (a process start per row and round), but each row is timed as a
training run would see it.

``ratio`` = step time / the baseline's step time (a time ratio: 3.0 is three times as slow), ``images_per_s`` =
batch / step time, ``paired_ratio`` = the median over rounds of the same quotient within one round (steadier on a
busy machine).
"""
from __future__ import annotations

import copy
import json
import multiprocessing as mp
import statistics
from dataclasses import dataclass
from typing import Any, Callable

import torch

from fgvc.benchmarking.results import RESULTS, finish_table
from fgvc.benchmarking.speed import SpeedSpec, Workload, build_workload, machine_info, time_steps
from fgvc.config import load_recipe
from fgvc.errors import SpeedError
from fgvc.models.backbone import is_transformer_name

__all__ = ["StepsOptions", "run", "step_rows", "time_alone", "time_in_fresh_process"]


@dataclass(frozen=True)
class StepsOptions:
    """What ``python -m fgvc.bench steps`` measures (its flags, parsed by :mod:`fgvc.bench`)."""

    recipes: list[str]  # recipe YAMLs whose methods are timed
    backbone: str | None = None  # timm model name (None: the first recipe's model.backbone)
    img_size: int | None = None  # input size (None: the first recipe's data.img_size)
    batch: int | None = None  # batch size (None: the first recipe's train.batch_size)
    amp: str = "none"  # autocast dtype: none (fp32), bf16, fp16
    channels_last: bool | None = None  # None: the first recipe's train.channels_last (auto: on for CNNs)
    device: str = "auto"
    repeats: int = 5  # timed rounds, one step per row each
    warmup: int = 2  # untimed steps per row first
    isolate: bool = False  # each row in a process of its own in every round (see the module docstring)
    steps_per_process: int = 3  # with isolate: timed steps per row and round, after the warm-up
    threads: int = 0  # torch CPU threads (0: torch's default)
    num_classes: int = 200  # classifier outputs (CUB's)
    label: str = ""  # stored with every row
    results: str | None = RESULTS  # JSON lines file appended to (None: not written)


def _baseline_recipe(first: dict[str, Any]) -> dict[str, Any]:
    """The plain baseline: ``model.name: baseline`` with default arguments, the first recipe's loss (no aux)."""
    cfg = copy.deepcopy(first)
    cfg["model"] = {"name": "baseline", "backbone_args": {}, "args": {}}
    cfg["loss"]["aux"] = []
    return cfg


def _specs(args: StepsOptions, first: dict[str, Any]) -> tuple[str, int, int, bool]:
    """Backbone, input size, batch and layout: the flags, else the first recipe's."""
    backbone = args.backbone or first["model"]["backbone"]
    size = first["data"]["img_size"] if args.img_size is None else args.img_size
    batch = first["train"]["batch_size"] if args.batch is None else args.batch
    channels_last = args.channels_last
    if channels_last is None:
        setting = first["train"]["channels_last"]
        channels_last = (not is_transformer_name(backbone)) if setting == "auto" else bool(setting)
    for flag, value in (("--img-size", size), ("--batch", batch), ("--repeats", args.repeats),
                        ("--num-classes", args.num_classes)):
        if value < 1:
            raise SpeedError(f"{flag} must be >= 1, not {value}")
    if args.warmup < 0:
        raise SpeedError(f"--warmup must be >= 0, not {args.warmup}")
    return backbone, size, batch, channels_last


def _time_interleaved(works: list[Workload], warmup: int, repeats: int) -> list[list[float]]:
    """Seconds of one step of each workload in each of ``repeats`` rounds (after ``warmup`` steps each)."""
    for w in works:
        w.method.train()
        time_steps(w.train_step, warmup, 0, w.sync)
    times: list[list[float]] = [[] for _ in works]
    for _ in range(repeats):
        for w, out in zip(works, times):
            out.append(time_steps(w.train_step, 0, 1, w.sync))  # synchronised before and after the step
    return times


def time_alone(spec: SpeedSpec, cfg: dict[str, Any], warmup: int, steps: int, threads: int = 0,
               prepare: Callable[[Workload], None] | None = None) -> float:
    """The median seconds of ``steps`` steps of ``spec``'s workload after ``warmup`` ones, in this process;
    ``prepare`` (picklable) may change the built workload first (e.g. a benchmark's stand-in backbone)."""
    if threads:
        torch.set_num_threads(threads)
    w = build_workload(spec, cfg)
    w.method.train()
    if prepare is not None:
        prepare(w)
    time_steps(w.train_step, warmup, 0, w.sync)
    return statistics.median(time_steps(w.train_step, 0, 1, w.sync) for _ in range(steps))


def time_in_fresh_process(spec: SpeedSpec, cfg: dict[str, Any], warmup: int, steps: int, threads: int = 0,
                          prepare: Callable[[Workload], None] | None = None) -> float:
    """:func:`time_alone` in a freshly spawned interpreter: nothing inherited from this process's heap."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(time_alone, (spec, cfg, warmup, steps, threads, prepare))


def _time_isolated(specs: list[SpeedSpec], cfgs: list[dict[str, Any]], args: StepsOptions
                   ) -> list[list[float]]:
    """Seconds of a step of each row in each of ``args.repeats`` rounds, every row and round in its own process."""
    if args.steps_per_process < 1:
        raise SpeedError(f"--steps-per-process must be >= 1, not {args.steps_per_process}")
    times: list[list[float]] = [[] for _ in specs]
    for _ in range(args.repeats):
        for spec, cfg, out in zip(specs, cfgs, times):
            out.append(time_in_fresh_process(spec, cfg, args.warmup, args.steps_per_process, args.threads))
    return times


def _step_key(cfg: dict[str, Any]) -> str:
    """What decides a step's cost in a recipe: the method and its arguments, the loss and the optimizer."""
    keys = ("optimizer", "momentum", "nesterov", "weight_decay", "lr", "backbone_lr_scale", "layer_decay")
    model = {k: cfg["model"].get(k) or {} for k in ("args", "backbone_args")}
    return json.dumps([cfg["model"]["name"], model, cfg["loss"], {k: cfg["train"].get(k) for k in keys}],
                      sort_keys=True, default=str)


def step_rows(args: StepsOptions) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The table's rows (the baseline first) and the machine they were measured on. A recipe whose step is the
    plain one (or an earlier recipe's: same method, arguments, loss and optimizer) shares that row."""
    recipes = [load_recipe(path)[0] for path in args.recipes]
    backbone, size, batch, channels_last = _specs(args, recipes[0])
    rows_of: dict[str, dict[str, Any]] = {}  # step key -> {cfg, recipes}
    for path, cfg in [("(plain)", _baseline_recipe(recipes[0]))] + list(zip(args.recipes, recipes)):
        rows_of.setdefault(_step_key(cfg), {"cfg": cfg, "recipes": []})["recipes"].append(path)
    works, specs = [], []
    for entry in rows_of.values():
        cfg = entry["cfg"]
        spec = SpeedSpec(backbone=backbone, method=cfg["model"]["name"], img_size=size, batch=batch,
                         steps=args.repeats, warmup=args.warmup, device=args.device, amp=args.amp,
                         channels_last=channels_last, num_classes=args.num_classes)
        try:  # built here also with --isolate: a bad recipe fails before any process starts
            works.append(build_workload(spec, cfg))
        except SpeedError as exc:
            raise SpeedError(f"{', '.join(entry['recipes'])}: {exc}") from exc
        specs.append(spec)
    params, device = [sum(p.numel() for p in w.method.parameters()) for w in works], works[0].device
    if args.isolate:
        works.clear()  # free this process's copies before the timed ones start
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the children's memory, not this process's cache
        times = _time_isolated(specs, [e["cfg"] for e in rows_of.values()], args)
    else:
        times = _time_interleaved(works, args.warmup, args.repeats)
    base = statistics.median(times[0])
    rows = []
    for entry, n_params, ts in zip(rows_of.values(), params, times):
        cfg, step = entry["cfg"], statistics.median(ts)
        rows.append({"method": cfg["model"]["name"], "recipe": ", ".join(entry["recipes"]), "backbone": backbone,
                     "img_size": size, "batch": batch, "amp": args.amp, "channels_last": channels_last,
                     "device": device.type, "step_ms": round(1000 * step, 1), "ratio": round(step / base, 3),
                     "paired_ratio": round(statistics.median(t / b for t, b in zip(ts, times[0])), 3),
                     "images_per_s": round(batch / step, 2), "params_m": round(n_params / 1e6, 2),
                     "optimizer": cfg["train"]["optimizer"], "repeats": args.repeats, "warmup": args.warmup,
                     "isolated": bool(args.isolate), **({"label": args.label} if args.label else {})})
    return rows, machine_info(device)


def run(args: StepsOptions, command: str) -> None:
    """Measure, print and record the table of ``args`` (``command``: the command line stored with each row)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, machine = step_rows(args)
    print("steps: ratio = step time / the plain baseline's step time (3.0 = three times as slow); "
          "images_per_s = batch / step time; medians over the rounds")
    finish_table("steps", rows, command, machine, args.results)
