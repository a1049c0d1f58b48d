"""The fast inference path of evaluate and predict (fgvc.deploy.fast_infer): ``--backend auto`` takes ONNX Runtime on
the CPU where it pays back (a cached export, or enough images to repay one: fgvc.deploy.auto_backend, tested on plain
numbers), gives the same predictions as PyTorch, says which path it chose and why, re-exports when the checkpoint
changes, and falls back to PyTorch when a path disagrees or cannot give what is asked."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fgvc.deploy.fast_infer import use_backend
from fgvc.engine.inference import TrainedRun
from fgvc.evaluate import main as evaluate_main
from fgvc.predict import main as predict_main

HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx / onnxscript / onnxruntime not installed")


@pytest.fixture(scope="module")
def data_root(synthetic_set) -> Path:
    return synthetic_set(4)


@pytest.fixture(scope="module")
def run_dir(data_root, tiny_run) -> Path:
    return tiny_run(data_root)


def _evaluate(run_dir: Path, out: Path, capsys, *flags: str) -> tuple[dict, str, str]:
    assert evaluate_main([str(run_dir), "--output", str(out), *flags]) == 0
    captured = capsys.readouterr()
    return json.loads((out / "classification-test-last.json").read_text()), captured.out, captured.err


@pytest.mark.slow  # exports: ~3 s
@needs_ort
def test_evaluate_auto_exports_only_when_it_pays_and_reuses_a_cached_export(run_dir, tmp_path, capsys):
    small = ["--set", "eval.batch_size=2"]  # 6 test images in 3 batches
    eager, _, _ = _evaluate(run_dir, tmp_path / "eager", capsys, "--backend", "eager", *small)
    auto, out, err = _evaluate(run_dir, tmp_path / "auto", capsys, *small)  # no cached export: 6 images never repay one
    assert eager["inference"] == "eager" and auto["inference"] == "channels_last"
    lines = [line for line in err.splitlines() if line.startswith("backend auto:")]
    assert len(lines) == 1 and lines[0].startswith("backend auto: channels_last (PyTorch): 6 image(s): an onnx export")
    assert "pays back from about" in lines[0] and not (run_dir / "cache").exists()
    onnx, out, _ = _evaluate(run_dir, tmp_path / "onnx", capsys, "--backend", "onnx", *small)  # exports, caches
    assert onnx["inference"] == "onnx" and "inference: onnx (ONNX Runtime, exported to" in out
    cached = run_dir / "cache" / "infer" / "last-model.onnx"
    assert cached.is_file() and cached.with_name("last-model.onnx.key").is_file()
    assert (run_dir / "cache" / "infer" / "export-seconds.json").is_file()
    auto, out, err = _evaluate(run_dir, tmp_path / "auto2", capsys, *small)  # the cached file: taken
    assert auto["inference"] == "onnx" and f"cached export {cached}" in out and "agreed with PyTorch" in out
    assert f"backend auto: onnx: a cached export matches these weights ({cached})" in err
    assert "reproduces final.json" in out
    for key in ("top1", "top5", "mean_class_acc", "n_images"):
        assert auto[key] == eager[key]
    _, out, _ = _evaluate(run_dir, tmp_path / "five", capsys)  # batches of 5: 1 image after the first, not worth it
    assert "inference: channels_last" in out and "less than its check on a batch" in out


@pytest.mark.slow  # trains and exports twice: ~7 s
@needs_ort
def test_a_changed_checkpoint_is_exported_again(data_root, tiny_run, tmp_path):
    from fgvc.engine.checkpoint import load_checkpoint, save_checkpoint
    from fgvc.deploy.fast_infer import exported_file

    run_dir = tiny_run(data_root)
    run = TrainedRun.load(run_dir)
    folder = tmp_path / "cache"
    _, seconds, detail = exported_file(run, "onnx", folder, cache=True)
    assert seconds > 0 and detail.startswith("exported to")
    assert exported_file(run, "onnx", folder, cache=True)[1:] == (0.0, f"cached export {folder / 'last-model.onnx'}")
    ckpt = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(state, ckpt)
    assert exported_file(TrainedRun.load(run_dir), "onnx", folder, cache=True)[1] > 0  # new weights: new export
    changed = TrainedRun.load(run_dir, overrides=["model.args={drop_rate: 0.5}"])
    assert exported_file(changed, "onnx", folder, cache=True)[1] > 0  # new model keys: new export


def _predict(run_dir: Path, images: Path, capsys, *flags: str) -> tuple[list[dict], str]:
    assert predict_main([str(run_dir), str(images), "--json", "--topk", "3", *flags]) == 0
    captured = capsys.readouterr()
    return [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_predict_gives_eager_predictions_and_names_its_path(run_dir, data_root, capsys):
    images = data_root / "CUB_200_2011" / "images"
    eager, err_eager = _predict(run_dir, images, capsys, "--backend", "eager")
    auto, err = _predict(run_dir, images, capsys)
    assert "inference: eager (PyTorch fp32, contiguous)" in err_eager
    assert [[c["class"] for c in r["topk"]] for r in auto] == [[c["class"] for c in r["topk"]] for r in eager]
    for a, e in zip(auto, eager):
        assert [c["prob"] for c in a["topk"]] == pytest.approx([c["prob"] for c in e["topk"]], abs=1e-4)
    assert "inference: channels_last" in err  # every photo in the first batch: an exported file could not help
    if HAS_ORT:
        assert f"backend auto: channels_last (PyTorch): all {len(auto)} image(s) are in the first batch" in err


def test_a_disagreeing_path_is_never_used(run_dir, monkeypatch):
    from fgvc.deploy import fast_infer

    def wrong(run, name, folder=None, cache=False):
        return fast_infer.InferPath(name, lambda x: -torch.arange(3.0).repeat(len(x), 1), detail="broken")

    monkeypatch.setattr(fast_infer, "build_path", wrong)
    run = TrainedRun.load(run_dir)
    backend = use_backend(run, "compile")
    images = torch.stack([run.dataset("test")[i][0] for i in range(4)])
    reference = run.infer(images).prediction
    for _ in range(2):
        torch.testing.assert_close(run.infer_logits(images).prediction, reference)
    assert backend.ran == "channels_last" and "disagreed with PyTorch on the first batch" in backend.describe()


@pytest.mark.slow  # trains a multi-head run: ~6 s
@needs_ort
def test_a_multi_head_method_keeps_every_prediction_without_exporting(data_root, tiny_run, tmp_path):
    run_dir = tiny_run(data_root, "model.name=wsdan", "model.args={num_attentions: 4}")
    run = TrainedRun.load(run_dir)
    eager = run.collect("test", ["logits"])
    backend = use_backend(run, "onnx")
    got = run.collect("test", ["logits"])
    assert set(got.logits) == {"refined", "raw"} and torch.equal(got.prediction, eager.prediction)
    assert backend.ran == "channels_last" and "computes the headline only" in backend.describe()
    assert not (run_dir / "cache").exists()  # no export was made for a pass that could not use it
    images = torch.stack([run.dataset("test")[i][0] for i in range(4)])
    run.infer_logits(images)  # the headline alone (predict) can use the file: exported and checked here
    assert backend.ran == "onnx"
    torch.testing.assert_close(run.infer_logits(images, tta=True).prediction.cpu(),
                               run.infer(images, tta=True).prediction.cpu(), atol=1e-4, rtol=1e-4)


def test_backend_errors_are_user_errors(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        predict_main([str(run_dir), str(tmp_path), "--backend", "nope"])
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    assert predict_main([str(onnx), str(tmp_path), "--backend", "eager"]) == 2
    assert "--backend eager applies to a run" in capsys.readouterr().err
