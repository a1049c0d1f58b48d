"""Multi-similarity (Wang et al. 2019) and proxy-anchor (Kim et al. 2020) through pytorch-metric-learning: they run
and backprop, the proxies get gradients and reach the optimizer (at the loss.aux entry's lr_scale), and a missing
PML is one clear error."""
import builtins

import pytest
import torch

from fgvc.engine.optim import build_optimizer
from fgvc.errors import ConfigError
from fgvc.losses import build_aux_losses
from fgvc.methods import build_method

pytest.importorskip("pytorch_metric_learning")

Y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])


def test_multi_similarity_runs_and_backprops():
    torch.manual_seed(0)
    (aux,) = build_aux_losses([{"name": "multi_similarity", "weight": 0.5}], 16, 3)
    feats = torch.randn(8, 16, requires_grad=True)
    loss = aux(feats, Y)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    (all_pairs,) = build_aux_losses([{"name": "multi_similarity", "args": {"miner_epsilon": None}}], 16, 3)
    assert all_pairs.loss.miner is None and torch.isfinite(all_pairs(feats.detach(), Y))


def test_proxy_anchor_proxies_get_gradients():
    torch.manual_seed(0)
    (aux,) = build_aux_losses([{"name": "proxy_anchor", "args": {"margin": 0.1, "alpha": 32.0}}], 16, 3)
    assert aux.loss.proxies.shape == (3, 16)  # num_classes and feat_dim are passed by the method
    feats = torch.randn(8, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = aux(feats.bfloat16(), Y)
    assert aux.loss.proxies.dtype == torch.float32  # PML casts its proxies to the features' dtype: fed fp32
    loss.float().backward()
    assert aux.loss.proxies.grad is not None and aux.loss.proxies.grad.abs().sum() > 0
    assert feats.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["baseline", "bcnn", "racnn"])
def test_proxies_are_in_the_optimizer_at_their_lr_scale(name):
    torch.manual_seed(0)
    args = {"bcnn": {"reduce_dim": 8}, "racnn": {"share_backbone": True, "apn_hidden": 8, "apn_channels": 4,
                                                 "apn_grid": 2}}.get(name, {})
    m = build_method({"name": name, "backbone": "test_resnet.r160_in1k", "pretrained": False, "args": args}, 3,
                     feature_losses=[{"name": "proxy_anchor", "lr_scale": 100.0}, {"name": "center"}])
    proxies = m.aux_losses[0].loss.proxies
    stage = {"bcnn": "finetune", "racnn": "cls"}.get(name, "main")
    groups = m.optimizer_groups(stage, 0.1)
    assert [g["name"] for g in groups].count("loss.proxy_anchor") == 1
    opt = build_optimizer(groups, {"weight_decay": 0.0, "optimizer": "sgd", "momentum": 0.0, "nesterov": False}, 0.01)
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(proxies)] == pytest.approx(1.0)  # 100 x lr
    assert lrs[id(m.aux_losses[1].loss.centers)] == pytest.approx(0.01)  # lr_scale 1: stays in the head group
    m.set_stage(stage)
    m.train()
    before = proxies.detach().clone()
    out = m.training_step(torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0]))
    out["loss"].backward()
    assert proxies.grad is not None and proxies.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(before, proxies)
    # a stage that freezes the head leaves the proxies out as well
    if name == "racnn":
        assert not any(p is proxies for g in m.optimizer_groups("apn", 0.1) for p in g["params"])


def test_missing_pml_is_one_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_pml(name, *args, **kwargs):
        if name.startswith("pytorch_metric_learning"):
            raise ImportError("No module named 'pytorch_metric_learning'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pml)
    with pytest.raises(ConfigError, match=r"loss 'proxy_anchor' .* pip install fgvc\[metric\]"):
        build_aux_losses([{"name": "proxy_anchor"}], 8, 3)
    with pytest.raises(ConfigError, match=r"multi_similarity.*pip install fgvc\[metric\]"):
        build_aux_losses([{"name": "multi_similarity"}], 8, 3)


def test_negative_lr_scale_is_refused():
    with pytest.raises(ConfigError, match=r"loss.aux\[0\].lr_scale must be >= 0"):
        build_aux_losses([{"name": "center", "lr_scale": -1.0}], 8, 3)
