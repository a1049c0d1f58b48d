"""Classification heads on an embedding, by name (``model.args.head``), for every single-view method.

``create_head(name, in_features, num_classes, head_args)`` builds one from :data:`fgvc.registry.HEADS`:

* ``linear``: ``nn.Linear`` (the default; the state-dict keys ``weight``/``bias`` of earlier runs).
* ``cosine``: normalised-softmax classifier, ``s * cos(theta_j)`` with ``cos(theta_j) = <x/|x|, w_j/|w_j|>``
  (Wang, Xiang, Cheng & Yuille 2017, "NormFace: L2 Hypersphere Embedding for Face Verification", ACM MM).
* ``arcface``: additive angular margin, the target logit becomes ``s * cos(theta_y + m)`` (Deng, Guo, Xue &
  Zafeiriou 2019, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR, arXiv:1801.07698).
* ``cosface``: large margin cosine, the target logit becomes ``s * (cos(theta_y) - m)`` (Wang et al. 2018,
  "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR, arXiv:1801.09414).

Every head is called as ``head(x: B, D, labels: B | None = None) -> logits B, K``. Margins apply only while
the head is in training mode *and* labels are given (the method's training step passes its hard labels; with
Mixup/CutMix targets that is the dominant class); otherwise - ``infer``, ``predict``, evaluation - a cosine head
returns the plain scaled cosines ``s * cos(theta)``, so the ranking of classes is the same with or without margin.
The recipe's criterion (cross-entropy, focal, ...) is then applied to these logits, which makes
``arcface`` + ``cross_entropy`` the ArcFace loss and ``cosface`` + ``cross_entropy`` the CosFace (LMCL) loss.

ArcFace's ``cos(theta + m)`` stops decreasing once ``theta + m > pi``; the paper's release handles the
target angles with ``theta > pi - m`` in one of two ways (``easy_margin``):

* ``easy_margin=False`` (default, as in the InsightFace release): for ``cos(theta) <= cos(pi - m)`` the target
  logit is ``cos(theta) - m * sin(m)`` instead, a CosFace-like penalty that keeps it monotone in ``theta``.
* ``easy_margin=True``: the margin applies only where ``cos(theta) > 0`` (``theta < pi / 2``); the other
  target logits stay ``cos(theta)``.

Cosine heads compute in fp32 with autocast off (margins of 0.35-0.5 on bf16 cosines would be rounded) and
have no bias. Typical scales: ``s`` 16-64 (30 here); with few classes a smaller ``s`` (e.g. 16) trains faster.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.errors import ConfigError, RegistryError
from fgvc.registry import HEADS

__all__ = ["HEADS", "create_head", "LinearHead", "CosineHead", "ArcFaceHead", "CosFaceHead"]

COS_EPS = 1e-7  # keeps the gradient of sqrt(1 - cos^2) finite at cos = +-1


@HEADS.register("linear")
class LinearHead(nn.Linear):
    """``nn.Linear``; ignores the labels."""

    def __init__(self, in_features: int, num_classes: int, bias: bool = True) -> None:
        super().__init__(in_features, num_classes, bias=bias)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:  # type: ignore[override]
        return super().forward(x)  # B, K


@HEADS.register("cosine")
class CosineHead(nn.Module):
    """``s * cos(theta)``: normalised features against normalised class weights (NormFace, Wang et al. 2017).

    Subclasses change the target class's cosine in training through :meth:`target_margin`.
    """

    has_margin = False

    def __init__(self, in_features: int, num_classes: int, s: float = 30.0) -> None:
        super().__init__()
        if s <= 0:
            raise ConfigError(f"model.args.head_args.s (the cosine scale) must be > 0, got {s}; e.g. 30")
        self.in_features, self.num_classes, self.s = in_features, num_classes, float(s)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))  # K, D (the class directions)
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, x: Tensor) -> Tensor:
        """``x: B, D`` -> ``cos(theta): B, K`` in fp32."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.linear(F.normalize(x.float(), dim=1), F.normalize(self.weight.float(), dim=1))  # B, K

    def target_margin(self, cos_y: Tensor) -> Tensor:
        """The target class's cosine ``B`` after the margin (identity here)."""
        return cos_y

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        cos = self.cosine(x)  # B, K
        if self.has_margin and self.training and labels is not None:
            idx = labels.long()[:, None]  # B, 1
            cos = cos.scatter(1, idx, self.target_margin(cos.gather(1, idx).squeeze(1))[:, None])
        return self.s * cos  # B, K

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, s={self.s}"


