"""Attention-guided geometry shared by the part-attention methods (WS-DAN's crop and drop, its test-time object
box; Hu et al. 2019, "See Better Before Looking Closer", arXiv:1901.09891): boxes around the region of a map above
a threshold, keep-masks that erase it, and a differentiable bilinear crop (``torchvision.ops.roi_align``).

Maps are ``B, H, W`` at image resolution; boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates (pixel
``j`` spans ``[j, j+1)``). ``normalise="max"`` thresholds ``map / max`` (the paper's ``theta * max``); ``"minmax"``
thresholds ``(map - min) / (max - min)``, which still localises when a map is positive everywhere (the mean of many
dense maps).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

__all__ = ["attention_crop_boxes", "attention_drop_masks", "crop_and_resize", "upsample_maps", "box_areas"]

EPS = 1e-12


def _normalise_maps(maps: Tensor, normalise: str = "max") -> Tensor:
    """``maps: B, H, W`` divided by their per-sample maximum (a map with max <= 0 becomes all 0), or min-max
    rescaled to ``[0, 1]`` (a constant map becomes all 0)."""
    if normalise == "minmax":
        lo = maps.flatten(1).amin(1)[:, None, None]
        return (maps - lo) / (maps.flatten(1).amax(1)[:, None, None] - lo).clamp_min(EPS)
    if normalise != "max":
        raise ValueError(f"normalise must be 'max' or 'minmax', got {normalise!r}")
    peak = maps.flatten(1).amax(1).clamp_min(EPS)  # B
    return maps / peak[:, None, None]


def attention_crop_boxes(maps: Tensor, thresholds: Tensor, padding: float, normalise: str = "max") -> Tensor:
    """Boxes around the region where ``maps >= thresholds * max``, padded by ``padding`` of the side.

    ``maps: B, H, W`` (at image resolution), ``thresholds: B`` -> boxes ``B, 4`` as
    ``(x1, y1, x2, y2)`` in continuous pixel coordinates (pixel ``j`` spans ``[j, j+1)``), so the
    box of a region spanning columns ``a..b`` is ``[a - pad*W, b + 1 + pad*W]`` clipped to
    ``[0, W]``. An empty region (a map that is all 0) gives the whole image.
    """
    b, h, w = maps.shape
    mask = _normalise_maps(maps, normalise) >= thresholds.to(maps.dtype)[:, None, None]  # B, H, W
    rows, cols = mask.any(2), mask.any(1)  # B, H and B, W
    ar_h = torch.arange(h, device=maps.device, dtype=maps.dtype)
    ar_w = torch.arange(w, device=maps.device, dtype=maps.dtype)
    y1 = torch.where(rows, ar_h, float(h)).amin(1)
    y2 = torch.where(rows, ar_h, -1.0).amax(1) + 1
    x1 = torch.where(cols, ar_w, float(w)).amin(1)
    x2 = torch.where(cols, ar_w, -1.0).amax(1) + 1
    pad_h, pad_w = padding * h, padding * w
    x1, y1 = (x1 - pad_w).clamp(0, w), (y1 - pad_h).clamp(0, h)
    x2, y2 = (x2 + pad_w).clamp(0, w), (y2 + pad_h).clamp(0, h)
    empty = ~rows.any(1)  # B: an all-0 map gives the whole image (scalar fills: no host-to-device copy)
    return torch.stack([torch.where(empty, 0.0, x1), torch.where(empty, 0.0, y1),
                        torch.where(empty, float(w), x2), torch.where(empty, float(h), y2)], 1)  # B, 4


def attention_drop_masks(maps: Tensor, thresholds: Tensor) -> Tensor:
    """Keep-masks ``B, H, W`` (1 = keep, 0 = drop) that erase where ``maps >= thresholds * max``.

    A map whose maximum is 0 drops nothing.
    """
    peak = maps.flatten(1).amax(1)  # B
    drop = (_normalise_maps(maps) >= thresholds.to(maps.dtype)[:, None, None]) & (peak > 0)[:, None, None]
    return (~drop).to(maps.dtype)


def crop_and_resize(images: Tensor, boxes: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Bilinear crop of ``boxes: B, 4`` (x1, y1, x2, y2 pixels) from ``images: B, 3, H, W``, resized to ``size``."""
    size = size or (images.shape[-2], images.shape[-1])
    # boxes.shape[0], not len(boxes): it stays symbolic when the crop is exported (a dynamic batch axis)
    rois = torch.cat([torch.arange(boxes.shape[0], device=boxes.device, dtype=boxes.dtype)[:, None], boxes], 1)
    crops = roi_align(images, rois.to(images.dtype), output_size=size, spatial_scale=1.0, sampling_ratio=-1,
                      aligned=True)  # B, 3, *size
    # roi_align returns NCHW; a channels-last batch stays channels-last, so the backbone sees the layout it runs in
    channels_last = images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    return crops.contiguous(memory_format=torch.channels_last) if channels_last else crops


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """``maps: B, H', W'`` -> ``B, H, W`` bilinear."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def box_areas(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Share of the image each box ``B, 4`` covers, ``B`` in ``[0, 1]``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / float(size[0] * size[1])
