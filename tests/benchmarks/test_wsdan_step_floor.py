"""benchmarks/wsdan_step_floor.py: the heads-only steps run the real methods' steps without their backbones, and the
script writes its table (rows run in-process here; the script itself starts a fresh process per row)."""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("wsdan_step_floor", REPO / "benchmarks" / "wsdan_step_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~2 s
def test_heads_only_step_leaves_the_backbone_out(monkeypatch):
    monkeypatch.chdir(REPO)
    floor = _script()
    args = argparse.Namespace(backbone="tf_efficientnet_lite0", img_size=64, batch=2)
    from fgvc.benchmarking.speed import build_workload

    for row in ("wsdan, heads only", "plain, heads only"):
        spec, recipe, prepare = floor.row_spec(args, row)
        work = build_workload(spec, recipe)
        prepare(work)
        method = work.method
        work.train_step()
        assert isinstance(method.backbone, floor.StoredFeatures)
        grads = [p.grad for p in method.parameters() if p.requires_grad]
        assert grads == [None] * len(grads)  # set_to_none after the optimizer step: the step ran to its end
    stored = floor.StoredFeatures(torch.ones(2, 4, 3, 3))
    a, b = stored(torch.zeros(1)), stored(torch.zeros(1))
    assert a.is_leaf and a.requires_grad and a is not b


def test_table_and_files(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    floor = _script()
    fake = {"plain": 100.0, "plain, heads only": 2.0, "wsdan": 320.0, "wsdan, heads only": 20.0}
    monkeypatch.setattr(floor, "isolated", lambda args, row: fake[row])
    out = tmp_path / "floor.json"
    assert floor.main(["--rounds", "2", "--out", str(out)]) == 0
    rows = {r["part"]: r["x_plain"] for r in json.loads(out.read_text())["rows"]}
    assert rows["wsdan"] == 3.2 and rows["one backbone pass (plain - plain heads)"] == 0.98
    assert rows["floor: 3 x one backbone pass + wsdan heads"] == round((3 * 98 + 20) / 100, 3)
    assert "| floor: 3 x one backbone pass + wsdan heads | 314.0 | 3.14 |" in out.with_suffix(".md").read_text()
