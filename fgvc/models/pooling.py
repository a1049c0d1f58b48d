"""Second-order and attention pooling of convolutional feature maps.

* :func:`bilinear_attention_pool` - bilinear attention pooling (BAP) of WS-DAN
  (Hu et al. 2019, "See Better Before Looking Closer", arXiv:1901.09891):
  ``P[b, m, c] = mean_{h,w} A[b, m, h, w] * F[b, c, h, w]``.
* :class:`BilinearPooling` - symmetric bilinear pooling of B-CNN (Lin, RoyChowdhury & Maji 2015,
  "Bilinear CNN Models for Fine-grained Visual Recognition", ICCV 2015, arXiv:1504.07889):
  the outer product ``x x^T`` of each location's feature vector, averaged over locations.
* :class:`CompactBilinearPooling` - Tensor Sketch projection of the same (Gao, Beijbom, Zhang &
  Darrell 2016, "Compact Bilinear Pooling", CVPR 2016, arXiv:1511.06062), whose inner products
  approximate the bilinear kernel ``<x, y>^2`` with a ``d``-dimensional vector.
* :func:`signed_sqrt` - the element-wise signed square root that B-CNN and WS-DAN apply before
  L2 normalisation.

:func:`create_pooling` builds ``"bilinear" | "compact"`` by name; every module here has an
``out_dim`` attribute and maps ``B, C, H, W -> B, out_dim``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.registry import closest

__all__ = [
    "bilinear_attention_pool",
    "signed_sqrt",
    "bilinear_pool",
    "BilinearPooling",
    "CompactBilinearPooling",
    "create_pooling",
]


def _fp32(x: Tensor) -> torch.autocast:
    """Autocast off: second-order statistics and the signed sqrt that follows need fp32 (an ``eps`` of
    1e-12 underflows in fp16, and sums of squares lose precision)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def signed_sqrt(x: Tensor, eps: float = 1e-12) -> Tensor:
    """``sign(x) * sqrt(|x| + eps)``; ``eps`` keeps the gradient finite at 0 (computed in fp32)."""
    x = x.float()
    return torch.sign(x) * torch.sqrt(torch.abs(x) + eps)


def bilinear_attention_pool(features: Tensor, attentions: Tensor) -> Tensor:
    """BAP: ``features: B, C, H, W`` x ``attentions: B, M, h, w`` -> part features ``B, M, C``.

    Attention maps of another spatial size are bilinearly resized to the feature map first.
    """
    if attentions.shape[-2:] != features.shape[-2:]:
        attentions = F.interpolate(attentions, size=features.shape[-2:], mode="bilinear", align_corners=False)
    h, w = features.shape[-2:]
    with _fp32(features):
        return einsum(attentions.float(), features.float(), "b m h w, b c h w -> b m c") / float(h * w)  # B, M, C


def bilinear_pool(features: Tensor) -> Tensor:
    """Symmetric bilinear pooling ``B, C, H, W -> B, C*C``: ``mean_l x_l x_l^T``, flattened."""
    h, w = features.shape[-2:]
    with _fp32(features):
        x = features.float()
        gram = einsum(x, x, "b c h w, b d h w -> b c d") / float(h * w)  # B, C, C
    return rearrange(gram, "b c d -> b (c d)")


class BilinearPooling(nn.Module):
    """Module form of :func:`bilinear_pool`; ``out_dim = in_dim ** 2``."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = in_dim * in_dim

    def forward(self, features: Tensor) -> Tensor:
        return bilinear_pool(features)  # B, C*C


class CompactBilinearPooling(nn.Module):
    """Tensor Sketch compact bilinear pooling (Gao et al. 2016), ``B, C, H, W -> B, out_dim``.

    Each location's vector ``x`` (``C``) is count-sketched twice, ``psi_i(x)[j] = sum_{c: h_i(c)=j}
    s_i(c) x_c`` with fixed random hashes ``h_i: [0, C) -> [0, d)`` and signs ``s_i in {+1, -1}``;
    the sketch of ``x x^T`` is the circular convolution ``psi_1(x) * psi_2(x)``, computed as
    ``irfft(rfft(psi_1) . rfft(psi_2))``. Because the FFT is linear, the products are averaged over
    locations before the single inverse FFT. ``<phi(x), phi(y)>`` is an unbiased estimate of
    ``<x, y>^2``. Hashes and signs are buffers (drawn from the torch RNG at construction, so a
    seeded run is reproducible and a checkpoint restores them).
    """

    def __init__(self, in_dim: int, out_dim: int = 8192) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        for i in (1, 2):
            self.register_buffer(f"hash{i}", torch.randint(0, out_dim, (in_dim,)))
            self.register_buffer(f"sign{i}", torch.randint(0, 2, (in_dim,)).float() * 2 - 1)

    def sketch(self, x: Tensor, i: int) -> Tensor:
        """Count sketch ``x: N, C -> N, d``."""
        h, s = getattr(self, f"hash{i}"), getattr(self, f"sign{i}")
        out = x.new_zeros(x.shape[0], self.out_dim)
        return out.index_add_(1, h, x * s)  # N, d

    def forward(self, features: Tensor) -> Tensor:
        b = features.shape[0]
        with _fp32(features):  # FFT in fp32
            x = rearrange(features.float(), "b c h w -> (b h w) c")  # N = B*H*W, C
            f1 = torch.fft.rfft(self.sketch(x, 1), dim=-1)  # N, d//2+1 (complex)
            f2 = torch.fft.rfft(self.sketch(x, 2), dim=-1)
            prod = rearrange(f1 * f2, "(b l) f -> b l f", b=b).mean(1)  # B, d//2+1: mean over locations
            return torch.fft.irfft(prod, n=self.out_dim, dim=-1)  # B, d


POOLINGS: dict[str, type[nn.Module]] = {"bilinear": BilinearPooling, "compact": CompactBilinearPooling}


def create_pooling(name: str, in_dim: int, out_dim: int | None = None) -> nn.Module:
    """``"bilinear"`` (``out_dim = in_dim^2``) or ``"compact"`` (Tensor Sketch, ``out_dim``, default 8192)."""
    key = name.lower()
    if key not in POOLINGS:
        raise ConfigError(f"unknown pooling '{name}'{closest(key, POOLINGS)}; choose one of: {', '.join(POOLINGS)}")
    return POOLINGS[key](in_dim) if key == "bilinear" else POOLINGS[key](in_dim, out_dim or 8192)
