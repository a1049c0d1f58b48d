"""The two seams of a method: it owns its training step, and it answers every inference question in one pass.

WS-DAN trains on three views of a batch, RA-CNN alternates between its classifiers and its attention
proposal networks, B-CNN trains in two stages. The trainer cannot know these, so each method subclasses
:class:`Method` and the trainer does everything else (devices, AMP, accumulation, clipping, EMA,
schedulers, checkpoints, logging, DDP). Everything after training (evaluate, visualize, embed, explain,
export) reads a method through :meth:`Method.infer`, which returns :class:`Outputs`.

Contract (every method):

* ``__init__(setup: MethodSetup, **own_args)``: :class:`MethodSetup` carries what every method gets from
  the recipe (classes, backbone spec, criterion, feature losses); ``own_args`` are ``model.args``.
* ``training_step(images, targets) -> dict``: ``"loss"`` (scalar to backprop) and ``"logits"``
  (``B, K``, used for the train accuracy); any other scalar tensors are logged.
* ``infer(images) -> Outputs``: one call that returns every head's logits (and which one is the
  headline), the embedding, the backbone's feature map and, where the method has them, part maps and
  the object box. ``predict`` and ``embed`` are views of it.
* ``param_groups(stage, backbone_lr_scale) -> list[dict]``: ``{"params": [...], "lr_scale": s}``;
  parameters not listed are frozen for that stage (the trainer reads them through ``optimizer_groups``, which
  gives the ``loss.aux`` parameters their ``lr_scale``). ``stages() -> list[str]``: names ``train.stages`` may use.
* single-view methods take ``head`` / ``head_args`` (:mod:`fgvc.models.heads`) and call their head with the hard
  labels in ``training_step`` (``self.fc(x, hard_labels(targets))``), so margin heads can act there only.
* ``extra_state()`` / ``load_extra_state(d)``: state outside parameters and buffers.
* ``embedding_head``: the name of the attribute holding the one head that classifies ``Outputs.embedding``
  (baseline, B-CNN, CBAM, SE: ``"fc"``), which ``fgvc.extend`` imprints new classes into; None (the default) where
  the classifier reads something else or there are several (WS-DAN, RA-CNN).
* ``penalties``: named callables ``() -> scalar`` added to the training loss after ``training_step`` (and logged
  under their names); empty unless a caller adds one, e.g. ``fgvc.extend``'s EWC penalty. Not part of the state.
* ``freeze_norm``: when set, BatchNorm layers stay in eval mode while the method trains (their running statistics
  are kept and used), e.g. for ``fgvc.extend``'s fine-tune on a few images per class. Off by default.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.losses import build_aux_losses
from fgvc.models.backbone import Backbone, BackboneSpec, is_transformer_name

__all__ = ["Method", "MethodSetup", "Outputs", "OUTPUT_FIELDS", "hard_labels"]

OUTPUT_FIELDS = ("logits", "embedding", "feature_map", "maps", "boxes")


def hard_labels(targets: Tensor) -> Tensor:
    """Class indices ``B`` from targets that are indices already or soft/one-hot ``B, K`` (Mixup, CutMix)."""
    return targets if targets.ndim == 1 else targets.argmax(1)


@dataclass
class Outputs:
    """Everything one inference pass of a method gives, batch-first, on the method's device."""

    logits: dict[str, Tensor]  # every head the method reports, each B, K
    headline: str  # the key of ``logits`` that is scored (final.json's top1)
    embedding: Tensor  # B, D: the descriptor used for retrieval / kNN
    feature_map: Tensor  # B, C, h, w: the backbone's map (NCHW for CNNs and transformers alike)
    maps: Tensor | None = None  # B, M, h, w: part attention, where the method has it
    boxes: Tensor | None = None  # B, 4: the object box (x1, y1, x2, y2 input pixels), where it localises

    def __post_init__(self) -> None:
        if self.headline not in self.logits:
            raise ValueError(f"headline '{self.headline}' is not one of the logits keys {list(self.logits)}")

    @property
    def prediction(self) -> Tensor:
        """The headline logits ``B, K``."""
        return self.logits[self.headline]


@dataclass
class MethodSetup:
    """What every method receives from the recipe; ``build_method`` makes it, the method adds its own args."""

    num_classes: int
    backbone: BackboneSpec
    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    feature_losses: list[dict[str, Any]] = field(default_factory=list)  # loss.aux entries


