"""Losses, registered by name in :data:`fgvc.registry.LOSSES`.

``build_criterion(cfg["loss"])`` gives the classification criterion every method uses for its
cross-entropy terms; ``build_aux_losses(cfg["loss"]["aux"])`` gives weighted feature losses
(center, triplet) that a method adds on its embedding.
"""
from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from fgvc.registry import LOSSES

from . import center, classification, ranking, triplet  # noqa: F401  (register the losses)


def build_criterion(loss_cfg: dict[str, Any]) -> nn.Module:
    return LOSSES.build(loss_cfg.get("name", "cross_entropy"), **dict(loss_cfg.get("args") or {}))


class AuxLoss(nn.Module):
    """A feature loss with its weight: ``weight * loss(features, targets)``."""

    def __init__(self, name: str, weight: float, loss: nn.Module) -> None:
        super().__init__()
        self.name, self.weight, self.loss = name, float(weight), loss

    def forward(self, feats, targets):  # type: ignore[override]
        return self.weight * self.loss(feats, targets)


def build_aux_losses(aux_cfg: list[dict[str, Any]] | None, feat_dim: int, num_classes: int) -> nn.ModuleList:
    """Each entry ``{name, weight, args}``; ``feat_dim``/``num_classes`` are passed when the loss takes them."""
    out = nn.ModuleList()
    for i, entry in enumerate(aux_cfg or []):
        name, args = entry["name"], dict(entry.get("args") or {})
        params = inspect.signature(LOSSES.get(name)).parameters
        if "feat_dim" in params:
            args.setdefault("feat_dim", feat_dim)
        if "num_classes" in params:
            args.setdefault("num_classes", num_classes)
        LOSSES.check_kwargs(name, args, where=f"loss.aux[{i}].args")
        out.append(AuxLoss(name, entry.get("weight", 1.0), LOSSES.build(name, **args)))
    return out
