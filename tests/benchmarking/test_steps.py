"""`python -m fgvc.bench steps`: each recipe's method step against the plain baseline (tiny models, no timings)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from fgvc.bench import main as bench_main
from fgvc.methods import build_method

REQUIRED = ("kind", "method", "batch", "images_per_s", "ratio", "step_ms", "paired_ratio", "backbone", "img_size",
            "amp", "channels_last", "device", "recipe", "table", "date", "command", "machine")


def _recipe(path: Path, model: str, size: int = 32, batch: int = 2, extra: str = "") -> str:
    path.write_text(f"model: {model}\ndata: {{img_size: {size}}}\ntrain: {{batch_size: {batch}}}\n{extra}")
    return str(path)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_steps_times_each_recipe_against_the_plain_baseline(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    wsdan = _recipe(tmp_path / "wsdan.yaml", "{name: wsdan, backbone: resnet50, args: {num_attentions: 2}}")
    bcnn = _recipe(tmp_path / "bcnn.yaml", "{name: bcnn, backbone: resnet50, args: {pooling: compact, compact_dim: 64}}",
                   extra="train: {optimizer: adamw}\n")
    results = tmp_path / "speed.jsonl"
    argv = ["steps", wsdan, bcnn, "--backbone", "test_resnet.r160_in1k", "--img-size", "40", "--repeats", "1",
            "--warmup", "0", "--device", "cpu", "--num-classes", "5", "--results", str(results)]
    assert bench_main(argv) == 0
    out = capsys.readouterr().out
    assert "ratio = step time / the plain baseline's step time" in out and "| method |" in out
    rows = _rows(results)
    assert [r["method"] for r in rows] == ["baseline", "wsdan", "bcnn"]
    assert [r["recipe"] for r in rows] == ["(plain)", wsdan, bcnn]
    for r in rows:
        assert set(REQUIRED) <= set(r), set(REQUIRED) - set(r)
        assert r["kind"] == "steps" and r["table"] == rows[0]["table"]
        assert (r["backbone"], r["img_size"], r["batch"], r["amp"], r["device"]) == ("test_resnet.r160_in1k", 40, 2,
                                                                                     "none", "cpu")
        assert r["channels_last"] is True  # the recipe says auto: on for a CNN
        assert r["step_ms"] > 0 and r["images_per_s"] > 0 and r["ratio"] > 0
        assert r["command"] == "python -m fgvc.bench " + shlex.join(argv)
    assert rows[0]["ratio"] == 1.0 and rows[0]["paired_ratio"] == 1.0
    assert rows[1]["ratio"] == pytest.approx(rows[1]["step_ms"] / rows[0]["step_ms"], rel=0.01)
    # the recipes' model arguments and optimizers are used (WS-DAN's 2 maps, B-CNN's compact pooling, AdamW)
    want = build_method({"name": "wsdan", "backbone": "test_resnet.r160_in1k", "args": {"num_attentions": 2}}, 5)
    assert rows[1]["params_m"] == round(sum(p.numel() for p in want.parameters()) / 1e6, 2)
    assert (rows[0]["optimizer"], rows[1]["optimizer"], rows[2]["optimizer"]) == ("sgd", "sgd", "adamw")


def test_sizes_come_from_the_first_recipe_and_a_plain_recipe_shares_the_baseline_row(tmp_path: Path) -> None:
    plain = _recipe(tmp_path / "plain.yaml", "{name: baseline, backbone: test_efficientnet.r160_in1k}", size=36,
                    extra="train: {batch_size: 3, channels_last: false}\n")
    wsdan = _recipe(tmp_path / "w.yaml", "{name: wsdan, backbone: x, args: {num_attentions: 2}}", size=99, batch=9)
    results = tmp_path / "speed.jsonl"
    assert bench_main(["steps", plain, wsdan, "--repeats", "1", "--warmup", "0", "--device", "cpu",
                       "--num-classes", "4", "--label", "tiny", "--results", str(results)]) == 0
    rows = _rows(results)
    assert [(r["method"], r["recipe"]) for r in rows] == [("baseline", f"(plain), {plain}"), ("wsdan", wsdan)]
    for r in rows:
        assert (r["backbone"], r["img_size"], r["batch"], r["channels_last"], r["label"]) == (
            "test_efficientnet.r160_in1k", 36, 3, False, "tiny")


def test_steps_refuses_fp16_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = _recipe(tmp_path / "r.yaml", "{name: baseline, backbone: test_resnet.r160_in1k}")
    results = tmp_path / "speed.jsonl"
    assert bench_main(["steps", recipe, "--amp", "fp16", "--device", "cpu", "--results", str(results)]) == 2
    assert "fp16 needs --device cuda" in capsys.readouterr().err and not results.exists()


@pytest.mark.slow  # a process per row: ~8 s
def test_isolate_times_every_row_in_a_process_of_its_own(tmp_path: Path) -> None:
    wsdan = _recipe(tmp_path / "wsdan.yaml", "{name: wsdan, backbone: resnet50, args: {num_attentions: 2}}")
    results = tmp_path / "speed.jsonl"
    argv = ["steps", wsdan, "--backbone", "test_resnet.r160_in1k", "--img-size", "32", "--repeats", "1",
            "--warmup", "0", "--isolate", "--steps-per-process", "1", "--device", "cpu", "--num-classes", "3",
            "--threads", "1", "--results", str(results)]
    assert bench_main(argv) == 0
    rows = _rows(results)
    assert [r["method"] for r in rows] == ["baseline", "wsdan"] and all(r["isolated"] for r in rows)
    assert rows[0]["ratio"] == 1.0 and rows[1]["step_ms"] > 0 and rows[1]["params_m"] > 0
