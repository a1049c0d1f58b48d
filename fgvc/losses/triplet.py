"""Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss for
Person Re-Identification", arXiv:1703.07737).

For each anchor in the batch: the farthest sample of its class (hardest positive) and the
closest sample of another class (hardest negative), ``max(0, d(a, p) - d(a, n) + margin)``,
averaged over anchors that have both. Distances are Euclidean, on L2-normalised features
when ``normalize`` is set. With no valid anchor (e.g. every label distinct) the loss is a zero
that still carries a graph, so ``backward`` works.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.registry import LOSSES

__all__ = ["TripletLoss"]


@LOSSES.register("triplet")
class TripletLoss(nn.Module):
    def __init__(self, margin: float = 0.3, normalize: bool = True) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"triplet margin must be >= 0, got {margin}")
        self.margin, self.normalize = float(margin), bool(normalize)

    def forward(self, feats: Tensor, targets: Tensor) -> Tensor:
        if targets.ndim == 2:
            targets = targets.argmax(1)
        x = F.normalize(feats.float(), dim=1) if self.normalize else feats.float()  # B, D
        sq = (x * x).sum(1)
        d2 = sq[:, None] + sq[None, :] - 2 * x @ x.t()  # B, B squared distances
        dist = d2.clamp_min(1e-12).sqrt()
        same = targets[:, None] == targets[None, :]  # B, B
        eye = torch.eye(len(targets), dtype=torch.bool, device=feats.device)
        pos, neg = same & ~eye, ~same
        valid = pos.any(1) & neg.any(1)  # B
        if not bool(valid.any()):
            return feats.sum() * 0.0
        hardest_pos = dist.masked_fill(~pos, float("-inf")).amax(1)  # B
        hardest_neg = dist.masked_fill(~neg, float("inf")).amin(1)  # B
        loss = F.relu(hardest_pos - hardest_neg + self.margin)[valid]
        return loss.mean().to(feats.dtype)
