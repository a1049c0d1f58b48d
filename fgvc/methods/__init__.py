"""Methods, registered by name in :data:`fgvc.registry.METHODS`.

Importing this package registers ``baseline``, ``wsdan``, ``bcnn``, ``racnn``, ``senet`` and
``cbam``. :func:`build_method` turns a recipe's ``model`` section into a :class:`Method`.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from fgvc.registry import METHODS, RegistryError

from . import attention_blocks, baseline, bcnn, racnn, wsdan  # noqa: F401  (register the methods)
from .base import Method

__all__ = ["Method", "build_method", "METHODS"]

_TOP_LEVEL = ("backbone", "pretrained", "pretrained_file")


def build_method(model_cfg: dict[str, Any], num_classes: int, criterion: nn.Module | None = None) -> Method:
    """``model_cfg``: ``{name, backbone, pretrained, pretrained_file, args: {...}}``.

    ``backbone`` / ``pretrained`` / ``pretrained_file`` are passed when present (else the method's
    defaults apply); ``args`` are the method's own keyword arguments, checked against its signature
    so a typo fails with the closest valid name.
    """
    cfg = dict(model_cfg)
    if "name" not in cfg:
        raise RegistryError(f"model.name is missing; registered methods: {', '.join(METHODS.names())}")
    name = cfg["name"]
    args = dict(cfg.get("args") or {})
    METHODS.check_kwargs(name, args, where="model.args")
    for key in _TOP_LEVEL:
        if key in args and key in cfg:
            raise RegistryError(f"model.{key} and model.args.{key} are both set; keep one")
    reserved = {"num_classes", "criterion"} & set(args)
    if reserved:
        raise RegistryError(
            f"model.args may not set {', '.join(sorted(reserved))}: the trainer passes them (num_classes comes from "
            f"the data: {num_classes} classes here; the loss from the recipe's loss section); remove "
            f"{' and '.join('model.args.' + k for k in sorted(reserved))} from the recipe")
    kwargs = {k: cfg[k] for k in _TOP_LEVEL if k in cfg}
    kwargs.update(args)
    METHODS.check_kwargs(name, kwargs, where="model")
    return METHODS.build(name, num_classes=num_classes, criterion=criterion, **kwargs)
