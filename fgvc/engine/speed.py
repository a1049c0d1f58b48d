"""Training and inference speed of a method on random input (``python -m fgvc.bench speed``).

Warm-up steps (and with ``--compile`` the compilation) are excluded from the timing; the record names the
machine, the date and the command, so numbers from different machines are never mixed up.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Any

from fgvc.errors import SpeedError

__all__ = ["SpeedError", "machine_info", "measure_speed"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: Any) -> dict[str, Any]:
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": device.type, "device_name": name}


def measure_speed(args: argparse.Namespace) -> dict[str, Any]:
    """Train and inference images/s of ``args.method`` on random input; warm-up steps are not timed."""
    import torch

    from fgvc.engine.builder import resolve_device
    from fgvc.methods import build_method

    device = resolve_device(args.device)
    if args.amp == "fp16" and device.type != "cuda":
        raise SpeedError("--amp fp16 needs --device cuda; on the CPU use --amp bf16 or none")
    try:
        method = build_method({"name": args.method, "backbone": args.backbone, "pretrained": False}, args.num_classes)
    except ValueError as exc:  # unknown timm backbone, bad method argument
        raise SpeedError(f"cannot build --method {args.method} --backbone {args.backbone}: {exc}") from exc
    method.to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    method.to(memory_format=fmt)
    model = torch.compile(method) if args.compile else method
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, args.num_classes, (args.batch,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def train_step() -> None:
        with autocast():
            loss = model(x, y)["loss"]
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    def infer_step() -> None:
        with torch.inference_mode(), autocast():
            model(x)

    def timed(step: Any) -> float:
        for _ in range(args.warmup):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        return time.perf_counter() - t0

    method.train()
    t_train = timed(train_step)
    method.eval()
    t_infer = timed(infer_step)
    n = args.batch * args.steps
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m fgvc.bench " + " ".join(shlex.quote(a) for a in args.argv),
        "method": args.method, "backbone": args.backbone, "img_size": args.img_size, "batch": args.batch,
        "steps": args.steps, "warmup": args.warmup, "amp": args.amp, "channels_last": args.channels_last,
        "compile": args.compile, "params_m": round(sum(p.numel() for p in method.parameters()) / 1e6, 3),
        "train_images_per_s": round(n / max(t_train, 1e-9), 2), "infer_images_per_s": round(n / max(t_infer, 1e-9), 2),
        "train_step_ms": round(1000 * t_train / args.steps, 2), "infer_step_ms": round(1000 * t_infer / args.steps, 2),
        "machine": machine_info(device),
    }
