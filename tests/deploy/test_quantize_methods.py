"""fgvc.deploy.quantize on every registered method: ONNX Runtime's symbolic shape inference cannot follow the opset-18
graphs of WS-DAN, B-CNN, RA-CNN and CBAM (a Reduce* op's ``axes`` input, DFT's length), so the pre-processing falls
back to onnx's own shape inference, says so, and every method quantizes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from deploy_helpers import CASES, untrained
from onnx import TensorProto, helper, numpy_helper

from fgvc.deploy import quantize as quantize_mod
from fgvc.deploy.quantize import DYNAMIC, FP32, STATIC, preprocess, quantize_run
from fgvc.deploy.runtime import OnnxModel
from fgvc.errors import DeployError
from fgvc.quantize import main as quantize_main


def _normalize_graph(path) -> None:
    """``F.normalize(x, dim=-1) @ W`` as the dynamo exporter writes it at opset 18: ReduceL2 with its axes as an
    input, Clip, Expand to the input's shape, Div -- the pattern on which WS-DAN's quantization failed."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("ReduceL2", ["x", "axes"], ["norm"], keepdims=1),
        helper.make_node("Clip", ["norm", "eps"], ["clamped"]),
        helper.make_node("Expand", ["clamped", "shape"], ["expanded"]),
        helper.make_node("Div", ["x", "expanded"], ["unit"]),
        helper.make_node("MatMul", ["unit", "w"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(np.array([-1], np.int64), "axes"),
             numpy_helper.from_array(np.array(1e-12, np.float32), "eps"),
             numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32), "w")]
    graph = helper.make_graph(nodes, "normalize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_preprocess_falls_back_where_symbolic_shape_inference_fails(tmp_path):
    src, dst = tmp_path / "n.onnx", tmp_path / "n.pre.onnx"
    _normalize_graph(src)
    q = quantize_mod._quantization()
    try:
        q.quant_pre_process(str(src), str(tmp_path / "plain.onnx"))
    except TypeError:
        pass
    else:
        pytest.skip("this onnxruntime's symbolic shape inference follows ReduceL2's axes input: no fallback needed")
    note = preprocess(src, dst)
    assert note is not None and "onnx's own shape inference" in note and "TypeError" in note
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    import onnxruntime as ort

    before = ort.InferenceSession(str(src)).run(None, {"x": x})[0]
    after = ort.InferenceSession(str(dst)).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)  # the same model, pre-processed


def test_preprocess_error_names_both_attempts(tmp_path, monkeypatch):
    src = tmp_path / "n.onnx"
    _normalize_graph(src)
    q = quantize_mod._quantization()

    def broken(source, target, skip_symbolic_shape=False, **kwargs):
        raise ValueError("with symbolic" if not skip_symbolic_shape else "without symbolic")

    monkeypatch.setattr(q, "quant_pre_process", broken)
    with pytest.raises(DeployError, match="with symbolic shape inference .*with symbolic.* and without it .*without"):
        preprocess(src, tmp_path / "x.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.onnx"]


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_method_quantizes(case, recipe, tmp_path):
    from fgvc.deploy.export import export_run

    run = untrained(recipe, case)
    fp32 = export_run(run, "onnx", tmp_path / "m.onnx", n_parity=0, log=lambda _: None).path
    lines: list[str] = []
    result = quantize_run(run, tmp_path / "m.int8.onnx", fp32=fp32, calib=4, repeats=1, threads=1, test_images=4,
                          log=lines.append)
    assert [r.variant for r in result.rows] == [FP32, STATIC, DYNAMIC] and result.kept.variant != FP32
    assert result.out.is_file() and result.table_md.is_file() and result.table_json.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.json", "m.int8.md", "m.int8.onnx", "m.onnx"]
    ops = {n.op_type for n in onnx.load(str(result.out)).graph.node}
    assert ops & {"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}
    size = run.cfg["data"]["img_size"]
    logits = OnnxModel(result.out)(np.random.default_rng(0).standard_normal((3, 3, size, size)).astype(np.float32))
    assert logits.shape == (3, 3) and np.isfinite(logits).all()
    assert sum(line.startswith("note: onnxruntime's symbolic shape inference") for line in lines) <= 1  # once


@pytest.mark.slow
def test_quantize_cli_on_a_wsdan_run(deploy_data, tiny_run, capsys):
    """The reported failure: ``python -m fgvc.quantize RUN`` on a tiny trained WS-DAN run exits 0."""
    run_dir = tiny_run(deploy_data, "model.name=wsdan", "model.args={num_attentions: 4}", "train.max_steps=2")
    assert quantize_main([str(run_dir), "--calib", "4", "--repeats", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| static INT8 (QDQ)" in out and (run_dir / "export" / "model.int8.onnx").is_file()