class _MarginHead(CosineHead):
    has_margin = True

    def __init__(self, in_features: int, num_classes: int, s: float, m: float) -> None:
        super().__init__(in_features, num_classes, s)
        if not 0.0 <= m < math.pi / 2:
            raise ConfigError(f"model.args.head_args.m (the margin) must be in [0, pi/2), got {m}; e.g. 0.5 for "
                              "arcface (radians), 0.35 for cosface")
        self.m = float(m)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}"


@HEADS.register("arcface")
class ArcFaceHead(_MarginHead):
    """Additive angular margin (Deng et al. 2019): target logit ``s * cos(theta_y + m)``; see the module doc for
    ``easy_margin``."""

    def __init__(self, in_features: int, num_classes: int, s: float = 30.0, m: float = 0.5,
                 easy_margin: bool = False) -> None:
        super().__init__(in_features, num_classes, s, m)
        self.easy_margin = bool(easy_margin)
        self.threshold = math.cos(math.pi - self.m)  # theta_y + m > pi below this cosine
        self.fallback = math.sin(self.m) * self.m  # cos(theta) - m sin(m) there (InsightFace's convention)

    def target_margin(self, cos_y: Tensor) -> Tensor:
        sin_y = (1.0 - cos_y * cos_y).clamp_min(COS_EPS).sqrt()  # B, sin(theta) >= 0 for theta in [0, pi]
        shifted = cos_y * math.cos(self.m) - sin_y * math.sin(self.m)  # cos(theta + m)
        if self.easy_margin:
            return torch.where(cos_y > 0, shifted, cos_y)
        return torch.where(cos_y > self.threshold, shifted, cos_y - self.fallback)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, easy_margin={self.easy_margin}"


@HEADS.register("cosface")
class CosFaceHead(_MarginHead):
    """Large margin cosine (Wang et al. 2018): target logit ``s * (cos(theta_y) - m)``."""

    def __init__(self, in_features: int, num_classes: int, s: float = 30.0, m: float = 0.35) -> None:
        super().__init__(in_features, num_classes, s, m)

    def target_margin(self, cos_y: Tensor) -> Tensor:
        return cos_y - self.m


_SET_BY_METHOD = ("in_features", "num_classes")


def create_head(name: str, in_features: int, num_classes: int, head_args: Mapping[str, Any] | None = None) -> nn.Module:
    """The head ``name`` (``linear | cosine | arcface | cosface``) for ``in_features``-d embeddings and
    ``num_classes`` classes; ``head_args`` are the recipe's ``model.args.head_args`` (e.g. ``{s: 30, m: 0.5}``),
    checked against the head's signature so a typo names the closest valid key."""
    head_args = dict(head_args or {})
    try:
        HEADS.get(name)
    except RegistryError as exc:
        raise RegistryError(f"model.args.head: {exc}") from None
    fixed = [k for k in head_args if k in _SET_BY_METHOD]
    if fixed:
        raise ConfigError(f"model.args.head_args.{fixed[0]} is set by the method (the embedding size and the number "
                          "of classes of the data); remove it from model.args.head_args")
    HEADS.check_kwargs(name, head_args, where="model.args.head_args")
    return HEADS.get(name)(in_features, num_classes, **head_args)
