"""Vision-transformer and ConvNeXt backbones (issue 15): the token map of every family (class, distillation and
register tokens set aside), position embeddings at a non-default input size (a 224-px checkpoint in a 448-px model),
Swin at other sizes, a few training steps of every method that takes them (baseline, WS-DAN, B-CNN, RA-CNN) with
WS-DAN's and RA-CNN's crops, and CBAM/SE's one-line refusal. Random-init timm models shrunk through
``backbone_args`` (1-2 blocks, 16-48 channels), 64 px inputs."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from fgvc.engine.builder import resolve_channels_last
from fgvc.errors import ConfigError
from fgvc.methods import build_method
from fgvc.models.backbone import Backbone

SMALL_VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2}
FAMILIES = {  # name: (timm backbone, backbone_args, prefix tokens before the patches)
    "vit": ("vit_tiny_patch16_224", SMALL_VIT, 1),
    "deit": ("deit_tiny_patch16_224", SMALL_VIT, 1),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", SMALL_VIT, 2),  # class + distillation token
    "vit_reg4": ("vit_tiny_patch16_224", {**SMALL_VIT, "reg_tokens": 4}, 5),  # class + 4 register tokens
    "swin": ("swin_tiny_patch4_window7_224", {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2],
                                              "window_size": 2}, 0),
    "convnext": ("convnext_atto", {"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32]}, 0),
}
METHOD_ARGS = {
    "baseline": {},
    "wsdan": {"num_attentions": 2},
    "bcnn": {"reduce_dim": 8},
    "racnn": {"num_scales": 2, "apn_hidden": 16, "apn_channels": 4, "apn_grid": 2},
}
SIZE = 64


def _backbone(family: str, **extra) -> Backbone:
    name, args, _ = FAMILIES[family]
    torch.manual_seed(0)
    return Backbone(name, **{**args, **extra}).eval()


def _method(name: str, family: str, args: dict | None = None):
    backbone, bargs, _ = FAMILIES[family]
    torch.manual_seed(0)
    return build_method({"name": name, "backbone": backbone, "pretrained": False, "backbone_args": bargs,
                         "args": {**METHOD_ARGS[name], **(args or {})}}, 3)


@pytest.mark.parametrize("family", ["vit", "deit", "deit_distilled", "vit_reg4"])
def test_token_map_is_the_patch_grid_without_prefix_tokens(family: str) -> None:
    b = _backbone(family)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        fmap, pooled = b.forward_pooled(x)
        tokens = b.model.forward_features(x)  # B, prefix + h*w, C after the final norm
    prefix = FAMILIES[family][2]
    assert b.is_transformer and b.model.num_prefix_tokens == prefix
    assert fmap.shape == (2, 32, SIZE // 16, SIZE // 16) and pooled.shape == (2, 32)
    assert tokens.shape[1] == prefix + (SIZE // 16) ** 2
    patches = tokens[:, prefix:].transpose(1, 2).reshape(2, 32, SIZE // 16, SIZE // 16)
    torch.testing.assert_close(fmap, patches)  # the map is the patch tokens only, row-major
    if family == "deit_distilled":  # timm's pooling: the mean of the class and distillation tokens
        torch.testing.assert_close(pooled, (tokens[:, 0] + tokens[:, 1]) / 2)
    else:  # the class token, register tokens not pooled
        torch.testing.assert_close(pooled, tokens[:, 0])


@pytest.mark.parametrize("family,stride", [("swin", 32), ("convnext", 32)])
def test_hierarchical_backbones_give_an_nchw_map(family: str, stride: int) -> None:
    b = _backbone(family)
    assert b.is_transformer == (family == "swin")
    for size in (SIZE, 96, 160):  # Swin pads its windows: any multiple of its 4-px patch
        with torch.no_grad():
            fmap = b(torch.randn(1, 3, size, size))
        assert fmap.shape[:2] == (1, b.num_features) and fmap.shape[-1] == -(-size // stride)


def test_a_224_checkpoint_loads_into_a_448_model_with_resampled_position_embeddings(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    src = timm.create_model("vit_tiny_patch16_224", num_classes=0, depth=1, embed_dim=32, num_heads=2)  # 14 x 14
    path = tmp_path / "vit224.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    built = Backbone("vit_tiny_patch16_224", True, path, depth=1, embed_dim=32, num_heads=2, img_size=448).eval()
    assert built.missing_keys == [] and built.model.pos_embed.shape == (1, 1 + 28 * 28, 32)
    expected = resample_abs_pos_embed(src.pos_embed.detach(), (28, 28), num_prefix_tokens=1)  # timm's bicubic
    torch.testing.assert_close(built.model.pos_embed.detach(), expected)
    # without img_size, dynamic_img_size resamples the same 14 x 14 grid on every pass: the same features
    dynamic = Backbone("vit_tiny_patch16_224", True, path, depth=1, embed_dim=32, num_heads=2).eval()
    x = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        torch.testing.assert_close(built(x), dynamic(x))
    assert built(x).shape == (1, 32, 28, 28)


def test_an_input_that_is_not_a_whole_number_of_patches_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"16 x 16 px patches.*100 x 100 px.*multiple of 16 \(e.g. 96 or 112\)"):
        _backbone("vit")(torch.randn(1, 3, 100, 100))
    beit = Backbone("beit_base_patch16_224", depth=1, embed_dim=32, num_heads=2)  # timm: no dynamic_img_size
    with pytest.raises(ConfigError, match="built for 224 x 224 px inputs.*backbone_args.img_size"):
        beit(torch.randn(1, 3, SIZE, SIZE))
    assert Backbone("beit_base_patch16_224", depth=1, embed_dim=32, num_heads=2, img_size=SIZE)(
        torch.randn(1, 3, SIZE, SIZE)).shape == (1, 32, 4, 4)


@pytest.mark.parametrize("family", ["vit", "deit_distilled", "swin", "convnext"])
@pytest.mark.parametrize("name", sorted(METHOD_ARGS))
def test_every_method_that_takes_them_trains_a_few_steps(name: str, family: str) -> None:
    m = _method(name, family)
    assert resolve_channels_last("auto", m) == (family == "convnext")  # ConvNeXt is a CNN: channels-last
    if resolve_channels_last("auto", m):
        m = m.to(memory_format=torch.channels_last)
    m.set_stage("finetune" if name == "bcnn" else "main")
    groups = m.optimizer_groups(m.stage, 0.1)
    opt = torch.optim.SGD([p for g in groups for p in g["params"]], lr=0.05, momentum=0.9)
    before = {k: v.detach().clone() for k, v in m.backbone.named_parameters()}
    x, y = torch.randn(4, 3, SIZE, SIZE), torch.tensor([0, 1, 2, 0])
    m.train()
    for _ in range(2):
        out = m(x, y)
        assert torch.isfinite(out["loss"]) and out["logits"].shape == (4, 3)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert any(not torch.equal(before[k], v) for k, v in m.backbone.named_parameters()), "the backbone did not train"
    m.eval()
    with torch.no_grad():
        res = m.infer(x)
    assert res.feature_map.shape[:2] == (4, m.backbone.num_features) and res.prediction.shape == (4, 3)


def test_wsdan_crops_on_the_token_map_stay_inside_the_image_at_the_input_size() -> None:
    m = _method("wsdan", "vit", {"zoom_source": 2.0}).train()
    images = torch.randn(3, 3, 2 * SIZE, 2 * SIZE)  # the loader's zoom_source x the input size
    raw = m.raw_view(images)
    parts, maps, feats = m.forward_features(raw)
    assert feats.shape == (3, 32, SIZE // 16, SIZE // 16) and maps.shape == (3, 2, SIZE // 16, SIZE // 16)
    crops, drops, crop_area, drop_frac = m.augment(images, raw, maps)
    assert crops.shape == drops.shape == raw.shape == (3, 3, SIZE, SIZE)  # the ViT takes the crops as they come
    assert bool(((crop_area > 0) & (crop_area <= 1)).all() and ((drop_frac >= 0) & (drop_frac < 1)).all())
    m.eval()
    with torch.no_grad():
        out = m.infer(images)
    x1, y1, x2, y2 = out.boxes.unbind(1)  # in the pixels of the loader's images
    assert bool((0 <= x1).all() and (x1 < x2).all() and (x2 <= 2 * SIZE).all())
    assert bool((0 <= y1).all() and (y1 < y2).all() and (y2 <= 2 * SIZE).all())


def test_racnn_zooms_reach_a_vit_at_the_input_size_and_classify_its_class_token() -> None:
    m = _method("racnn", "vit", {"num_scales": 3}).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        res = m.forward_scales(x, detach_boxes=True)
        _, cls_token = m.net(1).forward_pooled(torch.randn(2, 3, SIZE, SIZE))
    assert len(res["feats"]) == 3 and all(f.shape == (2, 32, 4, 4) for f in res["feats"])
    assert all(p.shape == cls_token.shape for p in res["pooled"])  # the class token, not the map mean
    tx, ty, tl = res["boxes"][0].unbind(1)
    assert bool(((tx - tl) >= 0).all() and ((tx + tl) <= 1).all() and (tl >= 1 / 6).all())
    out = m.infer(x)
    assert out.maps.shape == (2, 2, SIZE, SIZE) and set(out.logits) == {"fused", "scale1", "scale2", "scale3"}


@pytest.mark.parametrize("family", ["vit", "deit_distilled", "swin"])
@pytest.mark.parametrize("name,block", [("cbam", "CBAM"), ("senet", "SE")])
def test_cbam_and_se_refuse_a_transformer_in_one_line(name: str, block: str, family: str) -> None:
    backbone = FAMILIES[family][0]
    with pytest.raises(ConfigError) as err:
        build_method({"name": name, "backbone": backbone, "pretrained": False, "backbone_args": FAMILIES[family][1]}, 3)
    text = str(err.value)
    assert "\n" not in text and f"places {block}" in text and f"'{backbone}' is a vision transformer" in text
    assert "baseline, wsdan, bcnn or racnn" in text


def test_cbam_takes_convnext_as_a_cnn() -> None:
    m = build_method({"name": "cbam", "backbone": "convnext_atto", "pretrained": False,
                      "backbone_args": FAMILIES["convnext"][1]}, 3).eval()
    with torch.no_grad():
        out = m.infer(torch.randn(2, 3, SIZE, SIZE))
    assert len(m.attn_names) == 4 and out.maps is not None and out.maps.shape[:2] == (2, 4)


@pytest.mark.parametrize("recipe", ["cub200_vit_b16", "cub200_wsdan_vit_b16"])
def test_the_vit_recipes_train_two_steps_shrunk(recipe: str, synthetic_set, tmp_path: Path) -> None:
    """The GPU recipes as shipped, shrunk to a 1-block random ViT at 64 px on the CPU (with layer decay on)."""
    import json

    from fgvc.train import main as train_main

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "run"
    rc = train_main([str(repo / "recipes" / f"{recipe}.yaml"), "--output", str(out), "--set",
                     f"data.root={synthetic_set(images_per_class=4)}", "model.pretrained=false",
                     "model.backbone_args={img_size: 64, depth: 1, embed_dim: 32, num_heads: 2}", "data.img_size=64",
                     "data.resize=72", "train.batch_size=4", "train.max_steps=2", "train.device=cpu",
                     "data.num_workers=0", "train.amp=none", "train.layer_decay=0.75", "data.val_split=null",
                     "data.args.val_fraction=0", "eval.batch_size=4"])
    assert rc == 0
    assert json.loads((out / "final.json").read_text())["steps"] == 2
    assert "backbone.layer1" in (out / "train.log").read_text()
