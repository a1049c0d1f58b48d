"""Triplet loss with in-batch mining, ``max(0, d(a, p) - d(a, n) + margin)`` (a ``loss.aux`` feature loss).

``mining`` chooses the triplets of a batch (best with a P x K batch, ``data.sampler: pk``):

* ``batch_hard`` (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss for Person Re-Identification",
  arXiv:1703.07737): for each anchor the farthest sample of its class (hardest positive) and the closest sample of
  another class (hardest negative); averaged over the anchors that have both.
* ``semi_hard`` (Schroff, Kalenichenko & Philbin 2015, "FaceNet: A Unified Embedding for Face Recognition and
  Clustering", CVPR, arXiv:1503.03832): for each positive pair ``(a, p)`` the closest negative that is still
  farther from ``a`` than ``p`` is (``d(a, p) < d(a, n)``; it violates the margin when ``d(a, n) < d(a, p) +
  margin``); when no negative is farther than ``p``, the farthest negative (the convention of TensorFlow's
  ``triplet_semihard_loss``). Averaged over the positive pairs whose anchor has a negative.

Distances are Euclidean, on L2-normalised features when ``normalize`` is set, computed in fp32. With no valid
anchor (e.g. every label distinct) the loss is a zero that still carries a graph, so ``backward`` works. Kept
in fgvc rather than taken from pytorch-metric-learning: it needs no optional dependency, and ``semi_hard`` picks
one negative per pair as FaceNet does (PML's semi-hard miner keeps every semi-hard triplet).
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.registry import LOSSES

__all__ = ["TripletLoss", "pairwise_distances", "semi_hard_negatives", "MINING"]

MINING = ("batch_hard", "semi_hard")


def pairwise_distances(x: Tensor) -> Tensor:
    """Euclidean distances ``B, B`` between the rows of ``x: B, D``."""
    sq = (x * x).sum(1)  # B
    d2 = sq[:, None] + sq[None, :] - 2 * x @ x.t()  # B, B squared distances
    return d2.clamp_min(1e-12).sqrt()


def semi_hard_negatives(dist: Tensor, labels: Tensor) -> Tensor:
    """FaceNet's semi-hard negative of every positive pair: ``idx[a, p]`` (``B, B``, long) is the index of the closest
    negative farther from ``a`` than ``p`` is, or of the farthest negative when none is; ``-1`` where ``(a, p)`` is
    not a positive pair (``a != p``, same label) or ``a`` has no negative. ``dist: B, B``, ``labels: B``."""
    same = labels[:, None] == labels[None, :]  # B, B
    eye = torch.eye(len(labels), dtype=torch.bool, device=dist.device)
    neg = ~same
    d_ap = dist[:, :, None]  # B(a), B(p), 1
    d_an = dist[:, None, :]  # B(a), 1, B(n)
    farther = neg[:, None, :] & (d_an > d_ap)  # B, B, B: negatives farther than the positive
    semi = d_an.masked_fill(~farther, float("inf")).argmin(2)  # B, B: the closest of them
    farthest = dist.masked_fill(~neg, float("-inf")).argmax(1, keepdim=True).expand_as(semi)  # B, B
    idx = torch.where(farther.any(2), semi, farthest)
    valid = same & ~eye & neg.any(1, keepdim=True)  # B, B
    return idx.masked_fill(~valid, -1)


@LOSSES.register("triplet")
class TripletLoss(nn.Module):
    """``forward(feats: B, D, targets: B or soft B, K) -> scalar`` (soft targets use their argmax class)."""

    inputs: ClassVar[str] = "features"

    def __init__(self, margin: float = 0.3, normalize: bool = True, mining: str = "batch_hard") -> None:
        super().__init__()
        if margin < 0:
            raise ConfigError(f"triplet margin must be >= 0 (loss.aux args.margin), got {margin}")
        if mining not in MINING:
            raise ConfigError(f"triplet mining must be one of {list(MINING)} (loss.aux args.mining), got {mining!r}")
        self.margin, self.normalize, self.mining = float(margin), bool(normalize), mining

    def forward(self, feats: Tensor, targets: Tensor) -> Tensor:
        if targets.ndim == 2:
            targets = targets.argmax(1)
        x = F.normalize(feats.float(), dim=1) if self.normalize else feats.float()  # B, D
        dist = pairwise_distances(x)  # B, B
        loss = self._batch_hard(dist, targets) if self.mining == "batch_hard" else self._semi_hard(dist, targets)
        return feats.sum() * 0.0 if loss is None else loss.to(feats.dtype)

    def _batch_hard(self, dist: Tensor, targets: Tensor) -> Tensor | None:
        same = targets[:, None] == targets[None, :]  # B, B
        eye = torch.eye(len(targets), dtype=torch.bool, device=dist.device)
        pos, neg = same & ~eye, ~same
        valid = pos.any(1) & neg.any(1)  # B anchors with a positive and a negative
        if not bool(valid.any()):
            return None
        hardest_pos = dist.masked_fill(~pos, float("-inf")).amax(1)  # B
        hardest_neg = dist.masked_fill(~neg, float("inf")).amin(1)  # B
        return F.relu(hardest_pos - hardest_neg + self.margin)[valid].mean()

    def _semi_hard(self, dist: Tensor, targets: Tensor) -> Tensor | None:
        idx = semi_hard_negatives(dist, targets)  # B, B
        pairs = idx >= 0
        if not bool(pairs.any()):
            return None
        d_an = dist.gather(1, idx.clamp_min(0))  # B, B: d(a, n(a, p))
        return F.relu(dist - d_an + self.margin)[pairs].mean()
