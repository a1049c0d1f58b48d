"""The optimizer factory: :func:`build_stage_optimizer` turns a method's parameter groups for one training stage
into the optimizer the trainer (and ``fgvc bench``) steps: frozen parameters left out, each group at ``lr x
lr_scale``, no weight decay on biases and normalisation weights, and layer-wise learning-rate decay.

Layer-wise learning-rate decay (``train.layer_decay``; Clark et al. 2020, ELECTRA; Bao et al. 2022, BEiT): the
deeper a backbone layer, the closer its learning rate to the head's, so fine-tuning moves the generic early layers
least. Fine-grained ViT recipes use 0.65-0.75 for a ViT-B.

Layers are timm's: ``model.group_matcher(coarse=False)`` read by timm's ``group_with_matcher`` (what
``timm.models.group_parameters`` and ``timm.optim.param_groups_layer_decay`` use), so a ViT has the embeddings
(patch, position, class / distillation / register tokens) as layer 0 and one layer per block (the final norm with
the last block); a Swin one per block; timm CNNs with a ``group_matcher`` (ResNet, EfficientNet, ConvNeXt,
Inception-v3, VGG ...) one per block or stage; stages that CBAM/SE wrapped keep the layer of their timm name. With
``L`` backbone layers, the parameters of layer ``i`` train at

    lr x lr_scale x decay ** (L - i)

where ``lr_scale`` is what the method gives its ``"backbone"`` group (``train.backbone_lr_scale``), so the top
backbone layer is at ``decay`` and every layer the method adds (heads, WS-DAN's attention, RA-CNN's APNs, the
``loss.aux`` centers) is layer ``L``: its own ``lr_scale`` x 1. A backbone without a ``group_matcher`` (e.g. a CNN
tapped at a middle stage, ``features_only``) is refused with a :class:`~fgvc.errors.ConfigError`.

:func:`build_stage_optimizer` marks the ``"backbone"`` group of :meth:`fgvc.methods.base.Method.optimizer_groups`
with :class:`BackboneLayers` and calls :func:`apply_layer_decay`, which splits that group by layer and logs the
resulting groups (name, parameters, lr) once per optimizer.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from timm.models._manipulate import group_with_matcher
from torch import nn

from fgvc.errors import ConfigError
from fgvc.methods.attention_blocks import AttnAfter
from fgvc.models.backbone import Backbone

log = logging.getLogger(__name__)

__all__ = ["build_stage_optimizer", "build_optimizer", "layerwise_adaptive", "BackboneLayers", "apply_layer_decay",
           "mark_backbone_layers",
           "describe_groups"]


class BackboneLayers:
    """The timm layer index of every parameter of some backbones (:class:`fgvc.models.backbone.Backbone`), computed
    when first asked: ``depth(p) -> (i, L)``."""

    def __init__(self, backbones: Sequence[nn.Module]) -> None:
        self.backbones = list(backbones)
        self._depths: dict[int, tuple[int, int]] | None = None

    def _compute(self) -> dict[int, tuple[int, int]]:
        depths: dict[int, tuple[int, int]] = {}
        for b in self.backbones:
            model, name = b.model, getattr(b, "name", type(b.model).__name__)
            if not hasattr(model, "group_matcher"):
                raise ConfigError(
                    f"train.layer_decay needs timm's layer grouping (group_matcher), which model.backbone '{name}' "
                    f"has not as built here ({type(model).__name__}, e.g. a CNN tapped at a middle stage through "
                    "model.backbone_args.out_index or WS-DAN's Inception-v3 part tap): set train.layer_decay: null, "
                    "or use train.backbone_lr_scale for one backbone rate")
            names = _matcher_names(model)
            # timm's grouping (what timm.optim.param_groups_layer_decay uses): matcher name -> layer index
            layer_of = group_with_matcher(((n, None) for n in names.values()), model.group_matcher(coarse=False),
                                          reverse=True)
            n_layers = max(layer_of.values(), default=0) + 1
            if n_layers < 2:
                raise ConfigError(f"train.layer_decay: timm groups all of model.backbone '{name}' into one layer, so "
                                  "there is nothing to decay; set train.layer_decay: null")
            for pname, p in model.named_parameters():
                depths[id(p)] = (int(layer_of.get(names[pname], n_layers - 1)), n_layers)
        return depths

    def depth(self, param: nn.Parameter) -> tuple[int, int] | None:
        """``(i, L)``: the layer of ``param`` and the number of layers of its backbone; None outside the backbones."""
        if self._depths is None:
            self._depths = self._compute()
        return self._depths.get(id(param))


def _matcher_names(model: nn.Module) -> dict[str, str]:
    """Parameter name -> the name timm's ``group_matcher`` knows it by: its own, or for a stage that CBAM/SE wrapped
    in ``AttnAfter`` (``<stage>.block.<rest>``) the unwrapped ``<stage>.<rest>``."""
    wrapped = [name + ".block." for name, m in model.named_modules() if isinstance(m, AttnAfter)]
    names = {}
    for pname, _ in model.named_parameters():
        prefix = next((w for w in wrapped if pname.startswith(w)), None)
        names[pname] = pname if prefix is None else prefix[: -len("block.")] + pname[len(prefix):]
    return names


def mark_backbone_layers(groups: list[dict[str, Any]], method: nn.Module) -> list[dict[str, Any]]:
    """Give the ``"backbone"`` group(s) of ``groups`` a :class:`BackboneLayers` of ``method``'s backbones (key
    ``"layers"``), which :func:`apply_layer_decay` reads; nothing is computed unless a decay is set."""
    layers = BackboneLayers([m for m in method.modules() if isinstance(m, Backbone)])
    return [dict(g, layers=layers) if g.get("name") == "backbone" else g for g in groups]


def apply_layer_decay(groups: list[dict[str, Any]], decay: float | None, lr: float) -> list[dict[str, Any]]:
    """``groups`` with each group marked by :func:`mark_backbone_layers` split into one group per backbone layer,
    ``"<name>.layer<i>"`` at ``lr_scale x decay ** (L - i)``; the other groups unchanged. ``decay`` None: ``groups``
    as given (its range, (0, 1], is checked when the recipe loads: :data:`fgvc.config_schema.RANGES`). Logs the
    resulting groups at base learning rate ``lr``."""
    if decay is None:
        return groups
    out: list[dict[str, Any]] = []
    for g in groups:
        layers: BackboneLayers | None = g.get("layers")
        if layers is None:
            out.append(g)
            continue
        by_layer: dict[tuple[int, int], list[nn.Parameter]] = {}
        rest: list[nn.Parameter] = []
        for p in g["params"]:
            d = layers.depth(p)
            (rest if d is None else by_layer.setdefault(d, [])).append(p)
        scale, name = g.get("lr_scale", 1.0), g.get("name", "backbone")
        for (i, n_layers), params in sorted(by_layer.items()):
            out.append({"params": params, "lr_scale": scale * float(decay) ** (n_layers - i),
                        "name": f"{name}.layer{i}"})
        if rest:  # parameters the method listed with its backbone but that belong to none (kept at the group's rate)
            out.append({"params": rest, "lr_scale": scale, "name": name})
    log.info(describe_groups(out, lr, float(decay)))
    return out


def describe_groups(groups: list[dict[str, Any]], lr: float, decay: float) -> str:
    """A log message: one line per group, ``name  parameters  lr``."""
    lines = [f"train.layer_decay={decay:g}: {len(groups)} parameter groups (lr of backbone layer i of L = lr x "
             f"backbone_lr_scale x {decay:g}^(L - i); added layers at their own lr_scale)"]
    for g in groups:
        n = sum(p.numel() for p in g["params"])
        lines.append(f"  {g.get('name', ''):<22} {n / 1e6:9.3f} M params  lr {lr * g.get('lr_scale', 1.0):.3g}")
    return "\n".join(lines)


def build_stage_optimizer(method: nn.Module, stage: dict[str, Any], tr: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizer of ``method`` for one training stage (an entry of ``train.stages``: its ``name``, and optional
    ``lr`` and ``backbone_lr_scale`` overriding ``train.lr`` / ``train.backbone_lr_scale`` of ``tr``).

    The parameters in none of the stage's :meth:`~fgvc.methods.base.Method.optimizer_groups` are frozen
    (``requires_grad`` False), the others trainable; the backbone group is split by layer when
    ``train.layer_decay`` is set."""
    lr = stage.get("lr", tr["lr"])
    groups = method.optimizer_groups(stage["name"], stage.get("backbone_lr_scale", tr["backbone_lr_scale"]))
    trainable = {id(p) for g in groups for p in g["params"]}
    for p in method.parameters():
        p.requires_grad_(id(p) in trainable)
    groups = apply_layer_decay(mark_backbone_layers(groups, method), tr.get("layer_decay"), lr)
    return build_optimizer(groups, tr, lr)


