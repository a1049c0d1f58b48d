"""The protocols on embeddings end to end: retrieval, knn and linear through ``fgvc.evaluate`` on a tiny trained
run and on a recipe (the frozen pretrained backbone), result files and keys, species the model never saw, and
the refusals (other classes for knn/linear, scoring the split they fit on, recipe flags that cannot apply)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fgvc.data import make_synthetic
from fgvc.engine.inference import TrainedRun
from fgvc.evaluate import main as evaluate_main
from fgvc.protocols import PROTOCOLS, build_protocol
from fgvc.protocols.embeddings import split_embeddings
from fgvc.train import main as train_main

KEYS = {"retrieval": {"recall@1", "recall@2", "recall@4", "recall@8", "map@r", "ndcg", "n_queries"},
        "knn": {"top1", "k"}, "linear": {"top1", "c"}}
META = {"split", "checkpoint", "weights", "tta_flip"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    """The run's data (3 classes) and a set of other species (4 classes)."""
    tmp = tmp_path_factory.mktemp("syn")
    seen = make_synthetic(tmp / "seen", num_classes=3, images_per_class=8, render_size=48, progress=False)
    other = make_synthetic(tmp / "other", num_classes=4, images_per_class=6, render_size=48, seed=5, progress=False)
    return seen, other


@pytest.fixture(scope="module")
def run_dir(roots, tmp_path_factory, tiny_recipe) -> Path:
    tmp = tmp_path_factory.mktemp("runs")
    recipe = tiny_recipe(tmp / "tiny.yaml", roots[0])
    assert train_main([str(recipe), "--output", str(tmp / "run"), "--set", "data.val_split=val",
                       "data.args={val_fraction: 0.25}",
                       "eval.protocols=[classification, retrieval, knn, linear]"]) == 0
    return tmp / "run"


def test_the_trainer_runs_them_at_the_end(run_dir):
    """``eval.protocols`` of a recipe: the final test writes eval/<protocol>-test-last.json for each."""
    assert json.loads((run_dir / "final.json").read_text())["n_images"] == 12
    for protocol, keys in KEYS.items():
        assert keys <= set(json.loads((run_dir / "eval" / f"{protocol}-test-last.json").read_text()))


def test_registered_beside_classification():
    assert {"classification", "retrieval", "knn", "linear"} <= set(PROTOCOLS.names())
    assert build_protocol("retrieval").roles == ("test",) and not build_protocol("retrieval").needs_run_classes
    assert build_protocol("knn").roles == ("train", "test") and build_protocol("knn").needs_run_classes
    assert build_protocol("linear").roles == ("train", "val", "test")
    assert build_protocol("knn").file_stem("test", "best") == "knn-test-best"


@pytest.mark.parametrize("protocol", ["retrieval", "knn", "linear"])
def test_evaluate_a_run(protocol, run_dir, capsys):
    assert evaluate_main([str(run_dir), "--protocol", protocol]) == 0
    out = capsys.readouterr().out.splitlines()
    result = json.loads((run_dir / "eval" / f"{protocol}-test-last.json").read_text())
    assert set(result) == KEYS[protocol] | META and result["checkpoint"] == "last"
    assert out[0] == f"test (last checkpoint, model weights, {protocol})"
    assert len(out) == 3 and out[2] == f"wrote {run_dir / 'eval'}/{protocol}-test-last.json"  # one table line between
    if protocol == "retrieval":
        assert result["n_queries"] == 12 and 0 <= result["map@r"] <= result["ndcg"] <= 100
        assert result["recall@1"] <= result["recall@2"] <= result["recall@4"] <= result["recall@8"] <= 100
    elif protocol == "knn":
        assert result["k"] == 5 and 0 <= result["top1"] <= 100
    else:
        assert result["c"] in (0.001, 0.01, 0.1, 1.0, 10.0) and "chosen on val" in out[1]


def test_best_checkpoint_and_output_dir(run_dir, tmp_path):
    assert evaluate_main([str(run_dir), "--protocol", "knn", "--checkpoint", "best", "--output", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "knn-test-best.json").read_text())["checkpoint"] == "best"


