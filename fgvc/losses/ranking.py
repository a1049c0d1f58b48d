"""Pairwise ranking loss of RA-CNN (Fu, Zheng & Mei 2017, "Look Closer to See Better: Recurrent
Attention Convolutional Neural Network for Fine-grained Image Recognition", CVPR 2017).

For adjacent scales ``s`` and ``s+1``: ``max(0, p_t^(s) - p_t^(s+1) + margin)`` with ``p_t`` the
softmax probability of the true class, so a finer scale is pushed to be more confident than
the coarser one by ``margin``. API: ``forward(logits: list of B, K per scale (coarse to fine),
targets: B or soft B, K) -> scalar`` (hinge averaged over the batch and summed over the
``len(logits) - 1`` scale pairs). With soft targets (Mixup) ``p_t = sum_k q_k p_k``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.registry import LOSSES

__all__ = ["RankingLoss", "true_class_prob", "pairwise_ranking_loss"]


def true_class_prob(logits: Tensor, targets: Tensor) -> Tensor:
    """``logits: B, K`` -> softmax probability of the target class ``B``."""
    probs = F.softmax(logits.float(), dim=1)
    if targets.ndim == 2:
        return (probs * targets.float()).sum(1)
    return probs.gather(1, targets[:, None].long()).squeeze(1)


def pairwise_ranking_loss(p_coarse: Tensor, p_fine: Tensor, margin: float = 0.05) -> Tensor:
    """``mean_b max(0, p_coarse - p_fine + margin)`` for true-class probabilities ``B``."""
    return F.relu(p_coarse - p_fine + margin).mean()


@LOSSES.register("ranking")
class RankingLoss(nn.Module):
    def __init__(self, margin: float = 0.05) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, logits: Sequence[Tensor], targets: Tensor) -> Tensor:
        if len(logits) < 2:
            raise ValueError("the ranking loss needs the logits of at least two scales")
        probs = [true_class_prob(lg, targets) for lg in logits]  # each B
        loss = torch.zeros((), device=probs[0].device)
        for coarse, fine in zip(probs[:-1], probs[1:]):
            loss = loss + pairwise_ranking_loss(coarse, fine, self.margin)
        return loss
