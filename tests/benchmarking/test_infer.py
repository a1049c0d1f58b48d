"""``python -m fgvc.bench infer`` on a tiny run and a tiny recipe: it runs, writes well-formed rows (no timing
assertions: timings belong in benchmarks/), checks every path's predictions against eager, and reports a path that
cannot run here instead of crashing."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fgvc.bench import main as bench_main

FIELDS = {"kind", "path", "batch", "images_per_s", "ratio", "ms_per_batch", "agrees", "max_abs_diff", "exact",
          "default", "table", "date", "command", "machine"}
HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))
FAST = ["--images", "6", "--batches", "1", "4", "--repeats", "1", "--rounds", "1"]


@pytest.fixture(scope="module")
def run_dir(synthetic_set, tiny_run) -> Path:
    return tiny_run(synthetic_set(4))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow  # every inference path: ~5 s
def test_infer_table_has_every_path_checked_against_eager(run_dir, tmp_path, capsys):
    results = tmp_path / "speed.jsonl"
    paths = ["eager", "channels_last", "torchscript", "onnx", "bf16"]
    assert bench_main(["infer", str(run_dir), *FAST, "--paths", *paths, "--results", str(results)]) == 0
    rows = _rows(results)
    assert [(r["path"], r["batch"]) for r in rows] == [(p, b) for b in (1, 4) for p in paths]
    assert len({r["table"] for r in rows}) == 1 and {r["label"] for r in rows} == {str(run_dir)}  # default label
    for r in rows:
        assert FIELDS <= set(r) and r["kind"] == "infer" and isinstance(r["agrees"], (bool, type(None)))
    eager = [r for r in rows if r["path"] == "eager"]
    assert all(r["ratio"] == 1.0 and r["exact"] and r["agrees"] and r["max_abs_diff"] == 0.0 for r in eager)
    by = {(r["path"], r["batch"]): r for r in rows}
    assert by["channels_last", 4]["agrees"] and by["torchscript", 4]["exact"]
    assert not by["bf16", 4]["exact"]  # bf16 is approximate: never exact, never the default
    if HAS_ORT:
        assert by["onnx", 4]["exact"] and by["onnx", 4]["setup_s"] > 0 and by["onnx", 4]["default"]
    else:  # no onnxruntime: the row says so and the table goes on
        assert by["onnx", 4]["images_per_s"] is None and "not installed" in by["onnx", 4]["note"]
    assert sum(r["default"] for r in rows if r["batch"] == 4) == 1
    out = capsys.readouterr().out
    assert "| path | batch |" in out and "fastest exact path at batch 4:" in out


def test_a_failing_compile_is_a_row_not_a_crash(run_dir, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler on this machine")

    monkeypatch.setattr(torch, "compile", broken)
    results = tmp_path / "speed.jsonl"
    assert bench_main(["infer", str(run_dir), *FAST, "--paths", "eager", "compile", "--results", str(results)]) == 0
    compiled = [r for r in _rows(results) if r["path"] == "compile"]
    assert len(compiled) == 2 and all(r["images_per_s"] is None and "no C++ compiler" in r["note"] for r in compiled)


def test_a_recipe_is_benchmarked_with_its_untrained_head(synthetic_set, tiny_recipe, tmp_path):
    recipe = tiny_recipe(tmp_path / "r.yaml", synthetic_set(4))
    results = tmp_path / "speed.jsonl"
    assert bench_main(["infer", str(recipe), *FAST, "--paths", "eager", "channels_last", "--label", "tiny",
                       "--results", str(results)]) == 0
    rows = _rows(results)
    assert {r["label"] for r in rows} == {"tiny"}
    assert {r["path"] for r in rows} == {"eager", "channels_last"} and all(r["agrees"] for r in rows)
    assert any(r["default"] and r["path"] == "channels_last" for r in rows)  # a recipe: its PyTorch path (CNN)


def test_bad_arguments_are_one_line_errors(run_dir, tmp_path, capsys):
    assert bench_main(["infer", str(tmp_path / "missing"), "--results", str(tmp_path / "s.jsonl")]) == 2
    assert bench_main(["infer", str(run_dir), "--images", "0", "--results", str(tmp_path / "s.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no such run directory" in err and "--images" in err and not (tmp_path / "s.jsonl").exists()