def test_protocols_match_the_metric_functions(run_dir):
    """What the protocol writes is the metric of ``split_embeddings`` (one pass, dataset order)."""
    from fgvc.metrics.retrieval import knn_top1, retrieval_metrics

    run = TrainedRun.load(run_dir)
    emb, labels = split_embeddings(run, "test")
    assert emb.dtype == np.float32 and labels.tolist() == run.dataset("test").targets
    assert build_protocol("retrieval").evaluate(run, {"test": "test"}).metrics == retrieval_metrics(emb, labels)
    gallery, gallery_labels = split_embeddings(run, "train")
    knn = build_protocol("knn").evaluate(run, {"train": "train", "test": "test"}).metrics
    assert knn == {"top1": knn_top1(gallery, gallery_labels, emb, labels, 5), "k": 5}


def test_retrieval_on_species_the_model_never_saw(run_dir, roots, capsys):
    other = roots[1]
    assert evaluate_main([str(run_dir), "--protocol", "retrieval", "--set", f"data.root={other}", "--output",
                          str(run_dir / "unseen")]) == 0
    assert json.loads((run_dir / "unseen" / "retrieval-test-last.json").read_text())["n_queries"] == 12  # 4 x 3 test
    for protocol in ("knn", "linear", "classification"):
        assert evaluate_main([str(run_dir), "--protocol", protocol, "--set", f"data.root={other}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: the classes of {other} (4) differ from the ones this "
                                                   "model was trained on (3)")
        assert "classification, knn and linear need the run's classes" in err[0] and "--protocol retrieval" in err[0]


def test_knn_and_linear_refuse_to_score_the_split_they_fit_on(run_dir, capsys):
    assert evaluate_main([str(run_dir), "--protocol", "knn", "--split", "train"]) == 2
    assert "--protocol knn uses the 'train' split as its train set and cannot also score it" in capsys.readouterr().err


def test_linear_never_chooses_c_on_the_split_it_scores(run_dir, capsys):
    assert evaluate_main([str(run_dir), "--protocol", "linear", "--split", "val"]) == 0
    assert "no validation split: the default" in capsys.readouterr().out
    assert json.loads((run_dir / "eval" / "linear-val-last.json").read_text())["c"] == 1.0


def test_a_recipe_is_the_frozen_pretrained_backbone(roots, tmp_path, capsys, tiny_recipe):
    recipe = tiny_recipe(tmp_path / "frozen.yaml", roots[0], f"output: {{root: {tmp_path / 'runs'}}}")
    run = TrainedRun.load(recipe)
    assert run.recipe == recipe and run.class_names == list(run.dataset("train").classes)
    assert not run.method.training and run.weights == "random-init"  # the recipe says pretrained: false
    assert evaluate_main([str(recipe), "--protocol", "retrieval"]) == 0
    out = capsys.readouterr().out.splitlines()
    written = tmp_path / "runs" / "frozen-frozen" / "eval" / "retrieval-test-last.json"
    assert out[0] == "test (recipe frozen.yaml: random-init backbone, untrained head, retrieval)"
    assert out[-1] == f"wrote {written.parent}/retrieval-test-last.json"
    result = json.loads(written.read_text())
    assert result["checkpoint"] is None and result["recipe"] == str(recipe)
    assert evaluate_main([str(recipe), "--protocol", "linear", "--output", str(tmp_path / "lin")]) == 0
    assert set(json.loads((tmp_path / "lin" / "linear-test-last.json").read_text())) == KEYS["linear"] | META | {"recipe"}
    capsys.readouterr()
    assert evaluate_main([str(recipe), "--protocol", "knn", "--checkpoint", "best"]) == 2
    assert "is a recipe, which has no checkpoints" in capsys.readouterr().err
    assert evaluate_main([str(recipe), "--protocol", "knn", "--weights", "ema"]) == 2
    assert "is a recipe, which has no EMA weights" in capsys.readouterr().err


def test_recipe_features_are_reproducible(roots, tmp_path, tiny_recipe):
    """Seeded like training: the untrained parts of a recipe's method are the same on every load."""
    recipe = tiny_recipe(tmp_path / "r.yaml", roots[0])
    a, _ = split_embeddings(TrainedRun.load(recipe), "test")
    b, _ = split_embeddings(TrainedRun.load(recipe), "test")
    assert np.array_equal(a, b)