def build_optimizer(groups: list[dict[str, Any]], tr: dict[str, Any], lr: float) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), AdamW, LARS or LAMB (``train.optimizer``; :func:`layerwise_adaptive`) over
    ``groups``: each group's lr = lr x its ``lr_scale``; weight decay ``train.weight_decay`` except on biases and
    normalisation weights (1-D tensors)."""
    param_groups = []
    for g in groups:
        params = [p for p in g["params"] if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        for ps, wd in ((decay, tr["weight_decay"]), (no_decay, 0.0)):
            if ps:
                param_groups.append({"params": ps, "lr": lr * g.get("lr_scale", 1.0), "weight_decay": wd,
                                     "name": g.get("name", "")})
    if not param_groups:
        raise ConfigError("no trainable parameters in this stage: check train.stages and the method's param_groups")
    if tr["optimizer"] == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=tr["momentum"], nesterov=tr["nesterov"] and tr["momentum"] > 0)
    if tr["optimizer"] in ("lars", "lamb"):
        return layerwise_adaptive(tr["optimizer"], param_groups, lr, tr)
    return torch.optim.AdamW(param_groups, lr=lr)


def layerwise_adaptive(name: str, param_groups: list[dict[str, Any]], lr: float, tr: dict[str, Any]
                       ) -> torch.optim.Optimizer:
    """timm's LARS (You et al. 2017, SGD with momentum ``train.momentum`` and a per-tensor trust ratio) or LAMB (You
    et al. 2020, Adam with it) over ``param_groups``. As SimCLR and the LARS paper do, biases and normalisation weights
    (the 1-D tensors, already without weight decay) are left out of the layer-wise adaptation: each group's
    ``always_adapt`` is True for the groups of tensors with more than one dimension and False (with no weight decay)
    for the others, and timm adapts a group only when ``always_adapt`` or its weight decay is non-zero. LARS runs without LARC's clipping (``trust_clip`` False)."""
    from timm.optim import Lamb, Lars

    groups = [dict(g, always_adapt=all(p.ndim > 1 for p in g["params"])) for g in param_groups]
    for g in groups:
        g["lars_excluded"] = not g["always_adapt"]  # read by tests and logs
        if not g["always_adapt"]:
            g["weight_decay"] = 0.0
    if name == "lars":
        return Lars(groups, lr=lr, momentum=tr["momentum"], nesterov=tr["nesterov"] and tr["momentum"] > 0)
    return Lamb(groups, lr=lr)
