"""Plain fine-tuning: a timm backbone, global average pooling, dropout and a classifier (linear by default).

The strong baseline of fine-grained recognition: with 448 px crops, SGD, warmup + cosine and
label smoothing, a ResNet-50 fine-tune reaches 86-86.7 % top-1 on CUB-200-2011
(e.g. Wightman et al. 2021, "ResNet strikes back", and the FGVC baselines of Zhuang et al. 2020).
Optional feature losses (``loss.aux``: center, triplet, multi-similarity, proxy-anchor) act on the pooled
embedding. On a vision transformer the embedding is the class token (the backbone's own pooling) instead of
the mean of the map.

``head`` (``linear | cosine | arcface | cosface``) and ``head_args`` (e.g. ``{s: 30, m: 0.5}``) choose the
classifier on the embedding (:mod:`fgvc.models.heads`): margins act in the training step only, where the
head gets the labels; ``infer`` returns plain (scaled cosine) logits and the same embedding either way.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from fgvc.methods.base import Method, MethodSetup, Outputs, hard_labels
from fgvc.models.heads import create_head
from fgvc.registry import METHODS


@METHODS.register("baseline")
class Baseline(Method):
    embedding_head = "fc"  # fgvc.extend imprints new classes here

    def __init__(self, setup: MethodSetup, drop_rate: float = 0.0, head: str = "linear",
                 head_args: dict[str, Any] | None = None) -> None:
        super().__init__(setup)
        self.backbone = setup.backbone.build()
        dim = self.backbone.num_features
        self.dropout = nn.Dropout(drop_rate)
        self.fc = create_head(head, dim, setup.num_classes, head_args)  # B, C -> B, K
        self.add_feature_losses(dim)

    def infer(self, images: Tensor) -> Outputs:
        fmap, emb = self.backbone.forward_pooled(images)  # B, C, h, w ; B, C
        return Outputs({"logits": self.fc(self.dropout(emb))}, "logits", emb, fmap)

    def training_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        feats = self.backbone.forward_pooled(images)[1]  # B, C
        logits = self.fc(self.dropout(feats), hard_labels(targets))  # B, K (with the margin of a margin head)
        return self.classification_step(feats, logits, targets)
