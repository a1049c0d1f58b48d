"""fgvc.explain and fgvc.vis.cam (Grad-CAM, Selvaraju et al. 2017, via pytorch-grad-cam): CAMs of a tiny CNN and a
tiny ViT, trained for a few seconds on a hand-made set where a bright square planted at a known box decides the
class (its colour), peak on that square; the CLI writes one PNG per image and a grid; user errors are one line.

Data: 64 px images of grey noise with one 12 px square (red, green or blue = the class) at a random place.
Localisation tolerance: the CAM's peak must lie in the square's box grown by 8 px on every side (one cell of the
stride-8 map the CAM is computed on, for both models) for at least 75 % of the test images whose map is not empty,
and at most 10 % (CNN) / half (ViT) of the 18 maps may be empty. An empty map (all zeros after Grad-CAM's ReLU)
means no positive evidence for the class at that layer: a tiny ViT sometimes learns one colour as "neither of the
other two" (seen on 1 of 8 data seeds: one class's maps all empty, every other map on its square).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pytorch_grad_cam")

from fgvc.engine.inference import TrainedRun  # noqa: E402
from fgvc.explain import main as explain_main  # noqa: E402
from fgvc.train import main as train_main  # noqa: E402
from fgvc.vis.cam import cam_maps, default_layer, first_pass_key  # noqa: E402

SIZE, PATCH, TOL = 64, 12, 8
COLOURS = {"blue": (50, 60, 235), "green": (40, 210, 40), "red": (230, 40, 40)}
RECIPE = """seed: 1
data: {{name: folder, root: {root}, img_size: {size}, resize: {size}, num_workers: 0, val_split: null,
        augment: {{hflip: false}}}}
model: {{name: baseline, backbone: {backbone}, pretrained: false, backbone_args: {bargs}}}
train: {{epochs: {epochs}, batch_size: 8, lr: {lr}, optimizer: {opt}, weight_decay: 0.0001, device: cpu, threads: 1,
         warmup_epochs: 0}}
