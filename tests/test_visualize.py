"""fgvc.visualize and fgvc.vis.overlay: overlay helpers, the attention figure, the CAM fallback and the CLI
on a tiny run directory (a checkpoint saved here; the data split is a small in-memory stand-in)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from fgvc.methods.base import Method
from fgvc.models.backbone import Backbone
from fgvc.vis.overlay import box_from_map, denormalize, heat_overlay, upsample_maps
from fgvc.visualize import _maps_or_cam, evenly_spaced, figure_pixels, render_attention

TINY = "test_resnet.r160_in1k"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]


class TinyAttention(Method):
    """A timm test model with a 1x1-conv attention head; ``with_maps=False`` has no maps (CAM fallback)."""

    def __init__(self, num_classes: int = 3, num_maps: int = 6, with_maps: bool = True) -> None:
        super().__init__(num_classes)
        torch.manual_seed(0)
        self.backbone = Backbone(TINY)
        self.att = nn.Conv2d(self.backbone.num_features, num_maps, 1)
        self.fc = nn.Linear(self.backbone.num_features, num_classes)
        self.with_maps = with_maps

    def predict(self, images: Tensor) -> Tensor:
        return self.fc(self.backbone(images).mean((2, 3)))

    def attention_maps(self, images: Tensor) -> Tensor | None:
        return torch.relu(self.att(self.backbone(images))) if self.with_maps else None


# ------------------------------------------------------------------ overlay
def test_denormalize_inverts_normalisation() -> None:
    rgb = torch.rand(3, 8, 10)
    normed = (rgb - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    out = denormalize(normed, MEAN, STD)
    assert out.shape == (8, 10, 3)
    np.testing.assert_allclose(out, rgb.permute(1, 2, 0).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="3, H, W"):
        denormalize(torch.rand(1, 3, 8, 8), MEAN, STD)


def test_upsample_maps_normalises_each_map() -> None:
    maps = torch.rand(2, 3, 4, 5) * 7 + 3
    maps[1, 2] = 5.0  # constant map -> zeros
    up = upsample_maps(maps, (16, 20))
    assert up.shape == (2, 3, 16, 20)
    flat = up.flatten(2)
    assert torch.allclose(flat[0].amin(-1), torch.zeros(3), atol=1e-6)
    assert torch.allclose(flat[0].amax(-1), torch.ones(3), atol=1e-6)
    assert float(up[1, 2].abs().max()) == 0.0


def test_heat_overlay_blends_jet() -> None:
    img = np.zeros((6, 7, 3), dtype=np.float32)
    heat = np.ones((6, 7), dtype=np.float32)
    out = heat_overlay(img, heat, 0.5)
    assert out.shape == (6, 7, 3) and out.min() >= 0 and out.max() <= 1
    assert np.allclose(heat_overlay(img, heat, 0.0), img)
    with pytest.raises(ValueError, match="same size"):
        heat_overlay(img, np.ones((3, 3)), 0.5)


def test_box_from_map_contains_above_threshold_region() -> None:
    heat = np.zeros((20, 30), dtype=np.float32)
    heat[5:9, 10:18] = 1.0
    heat[12, 4] = 0.05  # below 0.1 * max: outside the box
    x1, y1, x2, y2 = box_from_map(heat, threshold=0.1, padding=0.0)
    assert (x1, y1, x2, y2) == (10.0, 5.0, 18.0, 9.0)
    px1, py1, px2, py2 = box_from_map(heat, threshold=0.1, padding=0.1)
    assert px1 <= x1 and py1 <= y1 and px2 >= x2 and py2 >= y2 and px1 >= 0 and px2 <= 30
    assert box_from_map(np.zeros((4, 5)), 0.1) == (0.0, 0.0, 5.0, 4.0)  # empty map: whole image
    ys, xs = np.nonzero(heat >= 0.1 * heat.max())
    assert xs.min() >= x1 and xs.max() + 1 <= x2 and ys.min() >= y1 and ys.max() + 1 <= y2


def test_evenly_spaced_is_deterministic() -> None:
    assert evenly_spaced(100, 5) == [0, 25, 50, 74, 99]
    assert evenly_spaced(3, 8) == [0, 1, 2]
    assert evenly_spaced(0, 4) == []


# ------------------------------------------------------------------ figures
@pytest.mark.parametrize("mode,cols", [("mean", 2), ("top4", 6)])
def test_render_attention_writes_png_of_expected_size(tmp_path: Path, mode: str, cols: int) -> None:
    method = TinyAttention(num_maps=6)
    images = torch.randn(2, 3, 48, 48)
    out = render_attention(method, images, [0, 2], CLASSES, MEAN, STD, tmp_path / "sub" / "att.png", maps=mode)
    assert out.is_file()
    assert Image.open(out).size == figure_pixels(2, cols)
    assert method.training  # mode restored


def test_render_attention_cam_fallback(tmp_path: Path) -> None:
    method = TinyAttention(with_maps=False)
    images = torch.randn(3, 3, 40, 40)
    maps, is_cam = _maps_or_cam(method, images)
    assert is_cam and maps.shape[:2] == (3, 1)
    out = render_attention(method, images, torch.tensor([1, 1, 0]), CLASSES, MEAN, STD, tmp_path / "cam.png",
                           maps="top4")
    assert Image.open(out).size == figure_pixels(3, 2)  # no per-map columns without maps


def test_render_attention_rejects_bad_maps(tmp_path: Path) -> None:
    class Bad(TinyAttention):
        def attention_maps(self, images: Tensor) -> Tensor:
            return torch.zeros(5)

    with pytest.raises(ValueError, match="B, M, h, w"):
        render_attention(Bad(), torch.randn(1, 3, 32, 32), [0], CLASSES, MEAN, STD, tmp_path / "x.png")
    with pytest.raises(ValueError, match="maps must be one of"):
        render_attention(TinyAttention(), torch.randn(1, 3, 32, 32), [0], CLASSES, MEAN, STD, tmp_path / "x.png",
                         maps="top3")


# ---------------------------------------------------------------------- CLI
class _TinySplit(torch.utils.data.Dataset):
    classes = CLASSES

    def __init__(self, n: int = 5) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 32, 32, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.x[i], i % len(CLASSES)


def _fake_run(tmp_path: Path) -> Path:
    from fgvc import config as C
    from fgvc.engine.builder import build_method_from_cfg
    from fgvc.engine.checkpoint import save_checkpoint

    cfg = copy.deepcopy(C.DEFAULTS)
    cfg["model"].update(name="baseline", backbone=TINY, pretrained=False)
    cfg["data"].update(img_size=32, resize=None, root="datasets/fake-mini")
    cfg["train"]["device"] = "cpu"
    method = build_method_from_cfg(cfg, len(CLASSES))
    run = tmp_path / "run"
    save_checkpoint({"model": method.state_dict(), "ema": None, "extra": {}, "config": cfg,
                     "class_names": CLASSES, "data_config": {"mean": list(MEAN), "std": list(STD)}},
                    run / "checkpoints" / "last.pt")
    return run


def test_cli_on_a_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("fgvc.methods")
    from fgvc import visualize
    from fgvc.engine import builder

    run = _fake_run(tmp_path)
    monkeypatch.setattr(builder, "build_split", lambda cfg, split, train, dc: _TinySplit())
    assert visualize.main([str(run), "--n", "3"]) == 0
    out = run / "vis" / "attention-test-last-mean.png"
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert Image.open(out).size == figure_pixels(3, 2)
    # explicit indices, a checkpoint file as target, an explicit output path
    target = tmp_path / "x" / "fig.png"
    assert visualize.main([str(run / "checkpoints" / "last.pt"), "--indices", "0", "4", "--out", str(target)]) == 0
    assert Image.open(target).size == figure_pixels(2, 2)
    assert visualize.main([str(run), "--indices", "9"]) == 2
    assert "out of range" in capsys.readouterr().err
