"""The architecture of a structurally pruned method, stored in its checkpoint and rebuilt on load.

Structured pruning (``fgvc.prune``: torch-pruning's DepGraph, Fang et al. 2023, "DepGraph: Towards Any Structural
Pruning") narrows layers: a pruned convolution has fewer output channels, its BatchNorm fewer features, the next
convolution fewer input channels. The recipe alone then no longer describes the model, so the checkpoint says what
changed, and loading rebuilds the recipe's method and narrows it to match before the weights go in:

* ``record_changes(before, method)``: per module (by its name in the method), the integer attributes that pruning
  changed (``out_channels``, ``in_channels``, ``groups``, ``num_features``, ``in_features``, ``normalized_shape``
  ...), compared against a snapshot taken before pruning (:func:`layer_attributes`). The record is kept on the method
  (:func:`pruned_layers`) and saved by the trainer as the checkpoint's ``pruned`` entry: plain ints, lists and
  strings, so checkpoints still load with ``weights_only=True``. (torch-pruning's own ``tp.state_dict`` pickles each
  module's ``__dict__``, hooks and submodules included, which a ``weights_only`` load refuses.)
* ``reshape_like(state, *methods)``: for a checkpoint with a ``pruned`` entry, set those attributes and replace every
  parameter and buffer whose shape differs from ``state["model"]`` by an uninitialised tensor of the checkpoint's
  shape (same device, dtype and memory format), so that ``load_state_dict`` (strict) then fills it. A checkpoint
  without the entry is left alone. :class:`fgvc.engine.inference.TrainedRun` calls it on load and the trainer on
  ``--resume``.

Shapes come from the weights themselves and attributes from the record, so any module type torch-pruning narrows
(timm's ``BatchNormAct2d``, depthwise convolutions whose ``groups`` shrink with their channels, ...) is rebuilt
without a per-type rule.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

__all__ = ["PRUNED_ATTR", "layer_attributes", "record_changes", "pruned_layers", "reshape_like", "apply_pruned"]

PRUNED_ATTR = "pruned_layers"  # the record, kept on the method object (not a parameter, buffer or recipe key)

Attributes = dict[str, dict[str, Any]]  # module name -> {attribute: int or list of ints}


def _is_size(value: Any) -> bool:
    """An integer attribute (not a bool) or a tuple/list of them: what pruning narrows."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, (tuple, list)) and bool(value) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


def layer_attributes(method: nn.Module) -> Attributes:
    """Every module's public integer attributes (and tuples of them): the snapshot :func:`record_changes` compares."""
    return {name: {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(m).items()
                   if not k.startswith("_") and _is_size(v)}
            for name, m in method.named_modules()}


def record_changes(before: Attributes, method: nn.Module) -> Attributes:
    """The attributes of ``method`` that differ from ``before`` (a :func:`layer_attributes` snapshot), per module;
    also kept on ``method`` (:func:`pruned_layers`)."""
    after = layer_attributes(method)
    changed: Attributes = {}
    for name, attrs in after.items():
        old = before.get(name, {})
        diff = {k: v for k, v in attrs.items() if old.get(k) != v}
        if diff:
            changed[name] = diff
    setattr(method, PRUNED_ATTR, changed)
    return changed


def pruned_layers(method: nn.Module) -> Attributes | None:
    """The pruning record of ``method`` (what its checkpoint stores under ``pruned``), or None for an unpruned one."""
    return getattr(method, PRUNED_ATTR, None)


def _replacement(old: Tensor, shape: torch.Size) -> Tensor:
    new = torch.empty(shape, dtype=old.dtype, device=old.device)
    if old.ndim == 4 and not old.is_contiguous() and old.is_contiguous(memory_format=torch.channels_last):
        new = new.contiguous(memory_format=torch.channels_last)  # the trainer's channels-last layout
    return new


def apply_pruned(method: nn.Module, layers: Attributes, weights: Mapping[str, Tensor]) -> None:
    """Narrow ``method`` (built from the recipe) to the pruned architecture: ``layers`` (the record) for the
    attributes, ``weights`` (a state dict of the pruned method) for every parameter's and buffer's shape."""
    for name, attrs in layers.items():
        module = method.get_submodule(name)
        for key, value in attrs.items():
            setattr(module, key, tuple(value) if isinstance(getattr(module, key, None), tuple) else value)
    for key, value in weights.items():
        owner_name, _, leaf = key.rpartition(".")
        owner = method.get_submodule(owner_name)
        if leaf in owner._parameters and owner._parameters[leaf] is not None:
            old = owner._parameters[leaf]
            if old.shape != value.shape:
                owner._parameters[leaf] = nn.Parameter(_replacement(old, value.shape), requires_grad=old.requires_grad)
        elif leaf in owner._buffers and owner._buffers[leaf] is not None:
            old = owner._buffers[leaf]
            if old.shape != value.shape:
                owner._buffers[leaf] = _replacement(old, value.shape)
    setattr(method, PRUNED_ATTR, dict(layers))


def reshape_like(state: Mapping[str, Any], *methods: nn.Module | None) -> None:
    """Give each of ``methods`` (None entries skipped: e.g. a trainer without EMA) the architecture of the checkpoint
    ``state`` when it holds a pruned method (its ``pruned`` entry); otherwise do nothing."""
    layers = state.get("pruned")
    if not layers:
        return
    for method in methods:
        if method is not None:
            apply_pruned(method, layers, state["model"])
