"""Plain fine-tuning: a timm backbone, global average pooling, dropout and a linear classifier.

The strong baseline of fine-grained recognition: with 448 px crops, SGD, warmup + cosine and
label smoothing, a ResNet-50 fine-tune reaches 86-86.7 % top-1 on CUB-200-2011
(e.g. Wightman et al. 2021, "ResNet strikes back", and the FGVC baselines of Zhuang et al. 2020).
Optional feature losses (center, triplet) act on the pooled embedding.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from fgvc.losses import build_aux_losses
from fgvc.methods.base import Method
from fgvc.models.backbone import Backbone
from fgvc.registry import METHODS


@METHODS.register("baseline")
class Baseline(Method):
    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        pretrained: bool = True,
        pretrained_file: str | None = None,
        criterion: nn.Module | None = None,
        drop_rate: float = 0.0,
        aux_losses: list[dict[str, Any]] | None = None,
        backbone_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(num_classes, criterion)
        self.backbone = Backbone(backbone, pretrained, pretrained_file, **(backbone_args or {}))
        dim = self.backbone.num_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(dim, num_classes)
        self.aux_losses = build_aux_losses(aux_losses, dim, num_classes)

    def embed(self, images: Tensor) -> Tensor:
        return self.pool(self.backbone(images)).flatten(1)  # B, C

    def predict(self, images: Tensor) -> Tensor:
        return self.fc(self.dropout(self.embed(images)))  # B, K

    def training_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        feats = self.embed(images)  # B, C
        logits = self.fc(self.dropout(feats))  # B, K
        return self.classification_step(feats, logits, targets)
