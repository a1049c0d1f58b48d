"""Channel / spatial attention blocks inside the backbone, on a plain fine-tuning head.

* ``senet``: squeeze-and-excitation (Hu, Shen & Sun 2018, "Squeeze-and-Excitation Networks",
  CVPR 2018, arXiv:1709.01507).
* ``cbam``: convolutional block attention module, channel then spatial gate (Woo, Park, Lee &
  Kweon 2018, "CBAM: Convolutional Block Attention Module", ECCV 2018, arXiv:1807.06521).

The blocks are timm's own (``timm.layers.SEModule``, ``timm.layers.CbamModule``, via
``timm.layers.create_attn``), not re-implementations. Placement:

* timm ResNet-family backbones (``resnet*``, ``resnext*``, ``seresnet*``, ...) with
  ``after_stages: null``: one block in every residual block, on the residual branch before the
  addition, as both papers do - passed to timm as ``block_args={"attn_layer": ...}``.
* any other CNN backbone, or when ``after_stages`` is given: one block after each chosen entry of
  ``model.feature_info`` (indices into that list; ``null`` = every entry with stride >= 4, i.e. not
  the stem). Needs ``B, C, H, W`` stage outputs (CNNs, not ViTs).

Initialisation: pretrained files do not hold the new blocks, so they keep timm's initialisation
(:class:`fgvc.models.backbone.Backbone` reports them as missing keys). Inside a timm ResNet that is
``ResNet.init_weights``: Kaiming-normal (fan_out, ReLU) for every conv, including SE's ``fc1``/``fc2``
and CBAM's MLP and 7x7 spatial conv; conv biases keep PyTorch's default uniform init and CBAM's
spatial BN starts at weight 1, bias 0. So at the start each gate is ``sigmoid`` of a random
projection (around 0.5 on average), not an identity: the pretrained residual branches are damped
until the blocks are trained. Blocks inserted after stages keep the PyTorch default init of their
layers (the model's own init has already run). ``attn_lr_scale`` (default 1.0 = the head's lr)
lets the new blocks learn at the head's rate while the pretrained backbone is at
``backbone_lr_scale``; ``null`` puts them with the backbone.

``infer(...).maps``: for CBAM, the spatial gate of every inserted block (the output of
``CbamModule.spatial.gate``, captured by forward hooks during the same pass that classifies), resized to
the largest of their sizes: ``B, n_blocks, h, w`` in ``[0, 1]``. SE has no spatial map (``maps`` is None;
``fgvc.visualize`` then draws the channel mean of the feature map). Both refuse a vision transformer
backbone: their blocks gate CNN stage outputs. ``head`` / ``head_args`` choose the classifier as for the
baseline (:mod:`fgvc.models.heads`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.layers import create_attn
from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.methods.base import MethodSetup, Outputs
from fgvc.methods.baseline import Baseline
from fgvc.registry import METHODS

__all__ = ["AttentionBlocksNet", "SENet", "CBAMNet", "AttnAfter", "is_resnet_family"]


def is_resnet_family(name: str) -> bool:
    """Whether timm builds ``name`` with its ``ResNet`` class (which takes ``block_args``)."""
    try:
        return timm.models.model_entrypoint(name.split(".")[0]).__module__ == "timm.models.resnet"
    except Exception:  # unknown or hub-only names: not built by timm's ResNet class here
        return False


class AttnAfter(nn.Module):
    """``attn(block(x))``: an attention block appended to an existing stage."""

    def __init__(self, block: nn.Module, attn: nn.Module) -> None:
        super().__init__()
        self.block, self.attn = block, attn

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(self.block(x))


class AttentionBlocksNet(Baseline):
    """A :class:`~fgvc.methods.baseline.Baseline` whose backbone carries timm attention blocks."""

    default_attn = "se"

    def __init__(
        self,
        setup: MethodSetup,
        attn_layer: str | None = None,
        after_stages: list[int] | None = None,
        attn_lr_scale: float | None = 1.0,
        drop_rate: float = 0.0,
        head: str = "linear",
        head_args: dict[str, Any] | None = None,
    ) -> None:
        attn_layer = attn_layer or self.default_attn
        try:
            probe = create_attn(attn_layer, 8)
        except AssertionError:  # timm asserts on an unknown name
            probe = None
        if probe is None:
            raise ConfigError(f"unknown timm attention layer '{attn_layer}' (model.args.attn_layer; e.g. 'se', "
                              "'cbam', 'eca')")
        spec = setup.backbone
        per_block = after_stages is None and is_resnet_family(spec.name)
        if per_block:  # timm's ResNet places the block on every residual branch itself
            block_args = {**dict(spec.args.get("block_args") or {}), "attn_layer": attn_layer}
            setup = replace(setup, backbone=replace(spec, args={**spec.args, "block_args": block_args}))
        super().__init__(setup, drop_rate, head, head_args)
        self.attn_layer, self.attn_lr_scale = attn_layer, attn_lr_scale
        if per_block:
            kind = type(probe)
            self.attn_names = [n for n, m in self.backbone.named_modules() if type(m) is kind]
        else:
            self.attn_names = self._insert_after_stages(attn_layer, after_stages)
        if not self.attn_names:
            raise ConfigError(f"no '{attn_layer}' block could be placed in backbone '{spec.name}'")

    def _insert_after_stages(self, attn_layer: str, after_stages: list[int] | None) -> list[str]:
        model = self.backbone.model
        info = list(getattr(model, "feature_info", None) or [])
        if not info:
            raise ConfigError(f"backbone '{self.backbone.name}' has no feature_info; cannot place attention blocks")
        if after_stages is None:
            after_stages = [i for i, f in enumerate(info) if f.get("reduction", 1) >= 4]
        names = []
        for i in after_stages:
            if not -len(info) <= i < len(info):
                raise ConfigError(f"model.args.after_stages index {i} out of range: the backbone has {len(info)} stages")
            path, channels = info[i]["module"], int(info[i]["num_chs"])
            parent_name, _, leaf = path.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, leaf, AttnAfter(getattr(parent, leaf), create_attn(attn_layer, channels)))
            names.append(f"model.{path}.attn")
        return names

    def attn_modules(self) -> list[nn.Module]:
        return [self.backbone.get_submodule(n) for n in self.attn_names]

    def param_groups(self, stage: str = "main", backbone_lr_scale: float = 1.0) -> list[dict[str, Any]]:
        attn = [p for m in self.attn_modules() for p in m.parameters()]
        attn_ids = {id(p) for p in attn}
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        groups = [
            {"params": [p for p in self.backbone.parameters() if id(p) not in attn_ids],
             "lr_scale": backbone_lr_scale, "name": "backbone"},
            {"params": attn, "lr_scale": backbone_lr_scale if self.attn_lr_scale is None else self.attn_lr_scale,
             "name": "attention"},
        ]
        head = [p for p in self.parameters() if id(p) not in backbone_ids]
        if head:
            groups.append({"params": head, "lr_scale": 1.0, "name": "head"})
        return groups

    def infer(self, images: Tensor) -> Outputs:
        """Baseline outputs; for CBAM also ``maps``: the spatial gate of every block, captured in the same pass."""
        gates = [m.spatial.gate for m in self.attn_modules() if hasattr(m, "spatial")]
        captured: list[Tensor] = []
        hooks = [g.register_forward_hook(lambda _m, _i, out: captured.append(out.detach())) for g in gates]
        try:
            out = super().infer(images)
        finally:
            for h in hooks:
                h.remove()
        if captured:  # B, 1, h_i, w_i per block -> B, n_blocks, h, w at the largest block size
            size = max((m.shape[-2:] for m in captured), key=lambda hw: hw[0] * hw[1])
            maps = [F.interpolate(m.float(), size=size, mode="bilinear", align_corners=False) for m in captured]
            out.maps = torch.cat(maps, 1).clamp(0, 1)
        return out


@METHODS.register("senet")
class SENet(AttentionBlocksNet):
    """Squeeze-and-excitation blocks (``attn_layer="se"``)."""

    default_attn = "se"
    refuses_transformers = "model.name=senet places SE (squeeze-and-excitation) blocks on CNN stage outputs"


@METHODS.register("cbam")
class CBAMNet(AttentionBlocksNet):
    """CBAM blocks (``attn_layer="cbam"``)."""

    default_attn = "cbam"
    refuses_transformers = "model.name=cbam places CBAM blocks on CNN stage outputs"
