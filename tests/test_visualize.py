"""fgvc.visualize, fgvc.vis.attention_figure and fgvc.vis.overlay: overlay helpers, the attention figure drawn
from Outputs (maps, CAM fallback, object boxes) and the CLI on a tiny run directory (a checkpoint saved here; the
data split is a small in-memory stand-in)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from fgvc.methods.base import Outputs
from fgvc.vis.attention_figure import draw_attention, figure_pixels, maps_or_cam
from fgvc.vis.overlay import denormalize, heat_overlay, upsample_maps
from fgvc.visualize import evenly_spaced

TINY = "test_resnet.r160_in1k"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]


def _outputs(b: int, num_maps: int | None = 6, boxes: bool = False) -> Outputs:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(b, len(CLASSES), generator=g)
    maps = None if num_maps is None else torch.rand(b, num_maps, 4, 4, generator=g)
    box = torch.tensor([[4.0, 6.0, 30.0, 28.0]]).repeat(b, 1) if boxes else None
    return Outputs({"refined": logits, "raw": logits}, "refined", torch.randn(b, 8), torch.rand(b, 5, 4, 4), maps, box)


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


def test_evenly_spaced_is_deterministic() -> None:
    assert evenly_spaced(100, 5) == [0, 25, 50, 74, 99]
    assert evenly_spaced(3, 8) == [0, 1, 2]
    assert evenly_spaced(0, 4) == []


# ------------------------------------------------------------------ figures
@pytest.mark.parametrize("mode,cols", [("mean", 2), ("top4", 6), ("all", 8)])
def test_draw_attention_writes_png_of_expected_size(tmp_path: Path, mode: str, cols: int) -> None:
    out = draw_attention(_outputs(2, boxes=True), torch.randn(2, 3, 48, 48), [0, 2], CLASSES, MEAN, STD,
                         tmp_path / "sub" / "att.png", maps=mode)
    assert out.is_file()
    assert Image.open(out).size == figure_pixels(2, cols)


def test_draw_attention_cam_fallback(tmp_path: Path) -> None:
    out = _outputs(3, num_maps=None)
    maps, is_cam = maps_or_cam(out)
    assert is_cam and maps.shape == (3, 1, 4, 4)
    torch.testing.assert_close(maps, out.feature_map.mean(1, keepdim=True))
    path = draw_attention(out, torch.randn(3, 3, 40, 40), torch.tensor([1, 1, 0]), CLASSES, MEAN, STD,
                          tmp_path / "cam.png", maps="top4")
    assert Image.open(path).size == figure_pixels(3, 2)  # no per-map columns without maps


def test_draw_attention_rejects_bad_input(tmp_path: Path) -> None:
    bad = _outputs(1)
    bad.maps = torch.zeros(5)
    with pytest.raises(ValueError, match="B, M, h, w"):
        draw_attention(bad, torch.randn(1, 3, 32, 32), [0], CLASSES, MEAN, STD, tmp_path / "x.png")
    with pytest.raises(ValueError, match="maps must be one of"):
        draw_attention(_outputs(1), torch.randn(1, 3, 32, 32), [0], CLASSES, MEAN, STD, tmp_path / "x.png",
                       maps="top3")
    with pytest.raises(ValueError, match="2 targets"):
        draw_attention(_outputs(1), torch.randn(1, 3, 32, 32), [0, 1], CLASSES, MEAN, STD, tmp_path / "x.png")


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
    from fgvc import config
    from fgvc.engine.builder import build_method_from_cfg
    from fgvc.engine.checkpoint import save_checkpoint

    cfg = copy.deepcopy(config.DEFAULTS)
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
