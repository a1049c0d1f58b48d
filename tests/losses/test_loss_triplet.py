"""Batch-hard triplet loss."""
import torch
import torch.nn.functional as F

from fgvc.losses.triplet import TripletLoss
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
