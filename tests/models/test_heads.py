"""Classification heads: linear, cosine, ArcFace (Deng et al. 2019) and CosFace (Wang et al. 2018) logits against
their formulas on tiny tensors; margins only in training with labels; the factory's errors. And ``model.args.head`` on
every single-view method: each head trains one step (margins in training only), infer keeps its meaning (plain
scaled-cosine logits, the same embedding), checkpoints round-trip; bad head keys are refused."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fgvc.errors import ConfigError, RegistryError
from fgvc.methods import build_method
from fgvc.models.heads import HEADS, ArcFaceHead, CosFaceHead, CosineHead, LinearHead, create_head


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


# --- every head on the methods that take one (model.args.head) ---

CNN, K = "test_resnet.r160_in1k", 3
SINGLE_VIEW = {"baseline": {}, "bcnn": {"reduce_dim": 8}, "senet": {}, "cbam": {}}
WITH_HEAD = {**SINGLE_VIEW, "wsdan": {"num_attentions": 4}}  # WS-DAN: one head on its part features, three views
HEAD_ARGS = {"linear": None, "cosine": {"s": 16.0}, "arcface": {"s": 16.0, "m": 0.3}, "cosface": {"s": 16.0, "m": 0.2}}


def _build(name: str, head: str, **extra):
    torch.manual_seed(0)
    args = {**WITH_HEAD[name], "head": head, **({"head_args": HEAD_ARGS[head]} if HEAD_ARGS[head] else {}), **extra}
    return build_method({"name": name, "backbone": CNN, "pretrained": False, "args": args}, K)


def test_every_head_is_covered():
    assert set(HEADS.names()) == set(HEAD_ARGS)


@pytest.mark.parametrize("head", sorted(HEAD_ARGS))
@pytest.mark.parametrize("name", sorted(WITH_HEAD))
def test_each_head_trains_one_step(name, head):
    m = _build(name, head).train()
    stage = "finetune" if name == "bcnn" else "main"
    m.set_stage(stage)
    opt = torch.optim.SGD([p for g in m.optimizer_groups(stage, 0.1) for p in g["params"]], lr=0.1)
    before = m.fc.weight.detach().clone()
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    out = m.training_step(x, y)
    assert out["logits"].shape == (4, K) and torch.isfinite(out["loss"])
    out["loss"].backward()
    opt.step()
    assert not torch.equal(before, m.fc.weight)


@pytest.mark.parametrize("name", sorted(SINGLE_VIEW))
def test_infer_gives_plain_cosine_logits_and_the_same_embedding(name):
    m = _build(name, "arcface", drop_rate=0.0).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = m.infer(x)
        cos = F.normalize(out.embedding, dim=1) @ F.normalize(m.fc.weight, dim=1).t()  # B, K
    torch.testing.assert_close(out.logits["logits"], 16.0 * cos)
    assert out.headline == "logits" and out.embedding.shape[0] == 2


def test_training_step_hands_the_labels_to_the_head():
    m = _build("baseline", "cosface").train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 2])
    with torch.no_grad():
        trained = m.training_step(x, y)["logits"]
        feats = m.backbone.forward_pooled(x)[1]  # train-mode BN: the same batch statistics
        plain = m.fc(feats)  # no labels: no margin
    torch.testing.assert_close(trained, plain - F.one_hot(y, K) * 16.0 * 0.2)


@pytest.mark.parametrize("name", sorted(SINGLE_VIEW))
def test_head_checkpoint_round_trip(name):
    m = _build(name, "arcface").eval()
    fresh = _build(name, "arcface")
    torch.nn.init.zeros_(fresh.fc.weight)
    fresh.load_state_dict(m.state_dict())
    fresh.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m.infer(x).logits["logits"], fresh.infer(x).logits["logits"])


def test_bad_head_keys_are_refused_with_the_key():
    with pytest.raises(RegistryError, match=r"model.args.head: unknown head 'cosin' \(did you mean 'cosine'"):
        build_method({"name": "baseline", "backbone": CNN, "args": {"head": "cosin"}}, K)
    with pytest.raises(RegistryError, match=r"head 'arcface' takes no argument 'margin' in model.args.head_args"):
        build_method({"name": "cbam", "backbone": CNN, "args": {"head": "arcface", "head_args": {"margin": 0.5}}}, K)
    with pytest.raises(RegistryError, match="did you mean 'head_args'"):
        build_method({"name": "bcnn", "backbone": CNN, "args": {"head": "cosine", "head_arg": {"s": 10}}}, K)
    with pytest.raises(ConfigError, match="head_args.m"):
        build_method({"name": "senet", "backbone": CNN, "args": {"head": "cosface", "head_args": {"m": -1.0}}}, K)
