"""A run directory made by the previous release (fgvc 0.1.0, commit 56a4508) still loads, evaluates, predicts and
exports with the current code, unchanged.

The fixture ``tests/fixtures/run_v0_1`` (see its README.md) holds the run exactly as the old ``fgvc.train`` wrote it
(``run/``), two of its test images (``images/``) and the old ``fgvc.predict --json --topk 3`` output on them
(``predict.jsonl``). The run records the absolute ``data.root`` of the machine that trained it, as every run does, so
the tests re-create its synthetic set (same arguments, same seed) in a temporary folder and point the commands that
read data at it with ``--set data.root=...``, as a user who moved a run to another machine would. The fixture itself
is read-only data: each test works on a copy.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fgvc.datasets import main as datasets_main
from fgvc.engine.inference import TrainedRun
from fgvc.evaluate import main as evaluate_main
from fgvc.export import main as export_main
from fgvc.predict import main as predict_main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_v0_1"
CLASSES = ["Triangle_Backslash_Framed", "Diamond_Checker_Framed", "Square_Slash_Framed"]  # the run's class order
SYNTHETIC_ARGS = ["--num-classes", "3", "--images-per-class", "8", "--render-size", "48", "--seed", "0"]
SYNTHETIC_VERSION = 1  # fgvc.data.synthetic.VERSION at 0.1.0: same version and arguments, byte-identical images
PROB_TOLERANCE = 5e-5  # predict.jsonl keeps 6 decimals; fp32 CPU arithmetic drifts far less than this


def copy_run(dest: Path) -> Path:
    """A writable copy of the fixture's run directory under ``dest``."""
    return Path(shutil.copytree(FIXTURE / "run", dest / "run"))


def fixture_images() -> list[Path]:
    return sorted((FIXTURE / "images").glob("*.jpg"))


def old_predictions() -> dict[str, dict[str, float]]:
    """The old release's probabilities: image file name -> {class: probability}."""
    rows = [json.loads(line) for line in (FIXTURE / "predict.jsonl").read_text().splitlines() if line.strip()]
    return {Path(r["path"]).name: {t["class"]: t["prob"] for t in r["topk"]} for r in rows}


def assert_same_predictions(lines: list[str]) -> None:
    """``lines`` (``predict --json --topk 3`` output) give the old release's classes and probabilities."""
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    got = {Path(r["path"]).name: {t["class"]: t["prob"] for t in r["topk"]} for r in rows}
    want = old_predictions()
    assert set(got) == set(want) and len(want) == 2
    for name, probs in want.items():
        assert set(got[name]) == set(CLASSES)
        for cls, p in probs.items():
            assert abs(got[name][cls] - p) < PROB_TOLERANCE, (name, cls, got[name][cls], p)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's synthetic set, re-created with the arguments it was trained on (fixture README.md)."""
    root = tmp_path_factory.mktemp("v0_1_data") / "synthetic"
    assert datasets_main(["make-synthetic", "--output", str(root), *SYNTHETIC_ARGS, "--no-progress"]) == 0
    return root


def test_fixture_is_an_untouched_v0_1_run():
    env = json.loads((FIXTURE / "run" / "environment.json").read_text())
    assert env["packages"]["fgvc"] == "0.1.0"
    assert (FIXTURE / "run" / "checkpoints" / "last.pt").is_file() and (FIXTURE / "run" / "config.yaml").is_file()
    # a test that wrote into the fixture (instead of its copy) would leave these behind
    assert not (FIXTURE / "run" / "export").exists() and not (FIXTURE / "run" / "cache").exists()
    assert sorted(p.name for p in (FIXTURE / "run" / "eval").iterdir()) == ["confusion.csv", "per_class.csv"]


def test_checkpoint_loads_through_the_run_loader(tmp_path):
    run = TrainedRun.load(copy_run(tmp_path))  # no data needed to load a run
    assert run.class_names == CLASSES and run.weights == "model" and run.checkpoint == "last"
    assert run.cfg["model"]["backbone"] == "test_efficientnet.r160_in1k" and run.cfg["data"]["img_size"] == 32
    assert not run.method.training
    with torch.no_grad():
        out = run.infer(torch.zeros(2, 3, 32, 32))
    logits = out.logits[out.headline]
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_evaluate_reproduces_the_old_final_json(tmp_path, data_root, capsys):
    run = copy_run(tmp_path)
    assert evaluate_main([str(run), "--set", f"data.root={data_root}"]) == 0
    text = capsys.readouterr().out
    result = json.loads((run / "eval" / "classification-test-last.json").read_text())
    assert 0.0 <= result["top1"] <= 100.0 and result["n_images"] == 12
    meta = json.loads((data_root / "synthetic.json").read_text())
    if meta["version"] == SYNTHETIC_VERSION:  # the very images the old release scored: the very numbers
        final = json.loads((run / "final.json").read_text())
        for key in ("top1", "top5", "mean_class_acc"):
            assert abs(result[key] - final[key]) < 1e-4, (key, result[key], final[key])
        assert "reproduces final.json" in text


def test_predict_gives_the_old_probabilities_without_the_data(tmp_path, capsys):
    run = copy_run(tmp_path)  # the run's data.root does not exist here: predict does not need it
    assert predict_main([str(run), *map(str, fixture_images()), "--json", "--topk", "3"]) == 0
    assert_same_predictions(capsys.readouterr().out.splitlines())


@pytest.mark.slow  # an ONNX export: ~3-6 s
def test_export_to_onnx_and_predict_with_it(tmp_path, data_root, capsys):
    pytest.importorskip("onnx", reason="the deploy extra (onnx) is not installed")
    pytest.importorskip("onnxruntime", reason="the deploy extra (onnxruntime) is not installed")
    run = copy_run(tmp_path)
    out = tmp_path / "model.onnx"
    # exit 0 means the exported model agreed with PyTorch on the run's test images (a failed parity check exits 1)
    assert export_main([str(run), "--set", f"data.root={data_root}", "--out", str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 0
    capsys.readouterr()
    assert predict_main([str(out), *map(str, fixture_images()), "--json", "--topk", "3"]) == 0
    assert_same_predictions(capsys.readouterr().out.splitlines())
