"""fgvc.deploy.quantize: static and dynamic INT8 of a tiny run, the table, the kept file and its metadata."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from deploy_helpers import files_under

from fgvc.deploy.meta import read_onnx_metadata
from fgvc.deploy.quantize import FP32, STATIC, Row, choose
from fgvc.deploy.runtime import OnnxModel
from fgvc.quantize import main as quantize_main


@pytest.fixture(scope="module")
def quantized(deploy_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "tiny.int8.onnx"
    assert quantize_main([str(deploy_run), "--calib", "4", "--repeats", "3", "--threads", "1", "--out", str(out)]) == 0
    return out


def test_quantize_a_run_writes_the_table_and_the_kept_file(quantized, deploy_run, capsys):
    fp32 = deploy_run / "export" / "model.onnx"  # exported first, with its parity check
    table = json.loads(quantized.with_suffix(".json").read_text())
    assert quantized.is_file() and fp32.is_file() and quantized.with_suffix(".md").is_file()
    rows = {r["variant"]: r for r in table["rows"]}
    assert list(rows) == ["fp32", "static INT8 (QDQ)", "dynamic INT8"]
    kept = [r for r in table["rows"] if r["kept"]]
    assert len(kept) == 1 and kept[0]["variant"] == table["kept"] != "fp32" and kept[0]["file"] == quantized.name
    for r in table["rows"]:
        assert r["size_mb"] > 0 and 0 <= r["top1"] <= 100 and r["latency_b1_ms"] > 0 and r["latency_b32_ms"] > 0
        assert r["threads"] == 1
    assert rows["fp32"]["size_mb"] > 2 * kept[0]["size_mb"]  # INT8 weights: well under half the fp32 file
    assert quantized.stat().st_size < fp32.stat().st_size
    assert "kept" in table["reason"] and table["calib_images"] == 3  # the tiny train split has 3 images
    md = quantized.with_suffix(".md").read_text()
    assert "| fp32 | model.onnx |" in md and "(kept)" in md and table["reason"] in md
    # nothing else left next to the kept file (the other INT8 file and the pre-processed models are gone)
    assert sorted(p.name for p in quantized.parent.iterdir()) == sorted(
        [quantized.name, quantized.with_suffix(".md").name, quantized.with_suffix(".json").name])


def test_quantized_file_keeps_the_metadata_and_is_int8(quantized, deploy_run):
    fp32 = deploy_run / "export" / "model.onnx"
    raw = [(p.key, p.value) for p in onnx.load(str(fp32)).metadata_props]
    assert raw and [(p.key, p.value) for p in onnx.load(str(quantized)).metadata_props] == raw  # unchanged
    ops = {n.op_type for n in onnx.load(str(quantized)).graph.node}
    assert ops & {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}
    logits = OnnxModel(quantized)(np.zeros((2, 3, 32, 32), np.float32))
    assert logits.shape == (2, 3)


def test_quantize_an_onnx_file_finds_its_run(quantized, deploy_run, tmp_path, capsys):
    out = tmp_path / "again.onnx"
    fp32 = deploy_run / "export" / "model.onnx"
    assert quantize_main([str(fp32), "--calib", "2", "--repeats", "2", "--threads", "1", "--out", str(out)]) == 0
    assert out.is_file() and read_onnx_metadata(out) == read_onnx_metadata(fp32)
    assert "| static INT8 (QDQ)" in capsys.readouterr().out


def test_quantize_refuses_bad_input(quantized, deploy_run, tmp_path, capsys):
    before = files_under(deploy_run)
    bare = tmp_path / "bare.onnx"  # an ONNX file that names no run (no fgvc metadata)
    model = onnx.load(str(deploy_run / "export" / "model.onnx"))
    del model.metadata_props[:]
    onnx.save_model(model, str(bare))
    assert quantize_main([str(tmp_path / "missing.onnx")]) == 2
    assert quantize_main([str(deploy_run), "--calib", "0", "--out", str(tmp_path / "x.onnx")]) == 2
    assert quantize_main([str(bare), "--out", str(tmp_path / "y.onnx")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "no such run directory or ONNX file" in err[0] and "--calib must be >= 1" in err[1]
    assert "does not name an existing fgvc run" in err[2]
    assert files_under(deploy_run) == before and sorted(p.name for p in tmp_path.iterdir()) == ["bare.onnx"]


def test_choice_rule():
    fp32 = Row(FP32, "m.onnx", 10.0, 80.0, 5.0, 100.0, 4)
    static = Row(STATIC, "s", 3.0, 79.5, 3.0, 50.0, 4)
    dynamic = Row("dynamic INT8", "d", 3.0, 80.0, 4.0, 90.0, 4)
    assert choose([fp32, static, dynamic])[0] is static  # both within 1 pp: the faster
    static.top1 = 78.0
    best, why = choose([fp32, static, dynamic])
    assert best is dynamic and "also 2.00 pp below fp32" in why
    dynamic.top1 = 70.0
    best, why = choose([fp32, static, dynamic])
    assert best is static and "no INT8 file is within 1 pp" in why
