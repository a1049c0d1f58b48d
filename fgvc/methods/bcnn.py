"""Symmetric bilinear CNN (Lin, RoyChowdhury & Maji 2015, "Bilinear CNN Models for Fine-grained
Visual Recognition", ICCV 2015, arXiv:1504.07889), optionally with compact bilinear pooling
(Gao et al. 2016, "Compact Bilinear Pooling", CVPR 2016, arXiv:1511.06062).

``features (B, C, h, w) -> [1x1 conv to reduce_dim + BN + ReLU] -> bilinear (B, C*C) or Tensor
Sketch (B, d) pooling -> signed sqrt -> L2 normalise -> dropout -> linear``.

Training follows the paper's two steps, as recipe stages: ``"classifier"`` trains only the new
layers (reduction and classifier) on a frozen backbone, whose BatchNorm layers also stay in eval
mode so their running statistics do not move (the paper's VGG has no BN; freezing the statistics is
what "frozen" means for a BN backbone); ``"finetune"`` (and its alias ``"main"``, for one-stage
recipes) then trains everything with the backbone at ``backbone_lr_scale``. A recipe writes
``train.stages: [{name: classifier, epochs: ...}, {name: finetune, epochs: ...}]``.

The default backbone is ``vgg16`` as in the paper (512 channels, a 262,144-d descriptor); for
2048-channel backbones set ``reduce_dim`` (e.g. 512) or ``pooling: compact``, since the full
bilinear descriptor would be 4.2M-d. timm's ``vgg16`` feature map is taken after the last max-pool
(the paper uses relu5_3, before it): a 2x smaller map, the same descriptor size.

On a vision transformer (ViT, DeiT, EVA, Swin) the "locations" are the patch tokens of the last block after the
final norm, reshaped to ``B, C, h, w`` (``h = H / 16`` for a ViT-B/16): the descriptor is the mean over the ``h x w``
patch tokens of their outer products ``x x^T``, i.e. the second-order statistics of the token features. The class,
distillation and register tokens are not pooled (the backbone sets them aside). ViT-B's 768 channels give a
589,824-d descriptor: ``reduce_dim`` or ``pooling: compact`` keep it small.

``head: linear | cosine | arcface | cosface`` and ``head_args`` choose the classifier on the descriptor
(:mod:`fgvc.models.heads`; the paper's is ``linear``); margins act in the training step only.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.methods.base import Method, MethodSetup, Outputs, hard_labels
from fgvc.models.heads import create_head
from fgvc.models.pooling import create_pooling, signed_sqrt
from fgvc.registry import METHODS

__all__ = ["BCNN"]

SQRT_EPS = 1e-8  # signed sqrt: bounds the gradient at 0 to 1 / (2 sqrt(eps))


@METHODS.register("bcnn")
class BCNN(Method):
    embedding_head = "fc"  # fgvc.extend imprints new classes here

    def __init__(
        self,
        setup: MethodSetup,
        pooling: str = "bilinear",
        compact_dim: int = 8192,
        reduce_dim: int | None = None,
        drop_rate: float = 0.0,
        head: str = "linear",
        head_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(setup)
        self.backbone = setup.backbone.build()
        dim = self.backbone.num_features
        self.reduce: nn.Module = nn.Identity()
        if reduce_dim:
            self.reduce = nn.Sequential(  # B, C, h, w -> B, reduce_dim, h, w
                nn.Conv2d(dim, reduce_dim, 1, bias=False), nn.BatchNorm2d(reduce_dim), nn.ReLU(inplace=True)
            )
            dim = reduce_dim
        self.pool = create_pooling(pooling, dim, compact_dim)
        self.out_dim: int = self.pool.out_dim
        self.dropout = nn.Dropout(drop_rate)
        self.fc = create_head(head, self.out_dim, setup.num_classes, head_args)  # B, D -> B, K
        self.add_feature_losses(self.out_dim)

    # ------------------------------------------------------------------ stages
    def stages(self) -> list[str]:
        return ["classifier", "finetune", "main"]

    def set_stage(self, stage: str) -> None:
        super().set_stage(stage)
        self.train(self.training)  # re-apply the frozen-backbone mode of the new stage

    def train(self, mode: bool = True) -> "BCNN":
        super().train(mode)
        if mode and self.stage == "classifier":
            self.backbone.eval()  # frozen backbone: BN running stats and dropout stay in eval mode
        return self

    def param_groups(self, stage: str = "main", backbone_lr_scale: float = 1.0) -> list[dict[str, Any]]:
        groups = super().param_groups(stage, backbone_lr_scale)  # backbone, head
        if stage == "classifier":
            return [g for g in groups if g["name"] != "backbone"]
        return groups

    # --------------------------------------------------------------- forward
    def descriptor(self, feats: Tensor) -> Tensor:
        """``feats: B, C, h, w`` -> the normalised bilinear descriptor ``B, D``."""
        x = self.pool(self.reduce(feats))  # B, C'^2 or B, d
        return F.normalize(signed_sqrt(x, SQRT_EPS), dim=1)  # B, D

    def infer(self, images: Tensor) -> Outputs:
        feats = self.backbone(images)  # B, C, h, w
        desc = self.descriptor(feats)  # B, D
        return Outputs({"logits": self.fc(self.dropout(desc))}, "logits", desc, feats)

    def training_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        desc = self.descriptor(self.backbone(images))  # B, D
        logits = self.fc(self.dropout(desc), hard_labels(targets))  # B, K (with the margin of a margin head)
        return self.classification_step(desc, logits, targets)
