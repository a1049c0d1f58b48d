"""Image transforms (albumentations 2.x): ``H, W, 3`` uint8 RGB array -> normalised ``3, S, S`` float tensor.

Train: shorter side to ``resize`` then a random ``img_size`` crop (or a RandomResizedCrop of the original
image), horizontal flip, colour jitter. Eval: shorter side to ``resize`` then the centre ``img_size`` crop.
The usual fine-grained recipe (CUB-200-2011, Wah et al. 2011; Flowers 102, Nilsback and Zisserman 2008)
is resize 512 / crop 448; ``resize=None`` means ``round(img_size * 8 / 7)`` (256 / 224).
"""
from __future__ import annotations

from typing import Any, Sequence

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

__all__ = ["build_transforms", "Transform"]


class Transform:
    """A callable ``np.ndarray (H, W, 3) uint8 -> torch.Tensor (3, img_size, img_size) float32``."""

    def __init__(self, pipeline: A.Compose, summary: str, img_size: int) -> None:
        self.pipeline, self.summary, self.img_size = pipeline, summary, img_size

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            got = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}"
            raise TypeError(f"transforms expect an H x W x 3 uint8 RGB numpy array, got {got}")
        return self.pipeline(image=image)["image"]

    def set_random_seed(self, seed: int) -> None:
        """Reseed the augmentation (used per sample by the trainer for resumable, worker-independent runs)."""
        self.pipeline.set_random_seed(seed)

    def __repr__(self) -> str:
        return f"Transform({self.summary})"


def build_transforms(
    img_size: int,
    resize: int | None,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    hflip: bool = True,
    color_jitter: float = 0.0,
    random_resized_crop: bool = False,
    rrc_scale: tuple[float, float] = (0.35, 1.0),
) -> Transform:
    """The train or eval pipeline (see the module docstring); raises ValueError naming the recipe key."""
    if int(img_size) != img_size or img_size < 1:
        raise ValueError(f"data.img_size must be a positive integer, got {img_size}")
    img_size = int(img_size)
    resize = round(img_size * 8 / 7) if resize is None else int(resize)
    if img_size > resize:
        raise ValueError(
            f"the crop data.img_size={img_size} is larger than data.resize={resize} (the shorter side after "
            f"resizing): set data.resize >= data.img_size (e.g. {round(img_size * 8 / 7)}) or data.resize=null")
    mean_t, std_t = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean_t) != 3 or len(std_t) != 3 or min(std_t) <= 0:
        raise ValueError(f"mean and std need 3 values each and std > 0, got mean={mean_t} std={std_t}")
    if color_jitter < 0:
        raise ValueError(f"data.augment.color_jitter must be >= 0, got {color_jitter}")
    lo, hi = (float(v) for v in rrc_scale)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"data.augment.rrc_scale must satisfy 0 < min <= max <= 1, got {tuple(rrc_scale)}")

    ops: list[Any] = []
    parts: list[str] = []
    if train and random_resized_crop:
        ops.append(A.RandomResizedCrop(size=(img_size, img_size), scale=(lo, hi)))
        parts.append(f"RandomResizedCrop({img_size}, scale=({lo:g}, {hi:g}))")
    else:
        ops.append(A.SmallestMaxSize(max_size=resize))
        ops.append(A.RandomCrop(img_size, img_size) if train else A.CenterCrop(img_size, img_size))
        parts.append(f"shorter side -> {resize}, {'random' if train else 'centre'} crop {img_size}")
    if train and hflip:
        ops.append(A.HorizontalFlip(p=0.5))
        parts.append("hflip")
    if train and color_jitter > 0:
        cj = float(color_jitter)
        ops.append(A.ColorJitter(brightness=cj, contrast=cj, saturation=cj, hue=0.0, p=1.0))
        parts.append(f"color_jitter={cj:g}")
    ops += [A.Normalize(mean=mean_t, std=std_t, max_pixel_value=255.0), ToTensorV2()]
    parts.append(f"normalize(mean={_fmt(mean_t)}, std={_fmt(std_t)})")
    summary = f"{'train' if train else 'eval'}: " + ", ".join(parts)
    return Transform(A.Compose(ops), summary, img_size)


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"
