"""``train.layer_decay`` (fgvc.engine.optim): timm's layer grouping splits the backbone group, lr grows with
depth as lr x backbone_lr_scale x decay^(L - i), the method's own layers keep their scale, CNNs with a
group_matcher work and a features-only tap is refused, bad values are refused, and a run logs its groups."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from timm.optim import Lamb, Lars

from fgvc import config
from fgvc.engine.optim import apply_layer_decay, build_stage_optimizer, mark_backbone_layers
from fgvc.errors import ConfigError
from fgvc.methods import build_method

VIT = ("vit_tiny_patch16_224", {"depth": 3, "embed_dim": 32, "num_heads": 2})
LR = 0.1


def _method(name: str = "baseline", backbone: tuple = VIT, args: dict | None = None):
    return build_method({"name": name, "backbone": backbone[0], "pretrained": False, "backbone_args": backbone[1],
                         "args": args or {}}, 3)


def _optimizer(method, decay: float | None, backbone_lr_scale: float = 1.0, stage: str = "main"):
    tr = copy.deepcopy(config.DEFAULTS["train"])
    tr["layer_decay"] = decay
    return build_stage_optimizer(method, {"name": stage, "lr": LR, "backbone_lr_scale": backbone_lr_scale}, tr)


def _lrs(opt) -> dict[str, float]:
    return {g["name"]: g["lr"] for g in opt.param_groups}


def test_vit_layers_get_lr_decay_to_the_power_of_their_distance_from_the_head() -> None:
    m = _method()
    opt = _optimizer(m, 0.75, backbone_lr_scale=0.5)
    lrs = _lrs(opt)
    # timm's ViT grouping: 0 = embeddings (patch, position, class token), 1..3 = blocks (final norm with the last)
    assert sorted(n for n in lrs if n.startswith("backbone")) == [f"backbone.layer{i}" for i in range(4)]
    for i in range(4):
        assert lrs[f"backbone.layer{i}"] == pytest.approx(LR * 0.5 * 0.75 ** (4 - i))
    assert [lrs[f"backbone.layer{i}"] for i in range(4)] == sorted(lrs[f"backbone.layer{i}"] for i in range(4))
    assert lrs["head"] == pytest.approx(LR)  # the new classifier: full lr
    by_group = {}
    for g in opt.param_groups:
        by_group.setdefault(g["name"], set()).update(id(p) for p in g["params"])
    assert {id(p) for p in (m.backbone.model.cls_token, m.backbone.model.pos_embed)} <= by_group["backbone.layer0"]
    assert id(m.backbone.model.norm.weight) in by_group["backbone.layer3"]
    listed = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(listed) == sorted(id(p) for p in m.parameters())  # every parameter once
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups if all(p.ndim <= 1 for p in g["params"]))


def test_no_decay_leaves_the_groups_as_they_were() -> None:
    m = _method()
    assert set(_lrs(_optimizer(m, None, 0.5)).values()) == {LR * 0.5, LR}
    assert {g["name"] for g in _optimizer(m, None).param_groups} == {"backbone", "head"}
    assert set(_lrs(_optimizer(m, 1.0, 0.5)).values()) == {LR * 0.5, LR}  # decay 1: per-layer groups, same lr


def test_wsdan_attention_and_classifier_keep_their_own_scales() -> None:
    m = _method("wsdan", args={"num_attentions": 2, "attention_lr_scale": 0.3, "classifier_lr_scale": 0.2})
    lrs = _lrs(_optimizer(m, 0.7))
    assert lrs["attention"] == pytest.approx(0.3 * LR) and lrs["classifier"] == pytest.approx(0.2 * LR)
    assert lrs["backbone.layer3"] == pytest.approx(0.7 * LR) and lrs["backbone.layer0"] == pytest.approx(0.7 ** 4 * LR)


def test_racnn_backbones_share_their_layer_groups_and_stages_still_freeze() -> None:
    m = _method("racnn", args={"num_scales": 2, "apn_hidden": 16, "apn_channels": 4, "apn_grid": 2})
    opt = _optimizer(m, 0.8, stage="cls")
    names = [g["name"] for g in opt.param_groups]
    assert "apn" not in names and len([n for n in names if n.startswith("backbone.layer3")]) >= 1
    n_backbone = sum(p.numel() for g in opt.param_groups if g["name"].startswith("backbone") for p in g["params"])
    assert n_backbone == sum(p.numel() for p in m.backbones.parameters())  # both scales' ViTs
    assert [g["name"] for g in _optimizer(m, 0.8, stage="apn").param_groups] == ["apn", "apn"]  # decay / no decay


def test_cnns_with_a_group_matcher_decay_too_and_a_features_only_tap_is_refused() -> None:
    lrs = _lrs(_optimizer(_method(backbone=("test_resnet.r160_in1k", {})), 0.5))
    layers = sorted((int(n.split("layer")[-1]), lr) for n, lr in lrs.items() if n.startswith("backbone.layer"))
    assert len(layers) == 5 and [lr for _, lr in layers] == [LR * 0.5 ** (5 - i) for i, _ in layers]
    tapped = _method(backbone=("test_resnet.r160_in1k", {"out_index": 2}))  # timm features_only: no group_matcher
    with pytest.raises(ConfigError, match="train.layer_decay needs timm's layer grouping.*train.layer_decay: null"):
        _optimizer(tapped, 0.75)
    _optimizer(tapped, None)  # without the decay it trains as before


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.2, True])
def test_bad_decay_values_are_refused_when_the_recipe_loads(bad, tmp_path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("{}\n")
    with pytest.raises(ConfigError, match=r"'train.layer_decay'.* must be (in \(0, 1\] or null|float or int or null)"):
        config.load_recipe(recipe, [f"train.layer_decay={str(bad).lower()}"])


@pytest.mark.slow  # trains: ~1-3 s
def test_the_recipe_key_and_the_training_log(synthetic_set, tiny_recipe, tiny_run, tmp_path) -> None:
    root = synthetic_set(images_per_class=4)
    cfg, _ = config.load_recipe(tiny_recipe(tmp_path / "r.yaml", root), ["train.layer_decay=0.65"])
    assert cfg["train"]["layer_decay"] == 0.65
    assert config.load_recipe(tmp_path / "r.yaml")[0]["train"]["layer_decay"] is None
    with pytest.raises(ConfigError, match="train.layer_decay"):
        config.load_recipe(tmp_path / "r.yaml", ["train.layer_decay=high"])
    run = tiny_run(root, "train.layer_decay=0.5", "train.max_steps=1")
    log = (run / "train.log").read_text()
    assert "train.layer_decay=0.5:" in log and "backbone.layer0" in log and "backbone.layer4" in log
    lr0 = 0.01 * 0.5 ** 5  # the tiny recipe's lr 0.01, test_resnet's 5 timm layers
    assert any(line.split()[0] == "backbone.layer0" and math.isclose(float(line.split()[-1]), lr0, rel_tol=1e-2)
               for line in log.splitlines() if line.strip().startswith("backbone.layer0"))


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_lars_and_lamb_leave_biases_and_norm_weights_out_of_the_adaptation(name) -> None:
    """timm adapts a group when ``always_adapt`` or its weight decay is set: only the groups of >1-D tensors are."""
    m = _method("baseline", ("test_resnet.r160_in1k", {}))
    tr = copy.deepcopy(config.DEFAULTS["train"])
    tr.update(optimizer=name, weight_decay=1e-4)
    opt = build_stage_optimizer(m, {"name": "main", "lr": LR, "backbone_lr_scale": 0.1}, tr)
    assert isinstance(opt, {"lars": Lars, "lamb": Lamb}[name])
    adapted = [g for g in opt.param_groups if g["always_adapt"]]
    excluded = [g for g in opt.param_groups if not g["always_adapt"]]
    assert {g["name"] for g in adapted} == {g["name"] for g in excluded} == {"backbone", "head"}
    assert all(p.ndim > 1 for g in adapted for p in g["params"]) and all(g["weight_decay"] == 1e-4 for g in adapted)
    assert all(p.ndim == 1 for g in excluded for p in g["params"]) and all(g["weight_decay"] == 0 for g in excluded)
    bn = {id(p) for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d) for p in mod.parameters()}
    biases = {id(p) for n, p in m.named_parameters() if n.endswith(".bias")}
    excluded_ids = {id(p) for g in excluded for p in g["params"]}
    assert bn and biases and bn | biases == excluded_ids  # every norm weight and bias, nothing else
    assert [g["lr"] for g in adapted if g["name"] == "backbone"] == [pytest.approx(LR * 0.1)]
    # a step moves the weights; with zero weight decay everywhere the matrices are still adapted
    tr["weight_decay"] = 0.0
    opt = build_stage_optimizer(m, {"name": "main", "lr": LR, "backbone_lr_scale": 0.1}, tr)
    assert sorted(g["always_adapt"] for g in opt.param_groups) == [False, False, True, True]
