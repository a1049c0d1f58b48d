"""Batch-hard triplet loss."""
import torch
import torch.nn.functional as F

from fgvc.losses.triplet import TripletLoss, semi_hard_negatives
from fgvc.registry import LOSSES


def test_triplet_zero_on_separated_clusters():
    torch.manual_seed(0)
    centers = torch.eye(3) * 10
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    feats = centers[y] + 0.01 * torch.randn(6, 3)
    assert TripletLoss(margin=0.3, normalize=False)(feats, y).item() == 0.0
    assert TripletLoss(margin=0.3, normalize=True)(feats, y).item() == 0.0


def test_triplet_matches_brute_force_and_has_grad():
    torch.manual_seed(1)
    feats = torch.randn(6, 5, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 1, 2])  # sample 5 has no positive
    loss = TripletLoss(margin=0.3, normalize=True)(feats, y)
    x = F.normalize(feats.detach(), dim=1)
    d = torch.cdist(x, x)
    terms = []
    for a in range(6):
        pos = [p for p in range(6) if p != a and y[p] == y[a]]
        neg = [n for n in range(6) if y[n] != y[a]]
        if pos and neg:
            terms.append(F.relu(max(d[a, p] for p in pos) - min(d[a, n] for n in neg) + 0.3))
    torch.testing.assert_close(loss.detach(), torch.stack(terms).mean(), atol=1e-5, rtol=1e-4)
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


def test_triplet_no_valid_triplet_is_zero_with_grad():
    feats = torch.randn(3, 4, requires_grad=True)
    loss = LOSSES.build("triplet", margin=0.2)(feats, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(feats.grad, torch.zeros_like(feats))


def test_semi_hard_mining_picks_the_right_negatives():
    # 1-D points: class 0 at 0 and 1, class 1 at 0.5 and 1.25, class 2 at 3 (alone: never an anchor of a pair)
    x = torch.tensor([[0.0], [1.0], [0.5], [1.25], [3.0]])
    y = torch.tensor([0, 0, 1, 1, 2])
    idx = semi_hard_negatives(torch.cdist(x, x), y)
    # (0 -> 1), d = 1: negatives farther than 1 are 1.25 (#3) and 3 (#4): the closest is #3 (0.5 at 0.5 is harder)
    # (1 -> 0), d = 1: from 1 the negatives are 0.5, 0.25, 2 away: only #4 is farther
    # (2 -> 3), d = 0.75: from 0.5 the negatives are 0.5, 0.5, 2.5 away: only #4 is farther
    # (3 -> 2), d = 0.75: from 1.25 the negatives are 1.25 (#0), 0.25 (#1), 1.75 (#4) away: #0 is the closest farther
    want = torch.full((5, 5), -1)
    want[0, 1], want[1, 0], want[2, 3], want[3, 2] = 3, 4, 4, 0
    assert torch.equal(idx, want)
    # no negative farther than the positive: the farthest negative (TensorFlow's convention)
    far = torch.tensor([[0.0], [5.0], [1.0], [2.0]])
    idx = semi_hard_negatives(torch.cdist(far, far), torch.tensor([0, 0, 1, 1]))
    assert idx[0, 1] == 3 and idx[1, 0] == 2


def test_semi_hard_loss_is_the_mean_over_positive_pairs():
    x = torch.tensor([[0.0], [1.0], [0.5], [1.25], [3.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2])
    loss = TripletLoss(margin=0.5, normalize=False, mining="semi_hard")(x, y)
    # pairs: (0,1) 1 - 1.25 + .5 = .25; (1,0) 1 - 2 + .5 -> 0; (2,3) .75 - 2.5 + .5 -> 0; (3,2) .75 - 1.25 + .5 = 0
    torch.testing.assert_close(loss.detach(), torch.tensor(0.25 / 4))
    loss.backward()
    assert x.grad.abs().sum() > 0
    batch_hard = TripletLoss(margin=0.5, normalize=False)(x.detach(), y)
    assert batch_hard > loss  # batch-hard takes the hardest negative (#2 for anchor 0)


def test_unknown_mining_is_refused():
    import pytest

    from fgvc.errors import ConfigError

    with pytest.raises(ConfigError, match=r"mining must be one of \['batch_hard', 'semi_hard'\]"):
        TripletLoss(mining="hardest")
