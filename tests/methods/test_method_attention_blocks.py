"""SE / CBAM: timm blocks placed in the backbone, their parameter group, CBAM spatial maps."""
import pytest
import timm
import torch
from timm.layers.cbam import CbamModule
from timm.layers.squeeze_excite import SEModule

from fgvc.methods import build_method
from fgvc.methods.attention_blocks import AttnAfter, is_resnet_family

RESNET, EFFNET = "test_resnet.r160_in1k", "test_efficientnet.r160_in1k"


def _model(name: str, backbone: str = RESNET, **kw):
    torch.manual_seed(0)
    return build_method({"name": name, "backbone": backbone, "args": kw}, 3)


def _count(module: torch.nn.Module, kind: type) -> int:
    return sum(type(m) is kind for m in module.modules())


def _n_residual_blocks(backbone: str) -> int:
    model = timm.create_model(backbone, num_classes=0)
    return sum(len(getattr(model, f"layer{i}")) for i in range(1, 5))


@pytest.mark.parametrize("name,kind", [("senet", SEModule), ("cbam", CbamModule)])
def test_resnet_gets_one_block_per_residual_block(name, kind):
    assert is_resnet_family(RESNET) and not is_resnet_family(EFFNET)
    m = _model(name)
    n = _n_residual_blocks(RESNET)
    assert _count(m.backbone, kind) == n == len(m.attn_names)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    out = m.training_step(x, y)
    assert out["logits"].shape == (2, 3) and torch.isfinite(out["loss"])
    out["loss"].backward()
    attn_grads = [p.grad for mod in m.attn_modules() for p in mod.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in attn_grads)


def test_other_backbone_gets_blocks_after_stages():
    m = _model("cbam", EFFNET)
    info = [f for f in timm.create_model(EFFNET).feature_info if f["reduction"] >= 4]
    assert _count(m.backbone, CbamModule) == len(info) == _count(m.backbone, AttnAfter)
    m2 = _model("senet", EFFNET, after_stages=[-1])
    assert _count(m2.backbone, SEModule) == 1
    assert isinstance(m2.backbone.model.blocks[-1], AttnAfter)
    out = m2.training_step(torch.randn(2, 3, 64, 64), torch.tensor([0, 1]))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    # after_stages on a ResNet places blocks after those stages instead of in every residual block
    m3 = _model("cbam", RESNET, after_stages=[2, 4])
    assert _count(m3.backbone, CbamModule) == 2 and isinstance(m3.backbone.model.layer4, AttnAfter)


def test_attention_param_group():
    m = _model("cbam", attn_lr_scale=1.0)
    groups = {g["name"]: g for g in m.param_groups("main", 0.1)}
    attn = {id(p) for mod in m.attn_modules() for p in mod.parameters()}
    assert {id(p) for p in groups["attention"]["params"]} == attn and groups["attention"]["lr_scale"] == 1.0
    assert groups["backbone"]["lr_scale"] == 0.1 and not attn & {id(p) for p in groups["backbone"]["params"]}
    all_ids = [id(p) for g in groups.values() for p in g["params"]]
    assert len(all_ids) == len(set(all_ids)) and set(all_ids) == {id(p) for p in m.parameters()}
    m2 = _model("senet", attn_lr_scale=None)
    assert {g["name"]: g["lr_scale"] for g in m2.param_groups("main", 0.1)}["attention"] == 0.1


def test_cbam_maps_are_the_spatial_gates_of_the_same_pass():
    m = _model("cbam").eval()
    for p in m.backbone.parameters():  # move the gates away from their 0.5 start
        torch.nn.init.normal_(p, mean=0.0 if p.ndim > 1 else 1.0, std=0.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = m.infer(x)
        plain = m.fc(m.backbone(x).mean((2, 3)))  # hooks leave the classification untouched
    assert out.maps.shape == (2, len(m.attn_names), 16, 16)  # largest gate: layer1 at stride 4
    assert out.maps.min() >= 0 and out.maps.max() <= 1 and out.maps.std() > 0
    torch.testing.assert_close(out.prediction, plain)
    assert all(not g.spatial.gate._forward_hooks for g in m.attn_modules())  # hooks removed
    se = _model("senet").eval()
    with torch.no_grad():
        assert se.infer(x).maps is None  # channel attention only: fgvc.visualize draws the feature-map CAM


def test_pretrained_file_leaves_new_blocks_at_init(tmp_path):
    torch.manual_seed(1)
    plain = timm.create_model(RESNET, num_classes=0, global_pool="")
    path = tmp_path / "plain.pth"
    torch.save(plain.state_dict(), path)
    m = build_method({"name": "senet", "backbone": RESNET, "pretrained": True, "pretrained_file": str(path)}, 3)
    assert m.backbone.missing_keys and all(".se." in k for k in m.backbone.missing_keys)
    loaded = m.backbone.model.state_dict()
    for k, v in plain.state_dict().items():  # every pretrained tensor landed in the same place
        torch.testing.assert_close(loaded[k], v)


def test_unknown_attention_layer():
    with pytest.raises(ValueError, match="attention layer"):
        _model("senet", attn_layer="nope")
