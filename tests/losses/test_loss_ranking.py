"""RA-CNN pairwise ranking loss."""
import math

import torch

from fgvc.losses.ranking import RankingLoss, true_class_prob
from fgvc.registry import LOSSES


def _logits_with_prob(p: float, k: int = 4, target: int = 0) -> torch.Tensor:
    """Logits (1, K) whose softmax gives ``p`` to ``target`` and the rest uniform."""
    rest = (1 - p) / (k - 1)
    logits = torch.full((1, k), math.log(rest))
    logits[0, target] = math.log(p)
    return logits


def test_ranking_zero_when_finer_more_confident_by_margin():
    loss_fn = RankingLoss(margin=0.05)
    y = torch.tensor([0])
    coarse, fine = _logits_with_prob(0.5), _logits_with_prob(0.6)
    assert loss_fn([coarse, fine], y).item() == 0.0


def test_ranking_positive_otherwise():
    loss_fn = RankingLoss(margin=0.05)
    y = torch.tensor([0])
    coarse, fine = _logits_with_prob(0.6), _logits_with_prob(0.5)
    torch.testing.assert_close(loss_fn([coarse, fine], y), torch.tensor(0.15), atol=1e-5, rtol=1e-5)
    # within the margin: still penalised
    torch.testing.assert_close(loss_fn([_logits_with_prob(0.5), _logits_with_prob(0.52)], y),
                               torch.tensor(0.03), atol=1e-5, rtol=1e-5)


def test_ranking_three_scales_sums_pairs_and_has_grad():
    y = torch.tensor([0, 0])
    l1 = torch.cat([_logits_with_prob(0.7)] * 2).requires_grad_()
    l2 = torch.cat([_logits_with_prob(0.6)] * 2).requires_grad_()
    l3 = torch.cat([_logits_with_prob(0.9)] * 2).requires_grad_()
    loss = LOSSES.build("ranking")([l1, l2, l3], y)
    torch.testing.assert_close(loss, torch.tensor(0.15), atol=1e-5, rtol=1e-5)  # (0.7-0.6+0.05) + 0
    loss.backward()
    assert l1.grad.abs().sum() > 0 and l2.grad.abs().sum() > 0


def test_true_class_prob_soft_targets():
    logits = _logits_with_prob(0.4, k=4, target=2)
    soft = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    torch.testing.assert_close(true_class_prob(logits, soft), true_class_prob(logits, torch.tensor([2])))
