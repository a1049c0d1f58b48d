"""model.args.head on every single-view method: each head trains one step (margins in training only), infer keeps
its meaning (plain scaled-cosine logits, the same embedding), checkpoints round-trip; bad head keys are refused."""
import pytest
import torch
import torch.nn.functional as F

from fgvc.errors import ConfigError, RegistryError
from fgvc.methods import build_method
from fgvc.models.heads import HEADS

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
