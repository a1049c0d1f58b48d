"""Evaluation: every prediction a method reports, top-1/top-5/mean per-class accuracy,
per-class table and confusion matrix (CSV), optional horizontal-flip test-time augmentation."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from fgvc.engine.distributed import DistEnv, all_gather_tensors
from fgvc.engine.metrics import confusion_matrix, per_class_table, summarize

__all__ = ["predict_loader", "evaluate", "write_reports"]


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def predict_loader(
    method: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: str = "none",
    tta_flip: bool = False,
    channels_last: bool = False,
    env: DistEnv | None = None,
    desc: str = "eval",
) -> tuple[dict[str, Tensor], Tensor]:
    """Logits (float32, CPU) for every prediction key of ``method.predict_all``, and the targets."""
    env = env or DistEnv()
    was_training = method.training
    method.eval()
    outs: dict[str, list[Tensor]] = {}
    targets: list[Tensor] = []
    show = env.is_main and _tty()
    for images, labels in tqdm(loader, desc=desc, leave=False, disable=not show, dynamic_ncols=True):
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            pred = method.predict_all(images)
            if tta_flip:
                flipped = method.predict_all(torch.flip(images, dims=[3]))
                pred = {k: (v.float().softmax(1) + flipped[k].float().softmax(1)).log() for k, v in pred.items()}
        for k, v in pred.items():
            outs.setdefault(k, []).append(v.float().cpu())
        targets.append(labels.cpu())
    method.train(was_training)
    logits = {k: all_gather_tensors(torch.cat(v), env) for k, v in outs.items()}
    return logits, all_gather_tensors(torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long), env)


def _tty() -> bool:
    import sys

    return sys.stderr.isatty()


def evaluate(
    method: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: str = "none",
    tta_flip: bool = False,
    channels_last: bool = False,
    env: DistEnv | None = None,
    desc: str = "eval",
) -> tuple[dict[str, Any], dict[str, Tensor], Tensor]:
    """Headline metrics (first prediction key) plus ``<key>_top1`` for every other key."""
    t0 = time.time()
    logits, targets = predict_loader(method, loader, device, amp, tta_flip, channels_last, env, desc)
    keys = list(logits)
    result: dict[str, Any] = summarize(logits[keys[0]], targets)
    result["prediction"] = keys[0]
    for k in keys:
        result[f"{k}_top1"] = summarize(logits[k], targets)["top1"]
    result["seconds"] = round(time.time() - t0, 3)
    return result, logits, targets


def write_reports(out_dir: Path, logits: Tensor, targets: Tensor, class_names: Sequence[str], prefix: str = "") -> None:
    """``per_class.csv`` and ``confusion.csv`` (rows: true class, columns: predicted class)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_class_table(logits, targets, class_names).to_csv(out_dir / f"{prefix}per_class.csv", index=False)
    cm = confusion_matrix(logits.argmax(1).numpy(), targets.numpy(), len(class_names))
    pd.DataFrame(cm, index=list(class_names), columns=list(class_names)).to_csv(out_dir / f"{prefix}confusion.csv")
