"""Image transforms (albumentations 2.x): ``H, W, 3`` uint8 RGB array -> normalised ``3, S, S`` float tensor, or with
``output="uint8"`` the un-normalised ``3, S, S`` uint8 tensor that :func:`fgvc.engine.device_input.to_model_input`
normalises on the model's device (a 4x smaller batch to hand across processes, no float maths in the workers).

Train: shorter side to ``resize`` then a random ``img_size`` crop (or a RandomResizedCrop of the original
image), horizontal flip, colour jitter (after the resize and crop, on the small image). Eval: shorter side to
``resize`` then the centre ``img_size`` crop.
The usual fine-grained recipe (CUB-200-2011, Wah et al. 2011; Flowers 102, Nilsback and Zisserman 2008)
is resize 512 / crop 448; ``resize=None`` means ``round(img_size * 8 / 7)`` (256 / 224).
"""
from __future__ import annotations

import copy
import hashlib
import math
import random
from typing import Any, Sequence

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

__all__ = ["build_transforms", "Transform", "resize_shorter"]

_RRC_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect-ratio range (albumentations' and torchvision's default)


class Transform:
    """A callable ``np.ndarray (H, W, 3) uint8 -> torch.Tensor (3, img_size, img_size)``: float32 normalised by
    ``mean``/``std``, or uint8 when ``output == "uint8"`` (normalised later, on the device).

    ``min_side``: the shorter side an input needs so that no resize in the pipeline upsamples where the full image
    would not (``resize``; for a RandomResizedCrop, the side whose smallest crop still spans ``img_size``); with
    ``reduced_decode`` the dataset decodes large JPEGs at a reduced scale down to it (:mod:`fgvc.data.decode`).
    ``first_resize``: the shorter side of the pipeline's first step (:func:`resize_shorter`), None for a
    RandomResizedCrop; a pre-resized cache made at exactly that size stands in for it (:mod:`fgvc.data.cache`).
    """

    def __init__(self, pipeline: A.Compose, summary: str, img_size: int, mean: tuple[float, ...] = (0.0, 0.0, 0.0),
                 std: tuple[float, ...] = (1.0, 1.0, 1.0), output: str = "float", min_side: int | None = None,
                 reduced_decode: bool = False, first_resize: int | None = None) -> None:
        self.pipeline, self.summary, self.img_size = pipeline, summary, img_size
        self.mean, self.std, self.output, self.min_side = mean, std, output, min_side
        self.reduced_decode, self.first_resize = reduced_decode, first_resize
        # one random stream for the whole pipeline, reseeded in place per sample (see set_random_seed)
        self._bits, self._py = np.random.PCG64(0), random.Random(0)
        self.pipeline.set_random_state(np.random.Generator(self._bits), self._py)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            got = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}"
            raise TypeError(f"transforms expect an H x W x 3 uint8 RGB numpy array, got {got}")
        return self.pipeline(image=image)["image"]

    def set_random_seed(self, seed: int) -> None:
        """Reseed the augmentation (used per sample by the trainer for resumable, worker-independent runs).

        Every step draws from one stream, reseeded in place (~7 us). albumentations' own ``Compose.set_random_seed``
        gives each step a generator of its own started from the same seed (~80 us for this pipeline), so the steps'
        first draws coincide: a random crop's vertical offset then decided the flip (every crop from the upper half
        of the resized image flipped, none from the lower half)."""
        h = hashlib.blake2b(int(seed).to_bytes(16, "little", signed=True), digest_size=32).digest()
        self._bits.state = {"bit_generator": "PCG64", "has_uint32": 0, "uinteger": 0,
                            "state": {"state": int.from_bytes(h[:16], "little"),
                                      "inc": int.from_bytes(h[16:], "little") | 1}}
        self._py.seed(int.from_bytes(h[:8], "little"))

    def as_uint8(self) -> "Transform":
        """The same pipeline stopping at uint8 (its ``Normalize`` left to
        :func:`fgvc.engine.device_input.to_model_input`, with this transform's ``mean``/``std``); itself when it
        already does."""
        if self.output == "uint8":
            return self
        steps = [copy.deepcopy(t) for t in self.pipeline.transforms if not isinstance(t, A.Normalize)]
        normalize = f"normalize(mean={_fmt(self.mean)}, std={_fmt(self.std)})"
        summary = self.summary.replace(normalize, f"uint8 (normalised on the device: mean={_fmt(self.mean)}, "
                                                  f"std={_fmt(self.std)})")
        return Transform(A.Compose(steps), summary, self.img_size, self.mean, self.std, "uint8", self.min_side,
                         self.reduced_decode, self.first_resize)

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
    output: str = "float",
    reduced_decode: bool = False,
) -> Transform:
    """The train or eval pipeline (see the module docstring); raises ValueError naming the recipe key.
    ``reduced_decode``: let the dataset decode large JPEGs at a reduced scale (``Transform.min_side``)."""
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
    if output not in ("float", "uint8"):
        raise ValueError(f"output must be 'float' or 'uint8', got {output!r}")
    lo, hi = (float(v) for v in rrc_scale)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"data.augment.rrc_scale must satisfy 0 < min <= max <= 1, got {tuple(rrc_scale)}")

    ops: list[Any] = []
    parts: list[str] = []
    if train and random_resized_crop:
        ops.append(A.RandomResizedCrop(size=(img_size, img_size), scale=(lo, hi), ratio=_RRC_RATIO))
        parts.append(f"RandomResizedCrop({img_size}, scale=({lo:g}, {hi:g}))")
        # the smallest crop (area lo, the most extreme aspect) must still span img_size px on its shorter edge
        min_side = math.ceil(img_size / math.sqrt(lo * min(_RRC_RATIO[0], 1 / _RRC_RATIO[1])))
    else:
        ops.append(resize_shorter(resize))
        ops.append(A.RandomCrop(img_size, img_size) if train else A.CenterCrop(img_size, img_size))
        parts.append(f"shorter side -> {resize}, {'random' if train else 'centre'} crop {img_size}")
        min_side = resize
    if train and hflip:
        ops.append(A.HorizontalFlip(p=0.5))
        parts.append("hflip")
    if train and color_jitter > 0:
        cj = float(color_jitter)
        ops.append(A.ColorJitter(brightness=cj, contrast=cj, saturation=cj, hue=0.0, p=1.0))
        parts.append(f"color_jitter={cj:g}")
    if output == "float":
        ops.append(A.Normalize(mean=mean_t, std=std_t, max_pixel_value=255.0))
        parts.append(f"normalize(mean={_fmt(mean_t)}, std={_fmt(std_t)})")
    else:
        parts.append(f"uint8 (normalised on the device: mean={_fmt(mean_t)}, std={_fmt(std_t)})")
    ops.append(ToTensorV2())
    if reduced_decode:
        parts.append(f"JPEGs decoded at >= {min_side} px")
    summary = f"{'train' if train else 'eval'}: " + ", ".join(parts)
    first = None if train and random_resized_crop else resize
    return Transform(A.Compose(ops), summary, img_size, mean_t, std_t, output, min_side, reduced_decode, first)


def resize_shorter(size: int) -> A.SmallestMaxSize:
    """The shorter side to ``size`` px (aspect kept; bilinear, as albumentations' default): the eval and resize-crop
    pipelines' first step, and what ``python -m fgvc.datasets cache`` stores, so a cached copy is bit-identical."""
    return A.SmallestMaxSize(max_size=int(size))


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"
