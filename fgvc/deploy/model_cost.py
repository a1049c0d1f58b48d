"""What a method costs at inference: parameters, MACs and batch-1 CPU latency (``fgvc.prune``'s before/after report).

* ``params``: every parameter of the method (heads, attention layers and ``loss.aux`` centers included).
* ``macs``: multiply-accumulates of one image through :meth:`Method.infer` (WS-DAN: both of its views), counted by
  torch-pruning's ``tp.utils.count_ops_and_params`` (module hooks on convolutions, linear, normalisation, pooling and
  activation layers; functional ops such as B-CNN's outer product and WS-DAN's part pooling are not counted).
* ``latency_ms``: median wall time of ``Method.infer`` on one image on the CPU (fp32, contiguous layout, inference
  mode), over ``repeats`` timed calls after ``warmup`` untimed ones, with ``threads`` intra-op threads (stated in the
  record; the process's setting is restored afterwards). The method is copied to the CPU; the original stays where
  it is.
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from fgvc.extras import require
from fgvc.engine.inference import autocast

__all__ = ["count_params", "count_macs", "median_ms", "logits_fn", "eager_logits", "cpu_latency_ms", "measure_cost"]


def count_params(method: nn.Module) -> int:
    return int(sum(p.numel() for p in method.parameters()))


def count_macs(method: nn.Module, img_size: int) -> int:
    """MACs of one ``1, 3, img_size, img_size`` image through the method's forward (its headline prediction)."""
    tp = require("torch_pruning", "torch-pruning", "counting MACs", extra="deploy")
    device = next(method.parameters()).device
    was_training = method.training
    method.eval()
    macs, _ = tp.utils.count_ops_and_params(method, torch.randn(1, 3, img_size, img_size, device=device))
    method.train(was_training)
    return int(macs)


def median_ms(fn: Callable[[Any], Any], x: Any, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time (ms) of ``fn(x)`` over ``repeats`` timed calls after ``warmup`` untimed ones: the one timing
    loop of fgvc's latency numbers (this module's, and :func:`fgvc.deploy.runtime.latency_ms` for exported files)."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def logits_fn(method: nn.Module, device: torch.device | str = "cpu", channels_last: bool = False,
              amp: str = "none") -> Callable[[torch.Tensor], torch.Tensor]:
    """``method`` as ``images B, 3, H, W -> headline logits B, K`` (float32, on the CPU): a copy with fp32 weights in
    eval mode on ``device``, in contiguous or channels-last layout (weights and input alike), under ``amp`` autocast
    (``none``, ``bf16``, ``fp16``), in inference mode. ``fgvc.bench infer`` times its PyTorch rows with it; reading
    the logits back to the CPU also waits for a CUDA device, so the time of a call is the time of its work."""
    device = torch.device(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = copy.deepcopy(method).to(device).float().eval()
    model.to(memory_format=layout)

    @torch.inference_mode()
    def run(images: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            out = model.infer(images.to(device).contiguous(memory_format=layout))
        return out.logits[out.headline].float().cpu()

    return run


def eager_logits(method: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """``method`` as ``float32 numpy B, 3, H, W -> headline logits``, on a CPU fp32 copy in eval mode, contiguous
    layout, inference mode (the callable the deploy benchmark times next to ONNX Runtime and TorchScript; the
    reference row of ``fgvc.bench infer``): :func:`logits_fn` with numpy in and out."""
    fn = logits_fn(method)

    def run(images: np.ndarray) -> np.ndarray:
        return fn(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).numpy()

    return run


def cpu_latency_ms(method: nn.Module, img_size: int, threads: int, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of one ``infer`` of a ``1, 3, img_size, img_size`` image on the CPU (see the module doc)."""
    fn = eager_logits(method)
    x = np.random.default_rng(0).standard_normal((1, 3, img_size, img_size)).astype(np.float32)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return median_ms(fn, x, repeats, warmup)
    finally:
        torch.set_num_threads(previous)


def measure_cost(method: nn.Module, img_size: int, threads: int | None = None, repeats: int = 20) -> dict[str, Any]:
    """``{"params", "macs", "latency_ms"}`` of ``method`` (``threads``: None = the process's current setting)."""
    threads = threads or torch.get_num_threads()
    return {"params": count_params(method), "macs": count_macs(method, img_size),
            "latency_ms": round(cpu_latency_ms(method, img_size, threads, repeats), 3)}
