"""Vision-transformer backbones (ViT, Dosovitskiy et al. 2021; DeiT, Touvron et al. 2021; EVA, BEiT, Swin) at
fine-grained input sizes, on timm's own pieces.

Fine-grained recipes train at 448 px (TransFG, He et al. 2022), while the ImageNet weights of a ViT-B/16 were trained
at 224 px: a 14 x 14 grid of learned position embeddings for a 28 x 28 grid of patches. Two ways cover it, both
timm's:

* ``model.backbone_args: {img_size: 448}``: the model is built for 448 px and its position embeddings are resampled
  (bicubic) once, when the pretrained weights load: timm does it for weights from the hub, and
  :func:`adapt_checkpoint` runs the same ``checkpoint_filter_fn`` of the model's timm module for a local
  ``model.pretrained_file`` (Swin's filter also resizes relative-position tables).
* without it, :class:`fgvc.models.backbone.Backbone` builds every transformer with ``dynamic_img_size=True``, so the
  224-px grid is resampled on every forward pass to whatever size arrives (RA-CNN's zooms, WS-DAN's crops, a
  ``--set data.img_size=...``). Swin then pads its windows, so any size works.

Either way the input must be a whole number of patches (16 px for ViT-B/16, 4 px for Swin, 14 px for EVA-02):
:func:`check_input_size` says so in one :class:`~fgvc.errors.ConfigError` instead of timm's assertion. BEiT has no
``dynamic_img_size`` in timm: it takes only the size it was built for, and the same check says to set ``img_size``.

Prefix tokens: the class token, DeiT's distillation token and the register tokens of ``vit_*_reg*`` models
(Darcet et al. 2024) are ``model.num_prefix_tokens`` tokens before the patches; timm's
``forward_intermediates(..., output_fmt="NCHW")`` drops them from the token map, and the pooled embedding is timm's
own pooling (the class token; distilled DeiT: the mean of its class and distillation tokens; ``*_gap`` models: the
mean of the patch tokens).
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

import timm
from torch import Tensor, nn

from fgvc.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["patch_size", "check_input_size", "adapt_checkpoint", "prefix_tokens"]


def patch_size(model: nn.Module) -> tuple[int, int] | None:
    """The patch size ``(ph, pw)`` of a timm transformer (None when it has no ``patch_embed``)."""
    size = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if size is None:
        return None
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_input_size(model: nn.Module, name: str, height: int, width: int) -> None:
    """A :class:`ConfigError` unless ``height x width`` is a whole number of ``model``'s patches (and, for a model
    timm builds without ``dynamic_img_size``, e.g. BEiT, its own input size)."""
    embed = getattr(model, "patch_embed", None)
    fixed = getattr(embed, "img_size", None)
    if getattr(embed, "strict_img_size", False) and fixed is not None and (height, width) != tuple(fixed):
        raise ConfigError(
            f"model.backbone '{name}' was built for {fixed[0]} x {fixed[1]} px inputs, and timm gives it no "
            f"dynamic_img_size: set model.backbone_args.img_size to data.img_size ({height}) so that its position "
            "embeddings are resampled once when the weights load")
    size = patch_size(model)
    if size is None or (height % size[0] == 0 and width % size[1] == 0):
        return
    ph = size[0]
    lo, hi = height // ph * ph, (height // ph + 1) * ph
    raise ConfigError(
        f"model.backbone '{name}' cuts images into {size[0]} x {size[1]} px patches, and an input of {height} x "
        f"{width} px is not a whole number of them: set data.img_size to a multiple of {ph} (e.g. {lo or ph} or {hi})")


def adapt_checkpoint(name: str, state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """``state`` as timm adapts it to ``model`` when loading pretrained weights: position embeddings resampled to the
    model's grid (a 224-px checkpoint into a 448-px model), patch embeddings and Swin's relative-position tables
    resized, old layouts converted. Uses the ``checkpoint_filter_fn`` of the timm module that builds ``name``;
    ``state`` unchanged when there is none or it does not apply (e.g. an fgvc checkpoint of the same model)."""
    try:
        module = importlib.import_module(timm.models.model_entrypoint(name.split(".")[0]).__module__)
    except Exception:  # unknown or hub-only names: nothing to adapt with
        return state
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state
    try:
        return dict(filter_fn(dict(state), model))
    except Exception as exc:  # a state dict the filter does not expect: load it as it is
        log.debug("%s: timm's checkpoint_filter_fn did not apply (%s); loading the tensors as they are", name, exc)
        return state


def prefix_tokens(model: nn.Module) -> dict[str, Any]:
    """What precedes the patch tokens of a timm ViT-family model: ``{"total": n, "class": bool, "distillation": bool,
    "registers": r, "pool": global_pool}``."""
    return {
        "total": int(getattr(model, "num_prefix_tokens", 0)),
        "class": getattr(model, "cls_token", None) is not None,
        "distillation": getattr(model, "dist_token", None) is not None,
        "registers": int(getattr(model, "num_reg_tokens", 0) or 0),
        "pool": str(getattr(model, "global_pool", "")),
    }
