"""What crosses from the loader to the model: uint8 batches normalised on the device, channels-last batches.

DataLoader workers that stop at uint8 (``build_transform(..., output="uint8")``) skip the float maths and pass a
batch 4x smaller across the process boundary (and, on CUDA, across PCIe); :func:`to_model_input` moves it to the
device and normalises it there, once, as ``x / (255 std) - mean / std`` (albumentations'
``Normalize(max_pixel_value=255)`` within float32 rounding). A float batch is taken as already normalised (deploy
calibration, parity checks, single-file prediction, tests) and only moved, so every caller may route its input through here.

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

_STATS: dict[tuple[str, tuple[float, ...], tuple[float, ...], int], tuple[Tensor, Tensor]] = {}


def _stats(device: torch.device, mean: Sequence[float], std: Sequence[float], repeat: int) -> tuple[Tensor, Tensor]:
    """``(-mean / std, 1 / (255 std))`` as float32 vectors on ``device``, each channel's value repeated ``repeat``
    times (``repeat`` pixels of an ``H, W, 3`` row: ``[r g b r g b ...]``; ``repeat=1``: ``[r g b]``), made once."""
    key = (str(device), tuple(float(m) for m in mean), tuple(float(s) for s in std), int(repeat))
    if key not in _STATS:
        m, s = torch.tensor(key[1], dtype=torch.float64), torch.tensor(key[2], dtype=torch.float64)
        shift, scale = (-m / s).float(), (1.0 / (255.0 * s)).float()
        _STATS[key] = (shift.repeat(repeat).to(device), scale.repeat(repeat).to(device))
    return _STATS[key]


def normalize_uint8(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``B, 3, H, W`` uint8 (0..255) -> ``B, 3, H, W`` float32 ``x / (255 std) - mean / std`` on ``images``' device,
    in the memory format it came in (channels-last stays channels-last).

    One fused multiply-add over rows whose length is a multiple of the channel count, so that no operand is
    broadcast along a 3-long innermost axis (PyTorch vectorises that poorly: a 32 x 3 x 160 x 160 channels-last
    batch took 5.7 ms on one CPU core, this 1.2 ms). Equal to albumentations' ``Normalize(max_pixel_value=255)``
    within float32 rounding (< 1e-6)."""
    b, c, h, w = images.shape
    if images.is_contiguous(memory_format=torch.channels_last):  # B, H, W, C in memory: rows of W * C values
        x = images.permute(0, 2, 3, 1).float()  # B, H, W, C contiguous
        shift, scale = _stats(images.device, mean, std, w)
        rows = x.view(-1, w * c)
        torch.addcmul(shift, rows, scale, out=rows)
        return x.permute(0, 3, 1, 2)
    x = images.float().contiguous()  # B, C, H, W: rows of H * W values of one channel
    shift, scale = _stats(images.device, mean, std, 1)
    planes = x.view(b, c, h * w)
    torch.addcmul(shift.view(1, c, 1), planes, scale.view(1, c, 1), out=planes)
    return x


def batch_format(device: torch.device) -> str:
    """The batches fgvc's loaders hand over: ``uint8`` on every device, normalised there by :func:`to_model_input`.
    A float batch costs a worker ~4x the shared memory of a uint8 one (a fresh shared-memory segment per batch, whose
    pages fault in on both sides: 7.3 vs 2.0 ms to collate 32 x 160 x 160 images on this CPU), and the normalisation
    then costs the main process ~0.04 ms per image (:func:`normalize_uint8`)."""
    return "uint8"


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
