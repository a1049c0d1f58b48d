"""Classification heads: linear, cosine, ArcFace (Deng et al. 2019) and CosFace (Wang et al. 2018) logits against
their formulas on tiny tensors; margins only in training with labels; the factory's errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fgvc.errors import ConfigError, RegistryError
from fgvc.models.heads import ArcFaceHead, CosFaceHead, CosineHead, LinearHead, create_head


def _head(name: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_head(name, 4, 3, kw)


def _cos(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1) @ F.normalize(head.weight.detach(), dim=1).t()  # B, K


X = torch.tensor([[1.0, 0.5, -0.2, 0.3], [-0.4, 0.1, 0.9, -1.0]])
Y = torch.tensor([2, 0])


def test_linear_head_is_nn_linear_and_ignores_labels():
    head = _head("linear")
    assert isinstance(head, LinearHead) and isinstance(head, nn.Linear)
    assert set(head.state_dict()) == {"weight", "bias"}  # the keys of earlier runs' classifiers
    torch.testing.assert_close(head(X, Y), X @ head.weight.t() + head.bias)


def test_cosine_head_is_scaled_cosine_with_or_without_labels():
    head = _head("cosine", s=16.0)
    assert isinstance(head, CosineHead) and set(head.state_dict()) == {"weight"}
    want = 16.0 * _cos(head, X)
    torch.testing.assert_close(head.train()(X, Y), want)
    torch.testing.assert_close(head.eval()(X), want)


def test_arcface_target_logit_is_cos_theta_plus_m():
    s, m = 10.0, 0.5
    head = _head("arcface", s=s, m=m).train()
    cos = _cos(head, X)
    want = s * cos.clone()
    for i, y in enumerate(Y.tolist()):
        theta = math.acos(cos[i, y].item())
        assert theta + m < math.pi  # the formula's range, not the fallback
        want[i, y] = s * math.cos(theta + m)
    torch.testing.assert_close(head(X, Y), want)
    torch.testing.assert_close(head.eval()(X, Y), s * cos)  # eval: no margin even with labels
    torch.testing.assert_close(head.train()(X), s * cos)  # no labels: no margin


def test_arcface_beyond_pi_minus_m_uses_the_monotone_fallback():
    m = 0.5
    head = ArcFaceHead(2, 2, s=1.0, m=m)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[-1.0, 0.05], [0.6, 0.8]])  # sample 0: theta near pi for class 0; sample 1: 53 degrees
    y = torch.tensor([0, 0])
    cos = F.normalize(x, dim=1)[:, 0]
    out = head.train()(x, y)[:, 0]
    assert cos[0] < math.cos(math.pi - m)
    torch.testing.assert_close(out[0], cos[0] - m * math.sin(m))
    torch.testing.assert_close(out[1], torch.cos(torch.acos(cos[1]) + m))
    easy = ArcFaceHead(2, 2, s=1.0, m=m, easy_margin=True)
    easy.load_state_dict(head.state_dict())
    torch.testing.assert_close(easy.train()(x, y)[:, 0], torch.stack([cos[0], torch.cos(torch.acos(cos[1]) + m)]))


def test_cosface_target_logit_is_cos_minus_m():
    s, m = 8.0, 0.35
    head = _head("cosface", s=s, m=m).train()
    assert isinstance(head, CosFaceHead)
    cos = _cos(head, X)
    want = s * cos.clone()
    want[torch.arange(2), Y] = s * (cos[torch.arange(2), Y] - m)
    torch.testing.assert_close(head(X, Y), want)


@pytest.mark.parametrize("name", ["cosine", "arcface", "cosface"])
def test_margin_heads_backprop_and_stay_fp32_under_autocast(name):
    head = _head(name).train()
    x = torch.randn(5, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x, torch.tensor([0, 1, 2, 0, 1]))
    assert logits.dtype == torch.float32
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 0, 1])).backward()
    assert torch.isfinite(x.grad).all() and head.weight.grad.abs().sum() > 0


def test_factory_errors_name_the_key_and_the_fix():
    with pytest.raises(RegistryError, match=r"model.args.head: unknown head 'arcfce' \(did you mean 'arcface'"):
        create_head("arcfce", 4, 3)
    with pytest.raises(RegistryError, match=r"head 'cosine' takes no argument 'm' in model.args.head_args"):
        create_head("cosine", 4, 3, {"m": 0.5})
    with pytest.raises(RegistryError, match=r"takes no argument 's' in model.args.head_args"):
        create_head("linear", 4, 3, {"s": 30.0})
    with pytest.raises(ConfigError, match="head_args.num_classes is set by the method"):
        create_head("arcface", 4, 3, {"num_classes": 5})
    with pytest.raises(ConfigError, match=r"head_args.m .* must be in \[0, pi/2\)"):
        create_head("arcface", 4, 3, {"m": 2.0})
    with pytest.raises(ConfigError, match="head_args.s .* must be > 0"):
        create_head("cosface", 4, 3, {"s": 0.0})
