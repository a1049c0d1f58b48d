"""The timm backbone wrapper: feature maps, mid-level taps, local weight files."""
import pytest
import torch

import timm

from fgvc.errors import ConfigError
from fgvc.models.backbone import Backbone, BackboneSpec, WeightsError, find_local_weights, resolve_tap

NAME = "test_resnet.r160_in1k"


def test_last_and_mid_level_feature_maps():
    last = Backbone(NAME)
    mid = Backbone(NAME, out_index=2)
    x = torch.randn(2, 3, 64, 64)
    assert last(x).shape[1] == last.num_features and last(x).shape[-1] == 2  # stride 32
    assert mid(x).shape[1] == mid.num_features and mid(x).shape[-1] == 8  # stride 8 (stage 2)


def test_local_weights_round_trip_and_errors(tmp_path):
    src = Backbone(NAME)
    torch.save(src.model.state_dict(), tmp_path / "w.pth")
    dst = Backbone(NAME, pretrained=True, pretrained_file=tmp_path / "w.pth")
    assert all(torch.equal(a, b) for a, b in zip(src.model.state_dict().values(), dst.model.state_dict().values()))
    tap = Backbone(NAME, pretrained=True, pretrained_file=tmp_path / "w.pth", out_index=2)  # same keys, fewer layers
    assert torch.equal(tap.model.state_dict()["conv1.0.weight"], src.model.state_dict()["conv1.0.weight"])
    with pytest.raises(WeightsError, match="not found"):
        Backbone(NAME, pretrained=True, pretrained_file=tmp_path / "missing.pth")
    torch.save({"unrelated.weight": torch.ones(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="no tensor"):
        Backbone(NAME, pretrained=True, pretrained_file=tmp_path / "other.pth")


def test_auto_weights_search(tmp_path, monkeypatch):
    monkeypatch.setenv("FGVC_WEIGHTS_DIR", str(tmp_path))
    assert find_local_weights("some_model") is None or "some_model" not in str(find_local_weights("some_model"))
    (tmp_path / "some_model.safetensors").write_bytes(b"")
    assert find_local_weights("some_model") == tmp_path / "some_model.safetensors"


def test_transformer_gives_an_nchw_map_and_keeps_the_class_token():
    vit = Backbone("test_vit")
    x = torch.randn(2, 3, 64, 64)
    fmap, pooled = vit.forward_pooled(x)
    tokens = vit.model.forward_features(x)  # B, 1 + h*w, C after the final norm
    assert vit.is_transformer and fmap.shape == (2, vit.num_features, 4, 4)
    torch.testing.assert_close(fmap.flatten(2).transpose(1, 2), tokens[:, 1:])  # patch tokens, as a map
    torch.testing.assert_close(pooled, tokens[:, 0])  # the class token
    assert vit(torch.randn(1, 3, 96, 96)).shape[-2:] == (6, 6)  # dynamic_img_size: any input size
    cnn_map, cnn_vec = Backbone(NAME).forward_pooled(x)
    torch.testing.assert_close(cnn_vec, cnn_map.mean((2, 3)))  # a CNN's vector is the mean of its map


def test_part_tap_per_architecture():
    assert resolve_tap("inception_v3.tv_in1k", "parts") == 3
    names = timm.create_model("inception_v3", features_only=True, pretrained=False).feature_info.module_name()
    assert names[3] == "Mixed_6e"  # the WS-DAN paper's stride-16 tap
    assert resolve_tap("tf_efficientnet_lite0", "parts") is None and resolve_tap(NAME, "last") is None
    assert resolve_tap(NAME, 2) == 2
    assert BackboneSpec(NAME, args={"out_index": 2}).build(default_tap="parts").out_index == 2  # a recipe may ask
    with pytest.raises(ConfigError, match="out_index"):
        resolve_tap(NAME, "middle")
    with pytest.raises(ConfigError, match="unknown timm backbone"):
        Backbone("resnet_does_not_exist")
