"""Center loss (Wen, Zhang, Li & Qiao 2016, "A Discriminative Feature Learning Approach for Deep
Face Recognition", ECCV 2016).

``L = 1/B * sum_i ||f_i - c_{y_i}||^2 / 2`` with one learnable center per class. The paper updates
the centers with its own rate ``alpha``; here they are an ``nn.Parameter`` trained by the optimizer
with the rest of the model (the alpha-free variant: the gradient of ``L`` w.r.t. ``c_j`` is the
paper's update direction up to the per-class count normalisation).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from fgvc.registry import LOSSES

__all__ = ["CenterLoss"]


@LOSSES.register("center")
class CenterLoss(nn.Module):
    """``forward(feats: B, D, targets: B or B, K) -> scalar``; soft targets use their argmax class."""

    inputs: ClassVar[str] = "features"

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))  # K, D

    def forward(self, feats: Tensor, targets: Tensor) -> Tensor:
        if targets.ndim == 2:
            targets = targets.argmax(1)
        centers = self.centers[targets].to(feats.dtype)  # B, D
        return (feats - centers).pow(2).sum(1).mean() / 2
