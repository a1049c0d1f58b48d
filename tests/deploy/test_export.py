"""fgvc.deploy.export: every method exports to ONNX and matches PyTorch; TorchScript for baseline and WS-DAN;
metadata; bad input gives exit 2 and leaves nothing; a parity failure exits 1 without the requested file."""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from deploy_helpers import CASES, files_under
from deploy_helpers import untrained as _untrained

from fgvc.data.base import load_image
from fgvc.deploy import parity
from fgvc.deploy.export import export_run
from fgvc.deploy.meta import REQUIRED_KEYS, TORCHSCRIPT_META, Preprocessing, read_onnx_metadata
from fgvc.deploy.runtime import OnnxModel
from fgvc.deploy.traceable import export_friendly, gather_sketch
from fgvc.engine.builder import build_transform
from fgvc.engine.inference import TrainedRun
from fgvc.export import main as export_main
from fgvc.methods import METHODS
from fgvc.models.pooling import CompactBilinearPooling

def test_every_registered_method_is_covered():
    assert {c.split("_")[0] for c in CASES} == set(METHODS.names())


# one export is quick enough for the fast set; every other method: ~3-7 s each
@pytest.mark.parametrize("case", [pytest.param(c, marks=() if c == "baseline" else pytest.mark.slow)
                                  for c in sorted(CASES)])
