"""Structured channel pruning of a method's backbone(s) with torch-pruning's dependency graph.

DepGraph (Fang et al. 2023, "DepGraph: Towards Any Structural Pruning", CVPR, arXiv:2301.12900) traces the backbone
and groups every set of channels that must go together (a convolution's filters with its BatchNorm, the next layers'
input channels, the residual additions that tie whole stages, the input and output of a depthwise convolution), and
removes them for real: the layers become narrower, parameters, MACs and latency fall.

What is pruned (:func:`prune_method`):

* only the convolutions inside the method's backbone(s) (:class:`~fgvc.models.backbone.Backbone`; RA-CNN's one per
  scale, each on its own), with the SE/CBAM blocks that live there;
* **per layer**: every prunable channel group loses ``amount`` of its channels (torch-pruning's local pruning:
  ``n - int(n * (1 - amount))``), ranked inside the group by the chosen importance;
* never the **backbone's output channels**: every group that reaches the feature map a method reads is fixed, so the
  classifier heads (whose outputs are classes), WS-DAN's attention maps (``M``), part features (``M x C``) and
  feature centers, B-CNN's bilinear (``C x C``) or compact pooling and its reduction, RA-CNN's attention proposal
  networks and fusion layer, and ``loss.aux`` centers/proxies keep their sizes and weights. For a ResNet this keeps
  the last stage's residual width; the bottleneck widths of every block and the earlier stages' widths are pruned;
* never a group torch-pruning couples through a broadcast (CBAM's 1-channel spatial gate multiplies all channels of
  its stage: DepGraph ties that gate conv to the stage's channels, which cannot be cut consistently), so under CBAM
  the stage widths stay and the block-internal widths are pruned.

Importance (torch-pruning's group estimators, summed over the coupled layers of a group):

* ``l1``: magnitude, the L1 norm of each channel's weights (Li et al. 2017, "Pruning Filters for Efficient
  ConvNets", ICLR, arXiv:1608.08710), extended by DepGraph to every layer of the group;
* ``l2``: the same with the L2 norm;
* ``taylor``: first-order Taylor expansion of the loss, ``|w * dL/dw|`` (Molchanov et al. 2019, "Importance
  Estimation for Neural Network Pruning", CVPR), with gradients of the cross-entropy of the headline logits over a
  few training batches (eval mode: BatchNorm statistics untouched).

Vision-transformer backbones are refused (:class:`PruningError`): their attention heads need head-aware pruning.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.engine.pruned_arch import layer_attributes, record_changes
from fgvc.errors import PruningError  # defined in fgvc.errors with every user error; importable here as before
from fgvc.extras import require
from fgvc.models.backbone import Backbone

log = logging.getLogger("fgvc")

__all__ = ["PruningError", "PruneSummary", "IMPORTANCES", "prune_method", "backbones_of", "check_prunable"]

IMPORTANCES = ("l1", "l2", "taylor")


@dataclass
class PruneSummary:
    """What :func:`prune_method` did."""

    amount: float
    importance: str
    groups_pruned: int = 0  # channel groups that lost channels
    groups_fixed: int = 0  # groups left whole: they reach the backbone's output or couple through a broadcast
    channels_before: int = 0  # channels of the pruned groups' root layers, before and after
    channels_after: int = 0
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # the record: fgvc.engine.pruned_arch

    def to_dict(self) -> dict[str, Any]:
        return {"amount": self.amount, "importance": self.importance, "scope": "per layer",
                "groups_pruned": self.groups_pruned, "groups_fixed": self.groups_fixed,
                "channels_before": self.channels_before, "channels_after": self.channels_after,
                "layers_changed": len(self.layers)}


class _Tap(nn.Module):
    """``backbone -> 1x1 conv``: a consumer of the feature map, so DepGraph shows which groups reach the output."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.probe = nn.Conv2d(backbone.num_features, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.probe(self.backbone(x))


def backbones_of(method: nn.Module) -> list[Backbone]:
    """The distinct backbones of ``method`` (RA-CNN: one per scale unless shared)."""
    return list({id(m): m for m in method.modules() if isinstance(m, Backbone)}.values())


def check_prunable(method: nn.Module, name: str) -> None:
    """Refuse (:class:`PruningError`) a method structured channel pruning cannot handle."""
    backbones = backbones_of(method)
    if not backbones:
        raise PruningError(f"model.name={name} has no timm backbone to prune")
    vit = [b.name for b in backbones if b.is_transformer]
    if vit:
        raise PruningError(f"backbone '{vit[0]}' is a vision transformer: its attention heads need head-aware pruning, "
                           "and fgvc.prune removes convolution channels of CNN backbones only (e.g. resnet50, "
                           "tf_efficientnet_lite0)")


def _importance(tp: Any, kind: str) -> Any:
    imp = tp.importance
    if kind == "l1":
        return imp.GroupMagnitudeImportance(p=1)
    if kind == "l2":
        return imp.GroupMagnitudeImportance(p=2)
    if kind == "taylor":
        return imp.GroupTaylorImportance()
    raise PruningError(f"--importance {kind}: choose one of {', '.join(IMPORTANCES)}")


