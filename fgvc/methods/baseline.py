"""Plain fine-tuning: a timm backbone, global average pooling, dropout and a linear classifier.

The strong baseline of fine-grained recognition: with 448 px crops, SGD, warmup + cosine and
label smoothing, a ResNet-50 fine-tune reaches 86-86.7 % top-1 on CUB-200-2011
(e.g. Wightman et al. 2021, "ResNet strikes back", and the FGVC baselines of Zhuang et al. 2020).
Optional feature losses (center, triplet) act on the pooled embedding. On a vision transformer the
embedding is the class token (the backbone's own pooling) instead of the mean of the map.
"""
from __future__ import annotations

from torch import Tensor, nn

from fgvc.methods.base import Method, MethodSetup, Outputs
from fgvc.registry import METHODS


@METHODS.register("baseline")
class Baseline(Method):
    def __init__(self, setup: MethodSetup, drop_rate: float = 0.0) -> None:
        super().__init__(setup)
        self.backbone = setup.backbone.build()
        dim = self.backbone.num_features
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(dim, setup.num_classes)
        self.add_feature_losses(dim)

    def infer(self, images: Tensor) -> Outputs:
        fmap, emb = self.backbone.forward_pooled(images)  # B, C, h, w ; B, C
        return Outputs({"logits": self.fc(self.dropout(emb))}, "logits", emb, fmap)

    def training_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        feats = self.backbone.forward_pooled(images)[1]  # B, C
        logits = self.fc(self.dropout(feats))  # B, K
        return self.classification_step(feats, logits, targets)
