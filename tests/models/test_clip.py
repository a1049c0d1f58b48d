"""CLIP through open_clip (fgvc.models.clip) on a tiny model built from a custom config with random weights: no
download. The image tower as a ``clip:`` backbone: shapes, weights from a whole CLIP state dict or the tower's own,
CLIP's normalisation, clear errors; and the frozen tower under fgvc.embed and the retrieval, knn, linear protocols."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fgvc.embed import main as embed_main
from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.optim import BackboneLayers
from fgvc.errors import ConfigError, WeightsError
from fgvc.evaluate import main as evaluate_main
from fgvc.models.backbone import Backbone, BackboneSpec, is_transformer_name
from fgvc.models.clip import ClipBackbone, create_clip, resolve_clip_name

open_clip = pytest.importorskip("open_clip")

# 32 px, 8 px patches (4 x 4 tokens), one block per tower, 16-d joint embedding; the text tower reads open_clip's
# own tokenizer (its vocabulary ships with the package)
TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def write_tiny_clip(folder: Path, seed: int = 0, name: str = "tiny-clip", **vision: int) -> tuple[Path, Path]:
    """``(config .json, state dict .pt)`` of a tiny open_clip model with seeded random weights."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(TINY))
    cfg["vision_cfg"].update(vision)
    config = folder / f"{name}.json"
    config.write_text(json.dumps(cfg))
    torch.manual_seed(seed)
    model = open_clip.create_model(resolve_clip_name(str(config)))
    weights = folder / f"{name}.pt"
    torch.save(model.state_dict(), weights)
    return config, weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_the_tower_embeds_as_clip_does_and_maps_every_patch(tiny: tuple[Path, Path]) -> None:
    config, weights = tiny
    clip, _ = create_clip(str(config), weights)
    backbone = BackboneSpec(f"clip:{config}", True, weights).build()
    assert isinstance(backbone, ClipBackbone) and isinstance(backbone, Backbone) and backbone.num_features == 16
    assert backbone.weights_source == str(weights)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fmap, emb = backbone.eval().forward_pooled(x)
        expected = clip.encode_image(x)
    assert fmap.shape == (2, 16, 4, 4) and torch.allclose(emb, expected, atol=1e-5)
    with torch.no_grad():  # the map: each patch token through the final norm and projection, as the class token
        tokens = clip.visual.transformer(clip.visual._embeds(x))
        by_hand = (clip.visual.ln_post(tokens[:, 1:]) @ clip.visual.proj).transpose(1, 2).reshape(2, 16, 4, 4)
    assert torch.allclose(fmap, by_hand, atol=1e-5) and torch.allclose(backbone(x), fmap, atol=1e-5)


def test_tower_only_state_dicts_load_and_mean_std_are_clips(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    config, weights = tiny
    state = torch.load(weights, weights_only=True)
    tower = tmp_path / "tower.pt"
    torch.save({k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}, tower)
    backbone = BackboneSpec(f"clip:{config}", True, tower).build()
    assert torch.equal(backbone.model.proj, state["visual.proj"]) and backbone.missing_keys == []
    assert backbone.data_config()["mean"] == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert is_transformer_name(f"clip:{config}") and not is_transformer_name("resnet50")
    random_init = BackboneSpec(f"clip:{config}", False).build()
    assert random_init.weights_source is None and not torch.equal(random_init.model.proj, state["visual.proj"])


def test_clear_errors(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    config, weights = tiny
    backbone = BackboneSpec(f"clip:{config}", True, weights).build()
    with pytest.raises(ConfigError, match="data.img_size=32"):
        backbone(torch.randn(1, 3, 48, 48))
    with pytest.raises(ConfigError, match="unknown CLIP model 'ViT-B-33'.*ViT-B-32"):
        BackboneSpec("clip:ViT-B-33", False).build()
    with pytest.raises(WeightsError, match="not found"):
        BackboneSpec(f"clip:{config}", True, tmp_path / "none.pt").build()
    other_config, other = write_tiny_clip(tmp_path, name="tiny-clip-wide", width=48)
    with pytest.raises(WeightsError, match="only 0 of"):  # another architecture's checkpoint
        BackboneSpec(f"clip:{config}", True, other).build()
    with pytest.raises(WeightsError, match="could not load"):
        create_clip(str(config), other)
    with pytest.raises(ConfigError, match="last block only"):
        BackboneSpec(f"clip:{config}", True, weights, {"out_index": 2}).build()


def test_layer_decay_groups_the_tower_as_timms_vit(tiny: tuple[Path, Path]) -> None:
    backbone = BackboneSpec(f"clip:{tiny[0]}", True, tiny[1]).build()
    layers, v = BackboneLayers([backbone]), backbone.model
    assert [layers.depth(p) for p in (v.conv1.weight, v.transformer.resblocks[0].attn.in_proj_weight, v.proj)] == [
        (0, 2), (1, 2), (1, 2)]  # stem; the one block, with the final norm and projection (as timm groups a ViT's norm)


def test_a_larger_input_side_resamples_the_position_embeddings(tiny: tuple[Path, Path]) -> None:
    config, weights = tiny
    backbone = BackboneSpec(f"clip:{config}", True, weights, {"img_size": 48}).build()
    assert backbone(torch.randn(1, 3, 48, 48)).shape == (1, 16, 6, 6) and backbone.missing_keys == []


def test_a_clip_backbone_embeds_and_evaluates_with_every_protocol(tiny: tuple[Path, Path], tmp_path: Path,
                                                                  synthetic_set, tiny_recipe) -> None:
    config, weights = tiny
    recipe = tiny_recipe(tmp_path / "clip.yaml", synthetic_set(), "")
    sets = ["--set", f"model.backbone=clip:{config}", "model.pretrained=true", f"model.pretrained_file={weights}",
            "data.resize=32", f"output.root={tmp_path / 'runs'}"]
    out = tmp_path / "e.npz"
    assert embed_main([str(recipe), "--output", str(out), *sets]) == 0
    got = np.load(out)
    assert got["embeddings"].shape[1] == 16 and len(got["labels"]) == len(got["embeddings"]) > 0
    for protocol, key in (("retrieval", "recall@1"), ("knn", "top1"), ("linear", "top1")):
        assert evaluate_main([str(recipe), "--protocol", protocol, "--output", str(tmp_path / "eval"), *sets]) == 0
        result = json.loads((tmp_path / "eval" / f"{protocol}-test-last.json").read_text())
        assert key in result, (protocol, sorted(result))


@pytest.mark.slow  # a training (~2 s)
def test_a_recipe_fine_tunes_on_a_frozen_clip_tower(tiny: tuple[Path, Path], synthetic_set, tiny_run) -> None:
    config, weights = tiny
    run = tiny_run(synthetic_set(), f"model.backbone=clip:{config}", "model.pretrained=true",
                   f"model.pretrained_file={weights}", "data.resize=32", "train.backbone_lr_scale=0")
    model = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    start = torch.load(weights, weights_only=True)
    assert torch.equal(model["backbone.model.proj"], start["visual.proj"])  # frozen: the tower is unchanged
    assert json.loads((run / "final.json").read_text())["top1"] >= 0
