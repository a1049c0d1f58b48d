"""The Method contract, for every registered method x {tiny CNN, tiny ViT}: ``infer`` fields and shapes, one
training step per stage, and a checkpoint round-trip that reproduces ``infer``. CBAM/SE refuse a transformer."""
from __future__ import annotations

import pytest
import torch

from fgvc.engine.checkpoint import load_checkpoint, save_checkpoint
from fgvc.errors import ConfigError
from fgvc.methods import METHODS, Method, Outputs, build_method

CNN, VIT = "test_resnet.r160_in1k", "test_vit"
K = 3
SMALL_ARGS = {
    "baseline": {},
    "wsdan": {"num_attentions": 2},
    "bcnn": {"reduce_dim": 8},
    "racnn": {"share_backbone": True, "apn_hidden": 16, "apn_channels": 4, "apn_grid": 2},
    "senet": {},
    "cbam": {},
    "simclr": {"proj_dim": 8},
}
HAS_MAPS = {"wsdan", "racnn", "cbam"}  # part maps in Outputs.maps
HAS_BOXES = {"wsdan", "racnn"}  # an object box in Outputs.boxes
CNN_ONLY = {"senet", "cbam"}
CASES = [(name, bb) for name in sorted(SMALL_ARGS) for bb in (CNN, VIT)]


def _train_images(name: str) -> torch.Tensor:
    """A training batch: SimCLR trains on two views per image stacked along the height (B, 3, 2S, S)."""
    return torch.randn(4, 3, 128, 64) if name == "simclr" else torch.randn(4, 3, 64, 64)


def _build(name: str, backbone: str) -> Method:
    torch.manual_seed(0)
    return build_method({"name": name, "backbone": backbone, "pretrained": False, "args": SMALL_ARGS[name]}, K,
                        feature_losses=[{"name": "center", "weight": 0.01}])


def test_every_registered_method_is_covered():
    assert set(METHODS.names()) == set(SMALL_ARGS)


@pytest.mark.parametrize("name", sorted(CNN_ONLY))
def test_cbam_and_se_refuse_a_transformer(name):
    with pytest.raises(ConfigError, match=r"(CBAM|SE \(squeeze).*'test_vit' is a vision transformer"):
        _build(name, VIT)


@pytest.mark.parametrize("name,backbone", [c for c in CASES if not (c[0] in CNN_ONLY and c[1] == VIT)])
def test_infer_fields_and_shapes(name, backbone):
    m = _build(name, backbone).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = m.infer(x)
        assert isinstance(out, Outputs) and out.headline in out.logits
        assert all(v.shape == (2, K) for v in out.logits.values())
        assert out.embedding.ndim == 2 and out.embedding.shape[0] == 2
        assert out.feature_map.ndim == 4 and out.feature_map.shape[:2] == (2, m.backbone.num_features)
        assert (out.maps is not None) == (name in HAS_MAPS)
        if out.maps is not None:
            assert out.maps.ndim == 4 and out.maps.shape[0] == 2
        assert (out.boxes is not None) == (name in HAS_BOXES)
        if out.boxes is not None:
            assert out.boxes.shape == (2, 4)
            x1, y1, x2, y2 = out.boxes.unbind(1)
            assert bool((0 <= x1).all() and (x1 < x2).all() and (x2 <= 64).all() and (0 <= y1).all()
                        and (y1 < y2).all() and (y2 <= 64).all())
        torch.testing.assert_close(m.predict(x), out.prediction)  # the views agree with infer
        torch.testing.assert_close(m.embed(x), out.embedding)


@pytest.mark.parametrize("name,backbone", [c for c in CASES if not (c[0] in CNN_ONLY and c[1] == VIT)])
def test_one_training_step_per_stage(name, backbone):
    m = _build(name, backbone).train()
    x, y = _train_images(name), torch.tensor([0, 1, 2, 0])
    for stage in m.stages():
        m.set_stage(stage)
        params = [p for g in m.param_groups(stage, 0.1) for p in g["params"]]
        before = [p.detach().clone() for p in params]
        opt = torch.optim.SGD(params, lr=0.1)
        out = m.training_step(x, y)
        assert out["logits"].shape == (4, K) and torch.isfinite(out["loss"])
        if stage == "main":  # the recipe's loss.aux reaches every method
            assert "center" in out
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        assert any(not torch.equal(a, p) for a, p in zip(before, params)), f"{name} stage {stage} trained nothing"


@pytest.mark.parametrize("name,backbone", [c for c in CASES if not (c[0] in CNN_ONLY and c[1] == VIT)])
def test_checkpoint_round_trip_reproduces_infer(name, backbone, tmp_path):
    m = _build(name, backbone)
    m.train()
    m.set_stage("main")
    m.training_step(_train_images(name), torch.tensor([0, 1, 2, 0]))  # move BN stats and WS-DAN centers
    m.eval()
    save_checkpoint({"model": m.state_dict(), "extra": m.extra_state()}, tmp_path / "m.pt")
    state = load_checkpoint(tmp_path / "m.pt")
    fresh = _build(name, backbone)
    fresh.load_state_dict(state["model"])
    fresh.load_extra_state(state["extra"])
    fresh.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = m.infer(x), fresh.infer(x)
    for key in a.logits:
        torch.testing.assert_close(a.logits[key], b.logits[key])
    torch.testing.assert_close(a.embedding, b.embedding)