def _channels(dg: Any, module: nn.Module, handler: Any) -> int | None:
    return dg.get_out_channels(module) if dg.is_out_channel_pruning_fn(handler) else dg.get_in_channels(module)


def _fixed_layers(tp: Any, dg: Any, tap: _Tap) -> tuple[list[nn.Module], int]:
    """Layers whose output channels must stay: those feeding the backbone's output, and those of any group whose
    indices overrun a member (a broadcast coupling). Also the number of groups so fixed."""
    out_group = dg.get_pruning_group(tap.probe, tp.prune_conv_in_channels, list(range(tap.backbone.num_features)))
    fixed = [dep.target.module for dep, _ in out_group if dg.is_out_channel_pruning_fn(dep.handler)]
    fixed.append(tap.probe)
    n_fixed = 1
    for group in dg.get_all_groups(ignored_layers=fixed, root_module_types=(nn.Conv2d, nn.Linear)):
        overrun = False
        for dep, idxs in group:
            n = _channels(dg, dep.target.module, dep.handler)
            overrun |= n is not None and bool(idxs) and max(idxs) >= n
        if overrun:
            fixed += [dep.target.module for dep, _ in group if dg.is_out_channel_pruning_fn(dep.handler)]
            n_fixed += 1
    return fixed, n_fixed


def _accumulate_gradients(method: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device) -> int:
    """``dL/dw`` of the cross-entropy of the headline logits, summed over ``batches`` (eval mode); images seen."""
    method.zero_grad(set_to_none=True)
    seen = 0
    with torch.enable_grad():
        for images, targets in batches:
            images, targets = images.to(device), targets.to(device)
            F.cross_entropy(method.infer(images).prediction.float(), targets, reduction="sum").backward()
            seen += len(targets)
    if not seen:
        raise PruningError("--importance taylor needs training images for its gradients, and the train split is empty")
    return seen


def prune_method(method: nn.Module, example: Tensor, amount: float, importance: str = "l1",
                 batches: Iterable[tuple[Tensor, Tensor]] | None = None, name: str = "method") -> PruneSummary:
    """Prune ``method`` in place (see the module docstring): ``amount`` of the channels of every prunable group of
    its backbone(s), ranked by ``importance`` (``taylor`` needs ``batches`` of ``(images, targets)``). ``example``:
    an input batch (``1, 3, H, W`` on the method's device) to trace with. The method's logits keep their shape; the
    record of narrowed layers is kept on the method (:func:`fgvc.engine.pruned_arch.pruned_layers`)."""
    tp = require("torch_pruning", "torch-pruning", "structured pruning", extra="deploy")
    if not 0.0 < amount < 1.0:
        raise PruningError(f"--amount {amount}: the fraction of channels to remove must be in (0, 1), e.g. 0.3")
    check_prunable(method, name)
    scorer = _importance(tp, importance)
    was_training = method.training
    method.eval()
    with torch.no_grad():
        reference = method.infer(example)
    before = layer_attributes(method)
    if importance == "taylor":
        seen = _accumulate_gradients(method, batches or [], example.device)
        log.info(f"taylor importance: gradients of the cross-entropy over {seen} training images")
    summary = PruneSummary(amount, importance)
    for backbone in backbones_of(method):
        tap = _Tap(backbone).to(example.device)
        dg = tp.DependencyGraph().build_dependency(tap, example_inputs=example)
        fixed, n_fixed = _fixed_layers(tp, dg, tap)
        groups = list(dg.get_all_groups(ignored_layers=fixed, root_module_types=(nn.Conv2d, nn.Linear)))
        roots = [(g[0].dep.target.module, g[0].dep.handler) for g in groups]
        widths = [_channels(dg, m, h) or 0 for m, h in roots]
        pruner = tp.pruner.BasePruner(tap, example, importance=scorer, pruning_ratio=amount, global_pruning=False,
                                      ignored_layers=fixed, root_module_types=[nn.Conv2d, nn.Linear])
        pruner.step()
        after = [_channels(dg, m, h) or 0 for m, h in roots]
        summary.groups_pruned += sum(a < b for a, b in zip(after, widths))
        summary.groups_fixed += n_fixed
        summary.channels_before += sum(widths)
        summary.channels_after += sum(after)
        if backbone(example).shape[1] != backbone.num_features:  # the guarantee every method relies on
            raise RuntimeError(f"pruning changed the output width of backbone {backbone.name}")
    method.zero_grad(set_to_none=True)
    if summary.groups_pruned == 0:
        raise PruningError(f"no channel of model.name={name} can be removed at --amount {amount}: every channel group "
                           "of its backbone reaches the feature map the method reads, or is too narrow to lose a "
                           "channel; try a larger --amount or a deeper backbone")
    summary.layers = record_changes(before, method)
    with torch.no_grad():
        out = method.infer(example)
    if {k: v.shape for k, v in out.logits.items()} != {k: v.shape for k, v in reference.logits.items()}:
        raise RuntimeError("pruning changed the shape of the method's logits")
    method.train(was_training)
    return summary