eval: {{batch_size: 18}}
"""


def _planted(root: Path, n_train: int = 16, n_test: int = 6, seed: int = 0) -> dict[str, tuple[int, int, int, int]]:
    """``root/{train,test}/<colour>/*.png`` and the square's box ``x1, y1, x2, y2`` of every image."""
    rng = np.random.default_rng(seed)
    boxes = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for name, rgb in COLOURS.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(70, 150, (SIZE, SIZE, 3)).astype(np.uint8)
                x, y = (int(v) for v in rng.integers(0, SIZE - PATCH + 1, 2))
                img[y:y + PATCH, x:x + PATCH] = rgb
                path = root / split / name / f"{i:03d}.png"
                Image.fromarray(img).save(path)
                boxes[str(path)] = (x, y, x + PATCH, y + PATCH)
    return boxes


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("planted") / "data"
    return root, _planted(root)


def _train(planted, tmp_path_factory, name: str, **kw) -> Path:
    root, _ = planted
    runs = tmp_path_factory.mktemp(name)
    recipe = runs / f"{name}.yaml"
    recipe.write_text(RECIPE.format(root=root, size=SIZE, **kw))
    assert train_main([str(recipe), "--output", str(runs / "run")]) == 0
    return runs / "run"


@pytest.fixture(scope="module")
def cnn_run(planted, tmp_path_factory) -> Path:
    # dilated (output stride 8) tiny ResNet; avg_down off: its 2x2 average-pool shortcut would shift the last
    # stage's map by half a cell
    return _train(planted, tmp_path_factory, "cnn", backbone="test_resnet.r160_in1k", epochs=10, lr=0.05, opt="sgd",
                  bargs="{output_stride: 8, avg_down: false}")


@pytest.fixture(scope="module")
def vit_run(planted, tmp_path_factory) -> Path:
    # a 2-block random-init ViT with 8 px patches: 8 x 8 tokens + the class token
    return _train(planted, tmp_path_factory, "vit", backbone="test_vit", epochs=25, lr=0.002, opt="adamw",
                  bargs="{patch_size: 8, img_size: 64, depth: 2}")


def _test_split(run: TrainedRun) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The test images, their labels and paths."""
    ds = run.dataset("test")
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    return images, torch.tensor([ds[i][1] for i in range(len(ds))]), [str(s.path) for s in ds.samples]


def _peak_hits(maps: np.ndarray, paths: list[str], boxes: dict) -> tuple[float, float]:
    """(share of non-empty maps, share of those whose peak lies within ``TOL`` px of the planted box)."""
    hits, nonempty = [], 0
    for m, p in zip(maps, paths):
        if m.max() <= 0:
            continue
        nonempty += 1
        x1, y1, x2, y2 = boxes[p]
        yy, xx = np.unravel_index(int(m.argmax()), m.shape)
        hits.append(x1 - TOL <= xx < x2 + TOL and y1 - TOL <= yy < y2 + TOL)
    return nonempty / len(maps), float(np.mean(hits)) if hits else 0.0


def _check_localises(run_dir: Path, boxes: dict, layer: str, min_nonempty: float) -> None:
    assert json.loads((run_dir / "final.json").read_text())["top1"] > 60  # chance: 33 %
    run = TrainedRun.load(run_dir)
    assert default_layer(run.method) == layer
    images, labels, paths = _test_split(run)
    maps = cam_maps(run, images, labels, "gradcam")
    assert maps.shape == (len(images), SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    nonempty, hits = _peak_hits(maps, paths, boxes)
    assert nonempty >= min_nonempty and hits >= 0.75, (nonempty, hits)


@pytest.mark.slow  # trains the module's CNN run: ~5 s
def test_gradcam_of_a_cnn_peaks_on_the_planted_patch(cnn_run, planted) -> None:
    _check_localises(cnn_run, planted[1], "backbone.model.layer4", min_nonempty=0.9)
    run = TrainedRun.load(cnn_run)
    images, labels, _ = _test_split(run)
    for cam in ("gradcam++", "scorecam", "attention"):
        assert cam_maps(run, images[:2], labels[:2], cam).shape == (2, SIZE, SIZE)
    pred = cam_maps(run, images[:3], None)  # None: the predicted classes
    assert pred.shape == (3, SIZE, SIZE)
    layer3 = cam_maps(run, images[:2], labels[:2], layer="backbone.model.layer3")
    assert layer3.shape == (2, SIZE, SIZE)


@pytest.mark.slow  # trains a ViT: ~3 s
def test_gradcam_of_a_vit_peaks_on_the_planted_patch(vit_run, planted) -> None:
    _check_localises(vit_run, planted[1], "backbone.model.blocks.1.norm1", min_nonempty=0.5)


def test_token_reshape_drops_prefix_tokens() -> None:
    from fgvc.vis.cam import LogitsModel, _token_reshape

    class Tokens(torch.nn.Module):
        num_prefix_tokens = 5  # class + 4 register tokens

    reshape = _token_reshape(Tokens(), LogitsModel(torch.nn.Identity()), channels_last=False)  # type: ignore[arg-type]
    t = torch.cat([torch.full((2, 5, 8), -1.0), torch.arange(16.0)[None, :, None].expand(2, 16, 8)], 1)
    out = reshape(t)
    assert out.shape == (2, 8, 4, 4) and out.min() >= 0 and out[0, 0, 1, 0] == 4  # row-major patch grid
    nhwc = _token_reshape(Tokens(), LogitsModel(torch.nn.Identity()), channels_last=True)  # type: ignore[arg-type]
    assert nhwc(torch.zeros(2, 3, 4, 8)).shape == (2, 8, 3, 4)


@pytest.mark.parametrize("backbone,bargs,layer", [
    ("deit_tiny_distilled_patch16_224", {"img_size": 64, "depth": 2}, "backbone.model.blocks.1.norm1"),  # 2 prefix
    ("vit_tiny_patch16_224", {"img_size": 64, "depth": 2, "reg_tokens": 4}, "backbone.model.blocks.1.norm1"),
    ("swin_tiny_patch4_window7_224", {"img_size": 64, "window_size": 2, "embed_dim": 16, "depths": [1, 1, 1, 1],
                                      "num_heads": [1, 1, 2, 2]}, "backbone.model.layers.3"),  # NHWC stages
])
def test_transformer_families_get_their_layer_and_full_size_maps(backbone: str, bargs: dict, layer: str) -> None:
    run = _untrained("baseline", {}, backbone, bargs)
    assert default_layer(run.method) == layer
    maps = cam_maps(run, torch.randn(2, 3, SIZE, SIZE), [0, 1])
    assert maps.shape == (2, SIZE, SIZE) and maps.max() <= 1


def _untrained(name: str, args: dict, backbone: str = "test_resnet.r160_in1k", bargs: dict | None = None
               ) -> TrainedRun:
    """A randomly initialised method of 3 classes as a TrainedRun on the CPU (no checkpoint)."""
    import copy

    from fgvc import config
    from fgvc.engine.builder import build_method_from_cfg
    from fgvc.engine.inference import Runtime

    cfg = copy.deepcopy(config.DEFAULTS)
    cfg["model"].update(name=name, backbone=backbone, pretrained=False, args=args, backbone_args=bargs or {})
    cfg["train"]["device"] = "cpu"
    method = build_method_from_cfg(cfg, 3).eval()
    return TrainedRun(cfg, method, method.data_config(), ["a", "b", "c"], Runtime(torch.device("cpu")))


@pytest.mark.parametrize("name,args,key", [("wsdan", {"num_attentions": 4}, "raw"),
                                          ("racnn", {"num_scales": 2, "apn_hidden": 16}, "scale1")])
def test_multi_pass_methods_explain_their_first_pass(name: str, args: dict, key: str) -> None:
    run = _untrained(name, args)
    images = torch.randn(2, 3, SIZE, SIZE)
    assert first_pass_key(run.infer(images)) == key
    assert cam_maps(run, images, [0, 2]).shape == (2, SIZE, SIZE)


@pytest.mark.slow  # ~3 s, on the trained CNN run
def test_explain_cli_writes_pngs_and_grid(cnn_run, planted, tmp_path, capsys) -> None:
    out = tmp_path / "ex"
    assert explain_main([str(cnn_run), "--n", "4", "--output", str(out)]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 5 and "grid.png" in pngs and pngs[0].startswith("000-test-")
    assert str(out / "grid.png") in capsys.readouterr().out
    photos = sorted(planted[1])[:2]
    assert explain_main([str(cnn_run), "--images", *photos, "--target", "pred", "--cam", "gradcam++",
                         "--output", str(tmp_path / "photos")]) == 0
    assert sorted(p.name for p in (tmp_path / "photos").glob("*.png")) == ["000-000.png", "001-001.png", "grid.png"]
    assert explain_main([str(cnn_run), "--n", "2", "--cam", "attention", "--target", "true",
                         "--output", str(tmp_path / "att")]) == 0
    assert len(list((tmp_path / "att").glob("*.png"))) == 3


@pytest.mark.slow  # needs the trained CNN run (~5 s)
@pytest.mark.parametrize("extra,needle", [
    (["--layer", "backbone.model.layr4"], "valid names include backbone.model.layer4"),
    (["--layer", "fc"], "not a spatial map"),
    (["--images", "x.png", "--target", "true"], "--target true needs the true class"),
    (["--images", "missing.png"], "cannot read missing.png"),
    (["--cam", "attention", "--layer", "backbone.model.layer3"], "--layer applies to gradcam"),
])
def test_explain_cli_user_errors_are_one_line(cnn_run, tmp_path, capsys, extra: list[str], needle: str) -> None:
    assert explain_main([str(cnn_run), "--n", "2", "--output", str(tmp_path / "e"), *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_missing_extra_names_the_pip_command(monkeypatch) -> None:
    from fgvc.errors import UserError
    from fgvc.vis.cam import _cam_class

    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # import now raises ImportError
    with pytest.raises(UserError, match=r"pip install -e '\.\[explain\]'"):
        _cam_class("gradcam")


@pytest.mark.slow  # a fresh interpreter: ~4 s
def test_core_commands_do_not_import_the_explain_extra() -> None:
    code = ("import sys, fgvc.train, fgvc.evaluate, fgvc.visualize, fgvc.embed, fgvc.explain, fgvc.project; "
            "bad = [m for m in ('pytorch_grad_cam', 'umap', 'sklearn.manifold') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
