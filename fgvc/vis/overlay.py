"""Pure helpers to draw attention maps over images (no figure, no file, no model).

* :func:`denormalize` undoes the input normalisation: ``3, H, W`` tensor -> ``H, W, 3`` floats in ``[0, 1]``.
* :func:`upsample_maps` resizes ``B, M, h, w`` maps to the image and rescales each map to ``[0, 1]``.
* :func:`heat_overlay` blends a jet-coloured heat map over an image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["check_batch", "save_figure", "denormalize", "upsample_maps", "heat_overlay", "EPS"]

EPS = 1e-12


def denormalize(img: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``img: 3, H, W`` normalised as ``(x - mean) / std`` -> ``H, W, 3`` float32 in ``[0, 1]``."""
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"denormalize expects one image of shape 3, H, W; got {tuple(img.shape)}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (one per RGB channel); got mean={mean}, std={std}")
    m = torch.as_tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.as_tensor(std, dtype=torch.float32)[:, None, None]
    out = img.detach().float().cpu() * s + m  # 3, H, W
    return out.clamp(0.0, 1.0).permute(1, 2, 0).numpy()  # H, W, 3


def upsample_maps(maps: Tensor, size: tuple[int, int] | Sequence[int]) -> Tensor:
    """``maps: B, M, h, w`` -> ``B, M, H, W`` (bilinear), each map min-max rescaled to ``[0, 1]``.

    A constant map (no contrast to show) becomes all zeros.
    """
    if maps.ndim != 4:
        raise ValueError(f"upsample_maps expects maps of shape B, M, h, w; got {tuple(maps.shape)}")
    h, w = int(size[0]), int(size[1])
    up = F.interpolate(maps.detach().float(), size=(h, w), mode="bilinear", align_corners=False)  # B, M, H, W
    flat = up.flatten(2)  # B, M, H*W
    lo = flat.amin(-1, keepdim=True)
    rng = flat.amax(-1, keepdim=True) - lo
    norm = torch.where(rng > EPS, (flat - lo) / rng.clamp_min(EPS), torch.zeros_like(flat))
    return norm.view_as(up)


def heat_overlay(image: np.ndarray, heat: np.ndarray | Tensor, alpha: float = 0.5) -> np.ndarray:
    """``(1 - alpha) * image + alpha * jet(heat)``; ``image: H, W, 3`` in ``[0, 1]``, ``heat: H, W`` in ``[0, 1]``."""
    from matplotlib import colormaps

    heat_np = heat.detach().float().cpu().numpy() if isinstance(heat, Tensor) else np.asarray(heat, dtype=np.float32)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3 or heat_np.shape != img.shape[:2]:
        raise ValueError(
            f"heat_overlay needs image H, W, 3 and heat H, W of the same size; got {img.shape} and {heat_np.shape} "
            "(upsample the map to the image first, e.g. with upsample_maps)"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colour = colormaps["jet"](np.clip(heat_np, 0.0, 1.0))[..., :3].astype(np.float32)  # H, W, 3
    return np.clip((1.0 - alpha) * img + alpha * colour, 0.0, 1.0)


def check_batch(images: Tensor) -> None:
    """``images`` must be a batch ``B, 3, H, W``; else a ``ValueError`` naming its shape."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a batch B, 3, H, W; got shape {tuple(images.shape)}")


def save_figure(fig: Any, path: str | Path, dpi: int) -> Path:
    """Write the matplotlib figure ``fig`` to ``path`` (its folder made), close it, return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