def test_every_method_exports_to_onnx_with_parity(case, recipe, tmp_path, capsys):
    run = _untrained(recipe, case)
    result = export_run(run, "onnx", tmp_path / "m.onnx")
    assert result.path == tmp_path / "m.onnx" and result.path.is_file()
    assert result.prediction == result.headline and result.note is None  # the headline itself, for every method
    assert result.parity is not None and result.parity.passed, result.parity.line()
    assert result.parity.n_images == 6 and result.parity.max_abs_logit > 0.01  # a real comparison, not 0 vs 0
    print(f"{case}: {result.parity.line()}")
    model = onnx.load(str(result.path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named (dynamic) batch axis
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}  # standard operators only, no custom ops
    if case == "wsdan":  # the data-dependent object box really crops (differently per image) and is exported
        with torch.no_grad():
            boxes = run.method.infer(parity.parity_images(run.dataset("test"))).boxes
        assert (boxes[:, 2:] - boxes[:, :2] < 63).any() and len({tuple(b) for b in boxes.tolist()}) > 1


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("case", ["baseline", "wsdan"])
def test_torchscript_export_with_metadata(case, recipe, tmp_path):
    run = _untrained(recipe, case)
    result = export_run(run, "torchscript", tmp_path / "m.pt")
    assert result.parity.passed, result.parity.line()
    files = {TORCHSCRIPT_META: ""}
    module = torch.jit.load(str(result.path), _extra_files=files)
    meta = json.loads(files[TORCHSCRIPT_META])
    assert set(REQUIRED_KEYS) <= set(meta) and meta["class_names"] == run.class_names
    x = torch.randn(5, 3, meta["img_size"], meta["img_size"])  # another batch size than the traced one
    with torch.no_grad():
        torch.testing.assert_close(module(x), run.method.infer(x).prediction, atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # ~3 s
def test_cli_export_metadata_and_preprocessing(deploy_run, tmp_path, capsys):
    out = tmp_path / "deep" / "model.onnx"
    assert export_main([str(deploy_run), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "parity PASS" in text and "top-1 agreement 100.0 %" in text
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert set(REQUIRED_KEYS) <= set(props)
    run = TrainedRun.load(deploy_run)
    assert json.loads(props["img_size"]) == 32 and json.loads(props["class_names"]) == run.class_names
    assert json.loads(props["mean"]) == pytest.approx(list(run.data_config["mean"]))
    assert json.loads(props["std"]) == pytest.approx(list(run.data_config["std"]))
    meta = read_onnx_metadata(out)
    assert meta["fgvc_method"] == "baseline" and meta["headline"] == meta["prediction"] == "logits"
    assert meta["batch"] == "dynamic" and meta["resize"] == 36 and meta["crop_pct"] == pytest.approx(32 / 36)
    # the metadata rebuilds exactly the run's eval transform
    image = load_image(next((Path(run.cfg["data"]["root"])).rglob("*.jpg")))
    expected = build_transform(run.cfg, False, run.data_config)(image)
    torch.testing.assert_close(Preprocessing.from_metadata(meta, out).transform()(image), expected)


@pytest.mark.slow  # ~3-6 s
def test_static_batch_and_img_size(deploy_run, tmp_path, capsys):
    out = tmp_path / "static.onnx"
    assert export_main([str(deploy_run), "--static-batch", "4", "--img-size", "64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "parity PASS" in text  # 6 images through a batch-4 file: padded chunks
    assert "input 4 x 3 x 64 x 64 (static batch 4)" in text and "B x 3" not in text
    shape = [d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim]
    assert shape == [4, 3, 64, 64]
    meta = read_onnx_metadata(out)
    assert meta["batch"] == 4 and meta["img_size"] == 64 and meta["resize"] == 72  # the run's crop share kept


@pytest.mark.slow  # ~3-5 s
def test_static_batch_parity_runs_pytorch_batched(deploy_run, tmp_path, monkeypatch):
    """A --static-batch 1 file is checked against PyTorch run on the parity images in one batch (not one pass per
    image, which made a static export of lite0 several times slower than a dynamic one), every PyTorch batch before
    the file's first."""
    from fgvc.deploy import export as export_mod

    calls: list[str] = []
    forward = export_mod.PredictionHead.forward

    def counted(self, images):  # real tensors only: the exporter traces with fake ones
        if type(images) is torch.Tensor:
            calls.append(f"torch {len(images)}")
        return forward(self, images)

    run_file = OnnxModel.run

    def file_run(self, images):
        calls.append(f"file {len(images)}")
        return run_file(self, images)

    monkeypatch.setattr(export_mod.PredictionHead, "forward", counted)
    monkeypatch.setattr(OnnxModel, "run", file_run)
    result = export_run(TrainedRun.load(deploy_run), "onnx", tmp_path / "s.onnx", static_batch=1)
    assert result.parity.passed and result.parity.n_images == 6
    assert calls == ["torch 6"] + ["file 1"] * 6


@pytest.mark.parametrize("args,message", [
    (["--format", "tflite"], "unknown --format 'tflite'"),
    (["--checkpoint", "best"], "has no checkpoints/best.pt"),
    (["--img-size", "8"], "smaller than the test_resnet.r160_in1k backbone's total stride"),
    (["--img-size", "0"], "--img-size must be a positive"),
    (["--format", "torchscript", "--static-batch"], "apply to --format onnx"),
    (["--opset", "17"], "use --opset 18 or higher"),
])
def test_bad_input_exits_2_and_leaves_nothing(args, message, deploy_run, tmp_path, capsys):
    before = files_under(deploy_run)
    out = tmp_path / "new" / "model.onnx"
    assert export_main([str(deploy_run), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists() and files_under(deploy_run) == before


def test_missing_run_and_recipe_are_refused(tmp_path, recipe, capsys):
    assert export_main([str(tmp_path / "nowhere")]) == 2
    assert export_main([str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "no such run directory" in err and "is a recipe" in err


@pytest.mark.slow  # ~3 s
def test_parity_failure_exits_1_without_the_requested_file(deploy_run, tmp_path, monkeypatch, capsys):
    def failing(module, exported, images, batch_size=32):
        ref = module(images).detach().numpy()
        return parity.compare(ref, ref + 1.0)  # every logit off by 1

    monkeypatch.setattr("fgvc.deploy.export.check_parity", failing)
    out = tmp_path / "model.onnx"
    assert export_main([str(deploy_run), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "parity FAIL" in captured.out and "disagrees" in captured.err
    assert not out.exists() and (tmp_path / "model.parity-failed.onnx").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model.parity-failed.onnx"]  # no temporary file left


def test_tolerance_rules():
    ref = np.array([[2.0, 1.0, 0.0], [1.0, 1.0 + 1e-5, 0.0]])
    ok = parity.compare(ref, ref + np.array([[0, 0, 0], [2e-5, 0, 0]]))  # second row: a tie within noise flips
    assert ok.passed and ok.ties == 1 and ok.top1_agreement == 50.0
    assert not parity.compare(ref, ref + 2e-3).passed  # over 1e-3 x max(1, 2)
    assert parity.compare(ref * 100, ref * 100 + 0.1).passed  # within 1e-3 x 200
    flipped = ref.copy()
    flipped[0] = [1.0, 2.0, 0.0]
    assert not parity.compare(ref, flipped).passed
    assert not parity.compare(ref, np.full_like(ref, np.nan)).passed


def test_tf32_tolerance_only_where_the_reference_runs_tf32():
    """The rule on plain values (no patching of torch's modules: their attributes are not plain and a newer pytest
    cannot undo such patches)."""
    ref = np.array([[6.9, 1.0, 0.0]])
    assert parity.rel_tol_for("cpu") == parity.REL_TOL and not parity.compare(ref, ref + 7.6e-3).passed
    assert parity.tolerance_for(9, True) == parity.REL_TOL_TF32
    report = parity.compare(ref, ref + 7.6e-3, parity.tolerance_for(9, True))  # H100: channels-last vs eager
    assert report.passed and "= 0.01 x max(1," in report.line()
    assert not parity.compare(ref, ref + 0.1, parity.tolerance_for(9, True)).passed  # a real bug still fails
    assert parity.tolerance_for(7, True) == parity.REL_TOL  # no TF32 before Ampere
    assert parity.tolerance_for(8, False) == parity.REL_TOL  # TF32 switched off
    assert parity.tolerance_for(None, True) == parity.REL_TOL  # not on CUDA
    if not torch.cuda.is_available():
        assert parity.rel_tol_for("cuda") == parity.REL_TOL  # asked for CUDA on a machine without it


def test_export_friendly_sketch_computes_the_original():
    torch.manual_seed(0)
    pool = CompactBilinearPooling(40, 16).eval()  # 40 channels into 16 bins: many shared bins
    feats = torch.randn(2, 40, 3, 3)
    expected = pool(feats)
    with export_friendly(pool):
        got = pool(feats)
    assert torch.equal(got, expected)  # bit for bit: the same additions in the same order
    assert CompactBilinearPooling.sketch is not gather_sketch and not hasattr(pool, "_export_bins")  # restored


@pytest.mark.slow  # ~3 s
def test_compact_bilinear_onnx_is_deterministic_on_two_threads(tmp_path):
    """ONNX Runtime's ScatterND(add) races on several threads; the exported sketch has none and always agrees."""
    torch.manual_seed(0)
    pool = CompactBilinearPooling(512, 2048).eval()  # the size where the race shows (8 of 30 runs on 2 threads)
    feats = torch.relu(torch.randn(32, 512, 7, 7))
    with export_friendly(pool), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(pool, (feats[:2],), None, dynamo=True,
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    program.save(str(tmp_path / "cbp.onnx"))
    assert "ScatterND" not in {n.op_type for n in onnx.load(str(tmp_path / "cbp.onnx")).graph.node}
    expected = pool(feats).detach().numpy()
    for _ in range(3):
        model = OnnxModel(tmp_path / "cbp.onnx", threads=2)
        for _ in range(3):
            np.testing.assert_allclose(model(feats.numpy()), expected, atol=1e-4, rtol=1e-4)
