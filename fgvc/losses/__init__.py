"""Losses, registered by name in :data:`fgvc.registry.LOSSES`.

``build_criterion(cfg["loss"], class_counts)`` gives the classification criterion (``loss.name``: cross_entropy,
focal, weighted_cross_entropy) every method uses on its logits; ``build_aux_losses(cfg["loss"]["aux"], ...)`` gives
the weighted feature losses (center, triplet, multi_similarity, proxy_anchor) a method adds on its embedding.
A loss class says which it is with ``inputs = "logits" | "features"``; putting one in the other place is a
:class:`~fgvc.errors.ConfigError` that says where it belongs.

Arguments a loss declares but a recipe need not give are filled in here: ``class_counts`` (images per class of the
train split, for ``weighted_cross_entropy``) by :func:`build_criterion`, ``feat_dim`` and ``num_classes`` (center,
proxy-anchor) by :func:`build_aux_losses`. Each ``loss.aux`` entry is ``{name, weight, args, lr_scale}``:
``lr_scale`` (default 1) is the learning rate of the loss's own parameters (centers, proxies) relative to
``train.lr``.
"""
from __future__ import annotations

import inspect
from typing import Any, Sequence

from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.registry import LOSSES

from . import center, classification, metric, ranking, triplet  # noqa: F401  (register the losses)

__all__ = ["build_criterion", "build_aux_losses", "AuxLoss"]


def _check_inputs(name: str, expected: str, where: str) -> None:
    takes = getattr(LOSSES.get(name), "inputs", expected)
    if takes == expected:
        return
    if takes == "features":
        raise ConfigError(f"{where} = {name} is a feature loss (it acts on embeddings): put it in loss.aux, e.g. "
                          f"loss.aux: [{{name: {name}, weight: 1.0}}], and keep loss.name a classification criterion "
                          "such as cross_entropy")
    raise ConfigError(f"{where} = {name} is a classification criterion (it acts on logits): set it as loss.name, not "
                      "in loss.aux")


def build_criterion(loss_cfg: dict[str, Any], class_counts: Sequence[int] | None = None) -> nn.Module:
    """``loss.name`` with ``loss.args``; ``class_counts`` go to a criterion that takes them unless the args set them."""
    name, args = loss_cfg.get("name", "cross_entropy"), dict(loss_cfg.get("args") or {})
    _check_inputs(name, "logits", "loss.name")
    if class_counts is not None and "class_counts" in inspect.signature(LOSSES.get(name)).parameters:
        args.setdefault("class_counts", [int(c) for c in class_counts])
    LOSSES.check_kwargs(name, args, where="loss.args")
    return LOSSES.build(name, **args)


class AuxLoss(nn.Module):
    """A feature loss with its weight, ``weight * loss(features, targets)``, and the learning-rate scale of its own
    parameters (``lr_scale``)."""

    def __init__(self, name: str, weight: float, loss: nn.Module, lr_scale: float = 1.0) -> None:
        super().__init__()
        self.name, self.weight, self.loss, self.lr_scale = name, float(weight), loss, float(lr_scale)

    def forward(self, feats: Tensor, targets: Tensor) -> Tensor:  # feats: B, D; targets: B
        return self.weight * self.loss(feats, targets)


def build_aux_losses(aux_cfg: list[dict[str, Any]] | None, feat_dim: int, num_classes: int) -> nn.ModuleList:
    """Each entry ``{name, weight, args, lr_scale}``; ``feat_dim``/``num_classes`` are passed when the loss takes
    them."""
    out = nn.ModuleList()
    for i, entry in enumerate(aux_cfg or []):
        name, args = entry["name"], dict(entry.get("args") or {})
        _check_inputs(name, "features", f"loss.aux[{i}].name")
        params = inspect.signature(LOSSES.get(name)).parameters
        if "feat_dim" in params:
            args.setdefault("feat_dim", feat_dim)
        if "num_classes" in params:
            args.setdefault("num_classes", num_classes)
        LOSSES.check_kwargs(name, args, where=f"loss.aux[{i}].args")
        lr_scale = float(entry.get("lr_scale", 1.0))
        if lr_scale < 0:
            raise ConfigError(f"loss.aux[{i}].lr_scale must be >= 0 (a factor on train.lr), got {lr_scale}")
        out.append(AuxLoss(name, entry.get("weight", 1.0), LOSSES.build(name, **args), lr_scale))
    return out
