"""``python -m fgvc.bench pipeline``: runs on a tiny synthetic set and writes well-formed JSON rows (no timings
asserted). (The device input it measures is tested in tests/engine/test_device_input.py.)"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from fgvc import bench


@pytest.fixture(scope="module")
def data_root(synthetic_set: Callable[..., Path]) -> Path:
    return synthetic_set(images_per_class=2, render_size=48)


@pytest.mark.parametrize("levers", ["none", "all"])
def test_pipeline_rows(data_root: Path, tiny_recipe: Callable[..., Path], tmp_path: Path, levers: str) -> None:
    recipe = tiny_recipe(tmp_path / "r.yaml", data_root)
    results = tmp_path / "speed.jsonl"
    argv = ["pipeline", str(recipe), "--images", "2", "--batch", "1", "--workers", "0", "--repeats", "1",
            "--levers", levers, "--label", "tiny", "--results", str(results)]
    assert bench.main(argv) == 0
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    names = [r["loader"] for r in rows]
    assert names[:2] == ["torchvision train", "fgvc train"] and "torchvision eval" in names and "fgvc eval" in names
    if levers == "all":
        assert {"fgvc, float batches train", "fgvc, float batches eval", "fgvc, reduced-scale decode train",
                "fgvc, all levers off train"} <= set(names)
    for r in rows:
        assert r["kind"] == "pipeline" and r["batch"] == 1 and r["workers"] == 0 and r["label"] == "tiny"
        assert r["images"] == 2 and r["images_per_s"] > 0 and r["per_core"] == r["images_per_s"]
        assert r["img_size"] == 32 and r["dataset"] == "cub200" and r["table"] == rows[0]["table"]
        assert r["command"].startswith("python -m fgvc.bench pipeline") and r["machine"]["device"] == "cpu"
    for kind in ("train", "eval"):
        ref = next(r for r in rows if r["loader"] == f"torchvision {kind}")
        assert ref["ratio"] == 1.0
        mine = next(r for r in rows if r["loader"] == f"fgvc {kind}")
        assert mine["ratio"] == pytest.approx(mine["images_per_s"] / ref["images_per_s"])


def test_pipeline_rejects_bad_counts(data_root: Path, tiny_recipe: Callable[..., Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tiny_recipe(tmp_path / "r.yaml", data_root)
    assert bench.main(["pipeline", str(recipe), "--images", "0", "--results", str(tmp_path / "x.jsonl")]) == 2
    assert "--images must be >= 1" in capsys.readouterr().err
