"""The timm backbone wrapper: feature maps, mid-level taps, local weight files."""
import pytest
import torch

from fgvc.models.backbone import Backbone, WeightsError, find_local_weights

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
