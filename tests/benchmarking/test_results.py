"""The pipeline/steps/infer record contract (fgvc.benchmarking.results) and ``python -m fgvc.bench tables``."""
from __future__ import annotations

import json

import pytest

from fgvc.bench import main as bench_main
from fgvc.benchmarking.results import finish_table, format_rows, latest_tables, read_rows, write_speed_md

MACHINE = {"device_name": "Test CPU", "cpu_count": 2, "torch_threads": 2, "torch": "2.x"}


def _rows(kind: str, name: str, ips: list[float]) -> list[dict]:
    return [{name: f"row{i}", "batch": 32, "images_per_s": v, "ratio": v / ips[0]} for i, v in enumerate(ips)]


def test_finish_table_stamps_prints_and_appends(tmp_path, capsys):
    path = tmp_path / "speed.jsonl"
    out = finish_table("infer", _rows("infer", "path", [10.0, 25.0]), "python -m fgvc.bench infer X", MACHINE, path)
    text = capsys.readouterr().out
    assert "| path |" in text and "eager fp32" in text
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 2 and lines == out
    for rec in lines:
        assert rec["kind"] == "infer" and rec["batch"] == 32 and rec["machine"] == MACHINE
        assert {"path", "images_per_s", "ratio", "table", "date", "command"} <= set(rec)
    assert lines[0]["table"] == lines[1]["table"] and lines[1]["ratio"] == pytest.approx(2.5)


def test_finish_table_refuses_incomplete_rows(tmp_path):
    with pytest.raises(ValueError, match="needs ratio"):
        finish_table("steps", [{"method": "wsdan", "batch": 8, "images_per_s": 3.0}], "cmd", MACHINE, None)
    with pytest.raises(ValueError, match="kind must be"):
        finish_table("nope", [], "cmd", MACHINE, None)


def test_latest_table_per_kind_and_device_and_speed_md(tmp_path):
    path = tmp_path / "speed.jsonl"
    path.write_text(json.dumps({"date": "2026-01-01", "command": "old speed line", "train_images_per_s": 1}) + "\n")
    first = finish_table("steps", _rows("steps", "method", [4.0, 1.0]), "steps old", MACHINE, path, echo=False)
    second = finish_table("steps", _rows("steps", "method", [5.0, 2.0]), "steps new", MACHINE, path, echo=False)
    for r in second:  # same second: make the order explicit
        r["date"] = "2099-01-01T00:00:00"
    path.write_text("\n".join(json.dumps(r) for r in first + second) + "\n")
    gpu = dict(MACHINE, device_name="Test GPU")
    finish_table("pipeline", _rows("pipeline", "loader", [100.0, 250.0]), "pipe", gpu, path, echo=False)
    tables = latest_tables(read_rows(path))
    assert [t[0]["kind"] for t in tables] == ["pipeline", "steps"]
    assert tables[1][0]["command"] == "steps new"
    md = write_speed_md(path, tmp_path / "speed.md").read_text()
    assert "## Data pipeline: Test GPU" in md and "## Training step: Test CPU" in md
    assert "`steps new`" in md and "`steps old`" not in md
    assert format_rows(tables[0]).count("\n") == 3  # header, rule, 2 rows


def test_tables_command(tmp_path):
    path = tmp_path / "speed.jsonl"
    finish_table("infer", _rows("infer", "path", [10.0, 15.0]), "cmd", MACHINE, path, echo=False)
    out = tmp_path / "speed.md"
    assert bench_main(["tables", "--results", str(path), "--out", str(out)]) == 0
    assert "## Inference: Test CPU" in out.read_text()
