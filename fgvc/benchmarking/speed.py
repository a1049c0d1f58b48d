"""Training and inference speed of a method on random input (``python -m fgvc.bench speed``).

Warm-up steps (and with ``--compile`` the compilation) are excluded from the timing; the record names the
machine, the date and the command, so numbers from different machines are never mixed up.

    rec = measure_speed(SpeedSpec(backbone="resnet50", batch=32, device="cuda", amp="bf16"))

:func:`build_workload` builds the method, its random batch and one train and one inference step (from a recipe: its
method arguments, loss and optimizer, as the trainer builds them); :func:`time_steps` times any step;
:func:`speed_record` assembles the JSON record. ``python -m fgvc.bench steps`` (:mod:`fgvc.benchmarking.steps`)
times the train steps of several recipes' methods against the plain baseline with the same pieces.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from fgvc.engine.builder import build_method_from_cfg, part_backward, resolve_device
from fgvc.engine.distributed import DistEnv
from fgvc.engine.host_memory import keep_freed_memory
from fgvc.engine.optim import build_stage_optimizer
from fgvc.errors import SpeedError
from fgvc.methods import build_method

__all__ = ["SpeedError", "SpeedSpec", "Workload", "machine_info", "build_workload", "time_steps", "speed_record",
           "measure_speed"]

Device = Literal["auto", "cpu", "cuda"]
Amp = Literal["none", "bf16", "fp16"]


@dataclass(frozen=True)
class SpeedSpec:
    """What to measure; the defaults are ``python -m fgvc.bench speed``'s."""

    backbone: str  # timm model name, e.g. resnet50 or test_resnet.r160_in1k
    method: str = "baseline"  # registered method (baseline, wsdan, bcnn, racnn, ...)
    img_size: int = 160
    batch: int = 32
    steps: int = 5  # timed steps (after the warm-up)
    warmup: int = 2  # untimed warm-up steps
    device: Device = "auto"
    amp: Amp = "none"
    channels_last: bool = False
    compile: bool = False  # torch.compile the method (the compile time falls in the warm-up)
    num_classes: int = 200

    def __post_init__(self) -> None:
        for key in ("img_size", "batch", "steps", "num_classes"):
            if getattr(self, key) < 1:
                raise SpeedError(f"{key} must be >= 1, not {getattr(self, key)}")
        if self.warmup < 0:
            raise SpeedError(f"warmup must be >= 0, not {self.warmup}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise SpeedError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise SpeedError(f"amp must be none, bf16 or fp16, not {self.amp!r}")

    def command(self) -> str:
        """The ``python -m fgvc.bench speed`` command that measures this spec (non-default flags only)."""
        args = ["speed", "--backbone", self.backbone]
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value != f.default:
                flag = "--" + f.name.replace("_", "-")
                args += [flag] if value is True else [flag, str(value)]
        return "python -m fgvc.bench " + shlex.join(args)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: Any) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": device.type, "device_name": name}


@dataclass(frozen=True)
class Workload:
    """A built method on its device with one training step and one inference step on a fixed random batch."""

    device: torch.device
    method: torch.nn.Module  # the (uncompiled) method: train()/eval() and the parameter count
    train_step: Callable[[], None]  # forward, loss, backward, SGD step
    infer_step: Callable[[], None]  # forward without gradients
    sync: Callable[[], None]  # waits for the device (CUDA) before the clock is read


def _recipe_method(spec: SpeedSpec, recipe: dict[str, Any]) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The recipe's method on ``spec.backbone`` with random weights, in its one-stage objective ``main``, with the
    recipe's loss, ``loss.aux`` and optimizer (type, lr, momentum, weight decay), as the trainer builds them."""
    model = {**recipe["model"], "name": spec.method, "backbone": spec.backbone, "pretrained": False,
             "pretrained_file": None}
    method = build_method_from_cfg({**recipe, "model": model}, spec.num_classes, [1] * spec.num_classes)
    return method, build_stage_optimizer(method, {"name": "main"}, recipe["train"])


