"""What crosses from the loader to the model: uint8 batches normalised on the device, channels-last batches.

DataLoader workers that stop at uint8 (``build_transform(..., output="uint8")``) skip the float maths and pass a
batch 4x smaller across the process boundary (and, on CUDA, across PCIe); :func:`to_model_input` moves it to the
device and normalises it there, once, as ``(x - 255 mean) / (255 std)`` (the same float32 arithmetic as
albumentations' ``Normalize(max_pixel_value=255)``). A float batch is taken as already normalised (deploy calibration,
parity checks, single-file prediction, tests) and only moved, so every caller may route its input through here.

:func:`collate_channels_last` stacks the transforms' ``3, H, W`` views of ``H, W, 3`` arrays without transposing
them: the batch is ``B, 3, H, W`` in channels-last memory, which is what a channels-last CNN wants anyway (a plain
stack copies every image through a transpose: ~3x slower, and the trainer then transposes the batch back).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor
from torch.utils.data import default_collate

__all__ = ["to_model_input", "normalize_uint8", "batch_format", "collate_channels_last"]

_STATS: dict[tuple[str, tuple[float, ...], tuple[float, ...]], tuple[Tensor, Tensor]] = {}


def _stats(device: torch.device, mean: Sequence[float], std: Sequence[float]) -> tuple[Tensor, Tensor]:
    """``(255 mean, 1 / (255 std))`` as ``1, 3, 1, 1`` float32 tensors on ``device``, made once per device."""
    key = (str(device), tuple(float(m) for m in mean), tuple(float(s) for s in std))
    if key not in _STATS:
        m = torch.tensor(key[1], dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
        r = torch.reciprocal(torch.tensor(key[2], dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0)
        _STATS[key] = (m, r)
    return _STATS[key]


def normalize_uint8(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``B, 3, H, W`` uint8 (0..255) -> ``B, 3, H, W`` float32 ``(x - 255 mean) / (255 std)`` on ``images``' device."""
    m, r = _stats(images.device, mean, std)
    return (images.float() - m).mul_(r)


def batch_format(device: torch.device) -> str:
    """The batches fgvc's training loader hands over for a model on ``device``: ``uint8`` on CUDA (normalised there),
    ``float`` on the CPU, where normalising in the main process was measured slower than in the workers
    (2 cores, 2 workers, 160 px Flowers: ~200 vs ~230 img/s; the workers' share is only ~0.14 ms of ~0.8 ms/image)."""
    return "uint8" if device.type == "cuda" else "float"


def to_model_input(images: Tensor, device: torch.device, mean: Sequence[float], std: Sequence[float],
                   channels_last: bool = False) -> Tensor:
    """``images`` (``B, 3, H, W``; uint8 from fgvc's loaders, or float already normalised) on ``device``, normalised
    float, channels-last when asked."""
    x = images.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        x = normalize_uint8(x, mean, std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def collate_channels_last(batch: Sequence[tuple[Tensor, Any]]) -> tuple[Tensor, Any]:
    """``[(3, H, W image, label), ...]`` -> (``B, 3, H, W`` images in channels-last memory, collated labels)."""
    images = default_collate([img.permute(1, 2, 0) for img, _ in batch])  # B, H, W, 3 (shared memory in a worker)
    return images.permute(0, 3, 1, 2), default_collate([label for _, label in batch])
