"""The seam between a method and the trainer: a method owns its training step.

WS-DAN trains on three views of a batch, RA-CNN alternates between its classifiers and its
attention proposal networks, B-CNN trains in two stages. The trainer cannot know these, so
each method subclasses :class:`Method` and the trainer does everything else (devices, AMP,
accumulation, clipping, EMA, schedulers, checkpoints, logging, DDP).

Contract (every method):

* ``training_step(images, targets) -> dict``: ``"loss"`` (scalar to backprop) and
  ``"logits"`` (``B, K``, used for the train accuracy); any other scalar tensors are logged.
* ``predict(images) -> logits`` (``B, K``): what evaluation scores.
* ``predict_all(images) -> dict[str, logits]``: every prediction the method can report
  (e.g. WS-DAN ``raw`` and ``refined``, RA-CNN ``scale1..3`` and ``fused``); the first
  key is the headline and must equal ``predict``.
* ``embed(images) -> B, D``: features for retrieval / kNN.
* ``param_groups(stage, backbone_lr_scale) -> list[dict]``: ``{"params": [...], "lr_scale": s}``;
  parameters not listed are frozen for that stage.
* ``stages() -> list[str]``: stage names a recipe may use in ``train.stages``.
* ``attention_maps(images) -> B, M, h, w`` or None: what ``fgvc.visualize`` draws.
* ``extra_state()`` / ``load_extra_state(d)``: state outside parameters and buffers.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fgvc.models.backbone import Backbone


class Method(nn.Module):
    """Base class. Subclasses set ``self.backbone`` (a :class:`Backbone`) and a head."""

    backbone: Backbone

    def __init__(self, num_classes: int, criterion: nn.Module | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
        self.stage = "main"

    def forward(self, images: Tensor, targets: Tensor | None = None) -> Any:
        """``training_step`` when targets are given (what DDP wraps), else ``predict``."""
        if targets is None:
            return self.predict(images)
        return self.training_step(images, targets)

    # ---------------------------------------------------------------- training
    def training_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def classification_step(self, feats: Tensor, logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """The common step of single-view classifiers: criterion on ``logits: B, K`` plus every weighted
        feature loss in ``self.aux_losses`` (center, triplet) on ``feats: B, D``."""
        out = {"ce": self.criterion(logits, targets), "logits": logits}
        loss = out["ce"]
        hard = targets if targets.ndim == 1 else targets.argmax(1)
        for aux in getattr(self, "aux_losses", ()):
            out[aux.name] = aux(feats, hard)
            loss = loss + out[aux.name]
        out["loss"] = loss
        return out

    # --------------------------------------------------------------- inference
    def predict(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def predict_all(self, images: Tensor) -> dict[str, Tensor]:
        return {"logits": self.predict(images)}

    def embed(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def attention_maps(self, images: Tensor) -> Tensor | None:
        return None

    def data_config(self) -> dict[str, Any]:
        """Input normalisation the pretrained backbone expects (mean, std, interpolation)."""
        return self.backbone.data_config()

    # ------------------------------------------------------------------ stages
    def stages(self) -> list[str]:
        return ["main"]

    def set_stage(self, stage: str) -> None:
        if stage not in self.stages():
            raise ValueError(
                f"{type(self).__name__} has no training stage '{stage}'; its stages are {self.stages()}"
            )
        self.stage = stage

    def param_groups(self, stage: str = "main", backbone_lr_scale: float = 1.0) -> list[dict[str, Any]]:
        """Default: the backbone at ``backbone_lr_scale`` x lr, every other parameter at 1 x lr."""
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        rest = [p for p in self.parameters() if id(p) not in backbone_ids]
        groups = [{"params": list(self.backbone.parameters()), "lr_scale": backbone_lr_scale, "name": "backbone"}]
        if rest:
            groups.append({"params": rest, "lr_scale": 1.0, "name": "head"})
        return groups

    # ------------------------------------------------------------ extra state
    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None
