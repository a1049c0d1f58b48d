"""The two-view augmentation of SimCLR (Chen et al. 2020, arXiv:2002.05709, Appendix A): each training image gives two
independently augmented views, stacked along the height into one ``3, 2S, S`` tensor that the loader, the device
normalisation and channels-last treat like any image; :func:`fgvc.methods.simclr.split_views` splits them. The
trainer builds it for a method whose ``data_config()`` says ``two_views`` (``model.name: simclr``).

Each view: random resized crop (area ``scale``, aspect 3/4..4/3) to ``S``, horizontal flip (p 0.5, ``data.augment
.hflip``), colour jitter (brightness, contrast, saturation, hue = ``jitter``, p ``jitter_p``), grayscale (p
``gray_p``), Gaussian blur (kernel ~10 % of ``S``, odd; sigma in ``blur_sigma``; p ``blur_p``). The paper's values
are the defaults: scale (0.08, 1), jitter (0.4, 0.4, 0.4, 0.1) at p 0.8, grayscale p 0.2, blur p 0.5 with sigma
(0.1, 2.0). The recipe keys: ``data.augment.simclr.*``.

The two views share nothing but the source image: both are drawn from one random stream that the trainer reseeds per
sample (:class:`fgvc.engine.builder.SeededSamples`), the second after the first, so they differ and a run resumes
with the same views.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from fgvc.data.transforms import Transform

__all__ = ["TwoViews", "build_two_views", "SIMCLR_DEFAULTS"]

SIMCLR_DEFAULTS: dict[str, Any] = {"scale": [0.08, 1.0], "jitter": [0.4, 0.4, 0.4, 0.1],
                                   "jitter_p": 0.8, "gray_p": 0.2, "blur_p": 0.5, "blur_sigma": [0.1, 2.0]}


class TwoViews(Transform):
    """A :class:`Transform` whose call runs its pipeline twice on the same image: ``3, 2S, S`` (view 1 above view 2)."""

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        first = super().__call__(image)  # 3, S, S
        second = super().__call__(image)  # the stream has moved on: an independent draw
        return torch.cat([first, second], dim=1)  # 3, 2S, S

    def as_uint8(self) -> "TwoViews":
        if self.output == "uint8":
            return self
        steps = [copy.deepcopy(t) for t in self.pipeline.transforms if not isinstance(t, A.Normalize)]
        return TwoViews(A.Compose(steps), self.summary + " (uint8)", self.img_size, self.mean, self.std, "uint8",
                        self.min_side, self.reduced_decode, None)


def _pair(values: Sequence[float], n: int, key: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if len(out) != n:
        raise ValueError(f"data.augment.simclr.{key} needs {n} numbers, got {list(values)}")
    return out


def build_two_views(img_size: int, mean: Sequence[float], std: Sequence[float], hflip: bool = True,
                    output: str = "float", scale: Sequence[float] = (0.08, 1.0),
                    jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.1), jitter_p: float = 0.8, gray_p: float = 0.2,
                    blur_p: float = 0.5, blur_sigma: Sequence[float] = (0.1, 2.0), **_: Any) -> TwoViews:
    """SimCLR's two-view training transform (see the module docstring); ``output`` as :func:`build_transforms`'s.
    Raises ValueError naming the ``data.augment.simclr`` key that is out of range."""
    lo, hi = _pair(scale, 2, "scale")
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"data.augment.simclr.scale must satisfy 0 < min <= max <= 1, got {list(scale)}")
    b, c, s, h = _pair(jitter, 4, "jitter")
    if min(b, c, s, h) < 0 or h > 0.5:
        raise ValueError(f"data.augment.simclr.jitter (brightness, contrast, saturation, hue) must be >= 0 with hue "
                         f"<= 0.5, got {list(jitter)}")
    for key, p in (("jitter_p", jitter_p), ("gray_p", gray_p), ("blur_p", blur_p)):
        if not 0 <= p <= 1:
            raise ValueError(f"data.augment.simclr.{key} is a probability in [0, 1], got {p}")
    s_lo, s_hi = _pair(blur_sigma, 2, "blur_sigma")
    if not 0 < s_lo <= s_hi:
        raise ValueError(f"data.augment.simclr.blur_sigma must satisfy 0 < min <= max, got {list(blur_sigma)}")
    kernel = max(3, int(img_size * 0.1) // 2 * 2 + 1)  # ~10 % of the side, odd
    mean_t, std_t = tuple(float(m) for m in mean), tuple(float(v) for v in std)
    ops: list[Any] = [A.RandomResizedCrop(size=(img_size, img_size), scale=(lo, hi), ratio=(3 / 4, 4 / 3))]
    parts = [f"RandomResizedCrop({img_size}, scale=({lo:g}, {hi:g}))"]
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
        parts.append("hflip")
    ops += [A.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h, p=jitter_p),
            A.ToGray(p=gray_p),
            A.GaussianBlur(blur_limit=(kernel, kernel), sigma_limit=(s_lo, s_hi), p=blur_p)]
    parts += [f"color_jitter({b:g}, {c:g}, {s:g}, {h:g}) p={jitter_p:g}", f"grayscale p={gray_p:g}",
              f"gaussian_blur(k={kernel}, sigma=({s_lo:g}, {s_hi:g})) p={blur_p:g}"]
    if output == "float":
        ops.append(A.Normalize(mean=mean_t, std=std_t, max_pixel_value=255.0))
    ops.append(ToTensorV2())
    min_side = math.ceil(img_size / math.sqrt(lo * 3 / 4))
    summary = "train (SimCLR, two views stacked along the height): " + ", ".join(parts)
    return TwoViews(A.Compose(ops), summary, img_size, mean_t, std_t, output, min_side, False, None)
