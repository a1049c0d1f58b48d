"""``python -m fgvc.datasets audit`` end to end: without a run (duplicates, leakage, outliers) and with a trained
run (likely mislabelled images from the run's own predictions and embeddings, through TrainedRun)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fgvc.datasets import main as datasets_main
from fgvc.engine.inference import TrainedRun


@pytest.fixture(scope="module")
def data_root(synthetic_set) -> Path:
    return synthetic_set(8)


@pytest.fixture(scope="module")
def run_dir(data_root, tiny_run) -> Path:
    return tiny_run(data_root)


def test_audit_without_a_run(data_root, tmp_path, capsys):
    assert datasets_main(["audit", "auto", str(data_root), "--output", str(tmp_path / "a"), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "auditing cub200 at" in out.err
    assert out.out.startswith(f"audited 24 images of cub200 at {data_root} (train ") and "0 leakage pair(s)" in out.out
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["n_images"] == 24 and s["leakage_pairs"] == 0 and set(s["splits"]) == {"train", "val", "test"}
    assert sum(s["counts"].values()) == 0
    assert "Likely mislabelled</td><td>not checked (give --run)" in (tmp_path / "a" / "audit.html").read_text()
    assert datasets_main(["audit", "auto", str(tmp_path / "nothing"), "--output", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[1].startswith("error: nothing to audit in folder at")  # one error line, exit 2


def test_audit_with_a_run_flags_what_the_model_and_neighbours_contradict(data_root, run_dir, tmp_path, capsys):
    """With --confidence 0 --min-agree 0 every image the model gets wrong is a candidate: exactly the errors of the
    run's own predictions on every split, each with the model's class."""
    out = tmp_path / "a"
    assert datasets_main(["audit", "auto", str(data_root), "--run", str(run_dir), "--output", str(out),
                          "--confidence", "0", "--min-agree", "0", "--no-progress"]) == 0
    assert "likely mislabelled image(s)" in capsys.readouterr().out
    run = TrainedRun.load(run_dir)
    wrong = set()
    for split in ("train", "val", "test"):
        got = run.collect(split, ["logits"])
        paths = [s.path.relative_to(data_root).as_posix() for s in run.dataset(split).samples]
        wrong |= {p for p, y, t in zip(paths, got.prediction.argmax(1).tolist(), got.targets.tolist()) if y != t}
    rows = [r for r in csv.DictReader(open(out / "findings.csv")) if r["kind"] == "mislabelled"]
    assert wrong and {r["path"] for r in rows} == wrong
    assert all(r["predicted"] and r["predicted"] != r["label"] and 0 <= float(r["score"]) <= 1 for r in rows)
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)
    s = json.loads((out / "summary.json").read_text())
    assert s["counts"]["mislabelled"] == len(rows) and s["settings"]["mislabel"]["k"] == 5
    assert "Likely mislabelled" in (out / "audit.html").read_text()
    # the defaults: a 1-epoch model is not confident enough to accuse anyone
    assert datasets_main(["audit", "auto", str(data_root), "--run", str(run_dir), "--output", str(tmp_path / "b"),
                          "--no-progress"]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["counts"]["mislabelled"] == 0


def test_audit_refuses_a_run_of_another_data_set(data_root, run_dir, tmp_path, capsys):
    assert datasets_main(["audit", "flowers102", str(data_root), "--run", str(run_dir),
                          "--output", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --run {run_dir} was trained on data set 'cub200', not 'flowers102'")
    assert datasets_main(["audit", "auto", str(data_root), "--run", str(tmp_path / "no_run"),
                          "--output", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