class Method(nn.Module):
    """Base class. Subclasses set ``self.backbone`` (a :class:`Backbone`) and a head."""

    backbone: Backbone
    refuses_transformers: str | None = None  # why the method needs a CNN backbone, where it does
    embedding_head: ClassVar[str | None] = None  # attribute of the one head that classifies the embedding, if any

    def __init__(self, setup: MethodSetup) -> None:
        super().__init__()
        if self.refuses_transformers and is_transformer_name(setup.backbone.name):
            raise ConfigError(f"{self.refuses_transformers}, but model.backbone '{setup.backbone.name}' is a vision "
                              "transformer (its blocks pass tokens, not CNN stage maps): use a CNN backbone such as "
                              "resnet50, or a method that takes transformers "
                              "(model.name baseline, wsdan, bcnn or racnn)")
        self.num_classes = setup.num_classes
        self.criterion = setup.criterion
        self._feature_losses = list(setup.feature_losses)
        self.aux_losses = nn.ModuleList()
        self.stage = "main"
        self.penalties: dict[str, Callable[[], Tensor]] = {}  # added to the training loss (not saved)
        # set by the trainer (fgvc.engine.builder.part_backward): backpropagates a finished, independent part of the
        # step's loss at once, as the trainer would the whole (AMP scale, accumulation), so that a multi-view step
        # holds one view's graph at a time. None (DDP, distillation, other loops): every part stays in "loss".
        self.backward_part: Callable[[Tensor], None] | None = None
        self.freeze_norm = False  # BatchNorm layers in eval mode during training (not saved)

    def add_feature_losses(self, feat_dim: int) -> None:
        """Build the recipe's ``loss.aux`` feature losses (center, triplet, multi_similarity, proxy_anchor) for
        ``feat_dim``-d features."""
        self.aux_losses = build_aux_losses(self._feature_losses, feat_dim, self.num_classes)

    def forward(self, images: Tensor, targets: Tensor | None = None) -> Any:
        """``training_step`` when targets are given (what DDP wraps), else the headline logits."""
        if targets is None:
            return self.predict(images)
        out = self.training_step(images, targets)
        for name, penalty in self.penalties.items():  # e.g. EWC (fgvc.continual.ewc), on the parameters
            out[name] = penalty()
            out["loss"] = out["loss"] + out[name]
        return out

    def train(self, mode: bool = True) -> "Method":
        super().train(mode)
        if mode and self.freeze_norm:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ---------------------------------------------------------------- training
    def training_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def classification_step(self, feats: Tensor, logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """The common step of single-view classifiers: criterion on ``logits: B, K`` plus every weighted
        feature loss in ``self.aux_losses`` (center, triplet) on ``feats: B, D``."""
        out = {"ce": self.criterion(logits, targets), "logits": logits}
        out["loss"] = out["ce"] + self.feature_loss_terms(feats, targets, out)
        return out

    def feature_loss_terms(self, feats: Tensor, targets: Tensor, log: dict[str, Tensor]) -> Tensor | float:
        """Sum of the weighted feature losses on ``feats: B, D``; each value is also put in ``log`` by name."""
        total: Tensor | float = 0.0
        hard = hard_labels(targets)
        for aux in self.aux_losses:
            log[aux.name] = aux(feats, hard)
            total = total + log[aux.name]
        return total

    # --------------------------------------------------------------- inference
    def infer(self, images: Tensor) -> Outputs:
        raise NotImplementedError

    def predict(self, images: Tensor) -> Tensor:
        """Headline logits ``B, K`` (a view of :meth:`infer`)."""
        return self.infer(images).prediction

    def embed(self, images: Tensor) -> Tensor:
        """Embedding ``B, D`` (a view of :meth:`infer`)."""
        return self.infer(images).embedding

    def data_config(self) -> dict[str, Any]:
        """Input normalisation the pretrained backbone expects (mean, std, interpolation)."""
        return self.backbone.data_config()

    # ------------------------------------------------------------------ stages
    def stages(self) -> list[str]:
        return ["main"]

    def set_stage(self, stage: str) -> None:
        if stage not in self.stages():
            raise ConfigError(
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

    def optimizer_groups(self, stage: str = "main", backbone_lr_scale: float = 1.0) -> list[dict[str, Any]]:
        """What the trainer hands the optimizer: :meth:`param_groups`, with the parameters of every ``loss.aux``
        entry whose ``lr_scale`` is not 1 (e.g. proxy-anchor's proxies at 100) moved to a group of their own,
        ``"loss.<name>"``, at that scale. Parameters the stage leaves out stay out (frozen). The optimizer factory
        (:func:`fgvc.engine.optim.build_stage_optimizer`) splits the ``"backbone"`` group by layer when
        ``train.layer_decay`` is set."""
        groups = self.param_groups(stage, backbone_lr_scale)
        owner = {id(p): i for i, aux in enumerate(self.aux_losses) if aux.lr_scale != 1.0 for p in aux.parameters()}
        if not owner:
            return groups
        out: list[dict[str, Any]] = []
        moved: dict[int, list[nn.Parameter]] = {}  # aux index -> its parameters that the stage trains
        for g in groups:
            for p in g["params"]:
                if id(p) in owner:
                    moved.setdefault(owner[id(p)], []).append(p)
            kept = [p for p in g["params"] if id(p) not in owner]
            if kept:
                out.append(dict(g, params=kept))
        for i, params in sorted(moved.items()):
            aux = self.aux_losses[i]
            out.append({"params": params, "lr_scale": aux.lr_scale, "name": f"loss.{aux.name}"})
        return out

    # ------------------------------------------------------------ extra state
    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None

