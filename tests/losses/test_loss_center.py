"""Center loss: value, gradients to features and centers, aux-loss construction."""
import torch

from fgvc.losses import build_aux_losses
from fgvc.losses.center import CenterLoss
from fgvc.registry import LOSSES


def test_center_loss_value_and_grads():
    torch.manual_seed(0)
    loss_fn = CenterLoss(num_classes=3, feat_dim=4)
    feats = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 1, 1, 2, 0])
    loss = loss_fn(feats, y)
    ref = sum(((feats[i] - loss_fn.centers[y[i]]) ** 2).sum() for i in range(5)) / 5 / 2
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert feats.grad.abs().sum() > 0 and loss_fn.centers.grad.abs().sum() > 0
    assert torch.isfinite(loss_fn.centers.grad).all()


def test_center_loss_zero_at_centers_and_soft_targets():
    loss_fn = CenterLoss(3, 2)
    y = torch.tensor([2, 0])
    feats = loss_fn.centers.detach()[y]
    assert loss_fn(feats, y).item() == 0.0
    soft = torch.nn.functional.one_hot(y, 3).float() * 0.9 + 0.1 / 3
    assert loss_fn(feats, soft).item() == 0.0


def test_center_loss_registered_and_built_as_aux():
    assert "center" in LOSSES
    aux = build_aux_losses([{"name": "center", "weight": 0.5}], feat_dim=6, num_classes=4)
    assert aux[0].loss.centers.shape == (4, 6) and aux[0].weight == 0.5
    assert aux[0](torch.randn(2, 6), torch.tensor([0, 3])).ndim == 0
