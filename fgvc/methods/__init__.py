"""Methods, registered by name in :data:`fgvc.registry.METHODS`.

Importing this package registers ``baseline``, ``wsdan``, ``bcnn``, ``racnn``, ``senet``,
``cbam`` and ``simclr``. :func:`build_method` is the one factory that turns a recipe's ``model`` section into a
:class:`Method`: it makes the :class:`MethodSetup` every method shares (classes, backbone spec,
criterion, feature losses) and passes ``model.args`` as the method's own keyword arguments.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from fgvc.errors import RegistryError
from fgvc.models.backbone import BackboneSpec
from fgvc.registry import METHODS

from . import attention_blocks, baseline, bcnn, racnn, simclr, wsdan  # noqa: F401  (register the methods)
from .base import Method, MethodSetup, Outputs

__all__ = ["Method", "MethodSetup", "Outputs", "build_method", "METHODS"]

# model.args keys that belong elsewhere, and where
_ELSEWHERE = {
    "num_classes": "the trainer passes it (the number of classes in the data: {k} here)",
    "criterion": "the trainer passes it (from the recipe's loss section)",
    "setup": "the trainer passes it",
    "backbone": "set model.backbone", "pretrained": "set model.pretrained",
    "pretrained_file": "set model.pretrained_file", "backbone_args": "set model.backbone_args",
    "aux_losses": "feature losses (center, triplet, multi_similarity, proxy_anchor) are set in loss.aux, which the "
                  "trainer passes to the method",
}


def build_method(model_cfg: dict[str, Any], num_classes: int, criterion: nn.Module | None = None,
                 feature_losses: list[dict[str, Any]] | None = None) -> Method:
    """``model_cfg``: ``{name, backbone, pretrained, pretrained_file, backbone_args, args}``; ``feature_losses``:
    the recipe's ``loss.aux``. ``args`` are checked against the method's signature, so a typo fails with the
    closest valid name."""
    if "name" not in model_cfg:
        raise RegistryError(f"model.name is missing; registered methods: {', '.join(METHODS.names())}")
    name = model_cfg["name"]
    args = dict(model_cfg.get("args") or {})
    misplaced = [k for k in args if k in _ELSEWHERE]
    if misplaced:
        raise RegistryError("; ".join(f"model.args.{k} is not a method argument: {_ELSEWHERE[k].format(k=num_classes)}"
                                      for k in misplaced) + "; remove it from model.args")
    METHODS.check_kwargs(name, args, where="model.args")
    spec = BackboneSpec(model_cfg.get("backbone", "resnet50"), bool(model_cfg.get("pretrained", False)),
                        model_cfg.get("pretrained_file"), dict(model_cfg.get("backbone_args") or {}))
    setup = MethodSetup(num_classes, spec, criterion if criterion is not None else nn.CrossEntropyLoss(),
                        list(feature_losses or []))
    return METHODS.get(name)(setup, **args)