def build_workload(spec: SpeedSpec, recipe: dict[str, Any] | None = None) -> Workload:
    """The method of ``spec`` (random weights) on its device, a random batch and the two steps to time.

    ``recipe`` (a loaded recipe): ``spec.method`` gets the recipe's model arguments, loss and optimizer
    (:func:`_recipe_method`); without one it has its default arguments, cross-entropy and SGD (momentum 0.9)."""
    device = resolve_device(spec.device)
    keep_freed_memory(device)  # as the trainer does on the CPU (fgvc.engine.host_memory)
    if spec.amp == "fp16" and device.type != "cuda":
        raise SpeedError("--amp fp16 needs --device cuda; on the CPU use --amp bf16 or none")
    try:
        if recipe is None:
            method = build_method({"name": spec.method, "backbone": spec.backbone, "pretrained": False},
                                  spec.num_classes)
            opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
        else:
            method, opt = _recipe_method(spec, recipe)
    except ValueError as exc:  # unknown timm backbone, bad method argument
        raise SpeedError(f"cannot build --method {spec.method} --backbone {spec.backbone}: {exc}") from exc
    method.to(device)  # in place: the optimizer's parameters move with it
    fmt = torch.channels_last if spec.channels_last else torch.contiguous_format
    method.to(memory_format=fmt)
    model = torch.compile(method) if spec.compile else method
    x = torch.randn(spec.batch, 3, spec.img_size, spec.img_size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, spec.num_classes, (spec.batch,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=spec.amp == "fp16")
    method.backward_part = part_backward(scaler, 1, DistEnv())  # as the trainer (a multi-view step, e.g. WS-DAN)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def train_step() -> None:  # as the trainer: forward with targets (training_step), loss, backward, step
        with autocast():
            loss = model(x, y)["loss"]
        scaler.scale(loss.float()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    def infer_step() -> None:
        with torch.inference_mode(), autocast():
            model(x)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return Workload(device=device, method=method, train_step=train_step, infer_step=infer_step, sync=sync)


def time_steps(step: Callable[[], None], warmup: int, steps: int, sync: Callable[[], None] | None = None) -> float:
    """Seconds that ``steps`` calls of ``step`` take after ``warmup`` untimed ones; ``sync`` runs before each
    clock reading (e.g. ``torch.cuda.synchronize``)."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return time.perf_counter() - t0


def speed_record(spec: SpeedSpec, command: str, train_seconds: float, infer_seconds: float, n_params: int,
                 machine: dict[str, Any]) -> dict[str, Any]:
    """The JSON line of ``benchmarks/results/speed.jsonl`` for ``spec.steps`` train and inference steps."""
    n = spec.batch * spec.steps
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "command": command,
        "method": spec.method, "backbone": spec.backbone, "img_size": spec.img_size, "batch": spec.batch,
        "steps": spec.steps, "warmup": spec.warmup, "amp": spec.amp, "channels_last": spec.channels_last,
        "compile": spec.compile, "params_m": round(n_params / 1e6, 3),
        "train_images_per_s": round(n / max(train_seconds, 1e-9), 2),
        "infer_images_per_s": round(n / max(infer_seconds, 1e-9), 2),
        "train_step_ms": round(1000 * train_seconds / spec.steps, 2),
        "infer_step_ms": round(1000 * infer_seconds / spec.steps, 2),
        "machine": machine,
    }


def measure_speed(spec: SpeedSpec, command: str | None = None) -> dict[str, Any]:
    """Train and inference images/s of ``spec.method`` on random input; warm-up steps are not timed.

    ``command`` is recorded as the command that made the measurement (default: :meth:`SpeedSpec.command`)."""
    work = build_workload(spec)
    work.method.train()
    t_train = time_steps(work.train_step, spec.warmup, spec.steps, work.sync)
    work.method.eval()
    t_infer = time_steps(work.infer_step, spec.warmup, spec.steps, work.sync)
    n_params = sum(p.numel() for p in work.method.parameters())
    return speed_record(spec, command or spec.command(), t_train, t_infer, n_params, machine_info(work.device))
