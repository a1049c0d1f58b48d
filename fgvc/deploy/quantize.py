"""INT8 quantization with ONNX Runtime: static (QDQ, calibrated on training images) and dynamic, with a table.

From an fp32 ONNX file written by :mod:`fgvc.deploy.export`:

* **static INT8**: ``onnxruntime.quantization.quant_pre_process`` (symbolic shape inference and graph optimisation;
  onnx's own shape inference where the symbolic one cannot follow the graph, as for every method but the baseline
  and SE-Net at opset 18: :func:`preprocess`), then ``quantize_static`` in QDQ format (QuantizeLinear /
  DequantizeLinear pairs around every quantizable op), MinMax calibration over up to ``calib`` images of the run's
  **train** split, preprocessed with the run's eval transform (no augmentation). Activations U8 (asymmetric),
  weights S8: measured on this repo's AMD EPYC (AVX512-VNNI) CPU with ONNX Runtime 1.32, a ResNet-18 at 224 px ran
  batch 1 in 17.8 ms with U8S8 against 44 ms with ORT's default S8S8 (fp32: 60 ms, 2 threads); per-channel S8S8 was
  no faster (46 ms).
  ``per_channel`` quantizes weights per output channel (usually more accurate, slightly larger).
* **dynamic INT8**: ``quantize_dynamic`` on the same pre-processed model (weights INT8, activations quantized on the
  fly per batch); no calibration data, the fallback where it is the faster one on the CPU at hand.

Every quantized file gets the fp32 file's ``metadata_props`` unchanged (preprocessing, class names), so
``fgvc.predict`` reads it like the fp32 file. :func:`quantize_run` measures each file -- size, top-1 on the test
split, median batch-1 and batch-32 latency after warm-up on ``threads`` intra-op threads -- and keeps as ``out``
the faster INT8 file (batch-1 latency, the single-photo case) among those within :data:`TOP1_MARGIN_PP` points of
fp32 top-1, else the more accurate one; the table (``<out stem>.md`` and ``.json`` next to ``out``) says which and
why. The other INT8 file is measured and discarded.
"""
from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from fgvc import config
from fgvc.deploy.files import Staged, size_mb
from fgvc.deploy.meta import Preprocessing, read_onnx_metadata
from fgvc.deploy.runtime import OnnxModel, default_threads, latency_ms, top1_many
from fgvc.errors import DeployError
from fgvc.extras import require
from fgvc.deploy.export import default_path, export_run, ParityError
from fgvc.engine.inference import TrainedRun

__all__ = ["FP32", "STATIC", "DYNAMIC", "TOP1_MARGIN_PP", "Row", "QuantizeResult", "calibration_reader",
           "preprocess", "quantize_static_file", "quantize_dynamic_file", "copy_metadata", "measure", "choose",
           "render_table", "quantize_run", "run_of_onnx"]

FP32, STATIC, DYNAMIC = "fp32", "static INT8 (QDQ)", "dynamic INT8"
TOP1_MARGIN_PP = 1.0  # an INT8 file within this many points of fp32 top-1 counts as accurate enough
CALIB_BATCH = 16


def _quantization() -> Any:
    return require("onnxruntime.quantization", "onnxruntime", "INT8 quantization", extra="deploy")


def calibration_reader(dataset: Any, input_name: str, limit: int, batch: int | None = None) -> Any:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``limit`` images spread evenly over ``dataset``
    (eval-transformed), as ``{input_name: B x 3 x S x S float32}`` batches of ``batch`` (default 16; a file with a
    fixed batch needs exactly its size, so a short last batch is zero-padded), read lazily batch by batch."""
    import torch

    q = _quantization()
    size = batch or CALIB_BATCH
    n = min(limit, len(dataset))
    idx = [int(round(i)) for i in np.linspace(0, len(dataset) - 1, n)] if n else []

    class Reader(q.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.batches = self._batches()

        def _batches(self) -> Iterator[dict[str, np.ndarray]]:
            for start in range(0, len(idx), size):
                x = torch.stack([dataset[i][0] for i in idx[start:start + size]]).numpy()  # B, 3, S, S
                if len(x) < size:
                    x = np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), np.float32)])
                yield {input_name: np.ascontiguousarray(x, np.float32)}

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

        def rewind(self) -> None:
            self.batches = self._batches()

    return Reader()


def copy_metadata(src: str | Path, dst: str | Path) -> None:
    """``dst``'s ``metadata_props`` become exactly ``src``'s, key for key and string for string (rewrites ``dst``)."""
    onnx = require("onnx", "onnx", "INT8 quantization", extra="deploy")
    props = [(p.key, p.value) for p in onnx.load(str(src), load_external_data=False).metadata_props]
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    for key, value in props:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(model, str(dst))


def preprocess(fp32: Path, dst: Path) -> str | None:
    """``quant_pre_process`` of ``fp32`` into ``dst``: None, or a note when ONNX Runtime's symbolic shape inference
    could not follow the graph and it was pre-processed with onnx's own shape inference instead.

    Why the fallback: ``SymbolicShapeInference`` (ORT 1.32) infers an op it has no rule for by running onnx's
    inference on that node alone, without the values of its constant inputs (it passes them for ``Unsqueeze``
    only). Where the output shape depends on such an input -- the ``axes`` input of ``ReduceL2`` / ``ReduceMax`` /
    ``ReduceSum`` at opset 18 (``F.normalize`` in WS-DAN, B-CNN and RA-CNN; CBAM's channel max), ``DFT``'s length
    (compact bilinear pooling) -- the output loses its shape, and the next op whose rule reads it (``Expand``,
    ``Conv``, ``Slice``) fails (``TypeError: object of type 'NoneType' has no len()``); a fixed batch changes
    nothing. onnx's graph-level inference reads those constants and infers every shape of these graphs, and the
    quantizers need no more (symbolic inference adds symbolic dimension arithmetic, for transformers)."""
    q = _quantization()
    try:
        q.quant_pre_process(str(fp32), str(dst))
        return None
    except Exception as e:
        text = str(e).strip()
        symbolic = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
    try:
        q.quant_pre_process(str(fp32), str(dst), skip_symbolic_shape=True)
    except Exception as e:
        raise DeployError(f"onnxruntime's quant_pre_process failed on {fp32}, with symbolic shape inference "
                          f"({symbolic}) and without it ({type(e).__name__}: {e})") from e
    return (f"note: onnxruntime's symbolic shape inference cannot follow {fp32.name} ({symbolic}; it loses the "
            "shape of an op whose output shape depends on a constant input, such as opset 18's Reduce* axes, and "
            "fails at the next op that reads it); pre-processed with onnx's own shape inference instead")


@contextlib.contextmanager
def _preprocessed(fp32: Path, temp: Path, log: Callable[[str], None]) -> Iterator[Path]:
    """``fp32`` pre-processed once (:func:`preprocess`) next to the staged ``temp`` file, deleted on exit."""
    pre = temp.with_name(temp.stem + ".pre.onnx")
    try:
        note = preprocess(fp32, pre)
        if note:
            log(note)
        yield pre
    finally:
        pre.unlink(missing_ok=True)


def _static(pre: Path, fp32: Path, dst: Path, reader: Any, per_channel: bool) -> None:
    """Static INT8 (QDQ) of the pre-processed ``pre`` into ``dst``, with ``fp32``'s metadata."""
    q = _quantization()
    q.quantize_static(str(pre), str(dst), reader, quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      calibrate_method=q.CalibrationMethod.MinMax)
    copy_metadata(fp32, dst)


def _dynamic(pre: Path, fp32: Path, dst: Path, per_channel: bool) -> None:
    """Dynamic INT8 of the pre-processed ``pre`` into ``dst``, with ``fp32``'s metadata."""
    q = _quantization()
    q.quantize_dynamic(str(pre), str(dst), weight_type=q.QuantType.QInt8, per_channel=per_channel)
    copy_metadata(fp32, dst)


def quantize_static_file(fp32: str | Path, out: str | Path, reader: Any, per_channel: bool = False,
                         log: Callable[[str], None] = print) -> Path:
    """Static INT8 (QDQ) of ``fp32`` calibrated with ``reader`` (:func:`calibration_reader`), written to ``out``."""
    stage = Staged(out)
    with stage as temp, _preprocessed(Path(fp32), temp, log) as pre:
        _static(pre, Path(fp32), temp, reader, per_channel)
        return stage.commit()


def quantize_dynamic_file(fp32: str | Path, out: str | Path, per_channel: bool = False,
                          log: Callable[[str], None] = print) -> Path:
    """Dynamic INT8 of ``fp32``, written to ``out``."""
    stage = Staged(out)
    with stage as temp, _preprocessed(Path(fp32), temp, log) as pre:
        _dynamic(pre, Path(fp32), temp, per_channel)
        return stage.commit()


@dataclass
class Row:
    """One file of the table."""

    variant: str
    file: str
    size_mb: float
    top1: float
    latency_b1_ms: float
    latency_b32_ms: float
    threads: int
    kept: bool = False


def measure(variant: str, model: OnnxModel, top1_value: float, repeats: int = 20, name: str | None = None) -> Row:
    """Size, the given top-1 and median batch-1 / batch-32 latency of one file (``name``: the table's file column,
    default the file's name)."""
    return Row(variant, name or model.path.name, round(size_mb(model.path), 3), round(top1_value, 2),
               round(latency_ms(model, 1, repeats=repeats), 3), round(latency_ms(model, 32, repeats=repeats), 3),
               model.threads)


def choose(rows: list[Row], margin: float = TOP1_MARGIN_PP) -> tuple[Row, str]:
    """The INT8 row to keep and why: the faster (batch-1) among those within ``margin`` points of fp32 top-1, else
    the more accurate (the faster of equally accurate ones)."""
    fp32, int8 = rows[0], rows[1:]
    close = [r for r in int8 if r.top1 >= fp32.top1 - margin]
    if close:
        best = min(close, key=lambda r: (r.latency_b1_ms, r.latency_b32_ms))
        others = [r for r in int8 if r is not best]
        why = (f"kept {best.variant}: within {margin:g} pp of fp32 top-1 ({best.top1:.2f} vs {fp32.top1:.2f} %) and "
               f"the faster at batch 1 ({best.latency_b1_ms:.2f} ms"
               + "".join(f" vs {r.latency_b1_ms:.2f} ms for {r.variant}"
                         + ("" if r in close else f", which is also {fp32.top1 - r.top1:.2f} pp below fp32")
                         for r in others) + ")")
    else:
        best = max(int8, key=lambda r: (r.top1, -r.latency_b1_ms))
        why = (f"kept {best.variant}: no INT8 file is within {margin:g} pp of fp32 top-1 ({fp32.top1:.2f} %), so the "
               f"more accurate one ({best.top1:.2f} %); consider the fp32 file or --per-channel / more --calib images")
    if best.latency_b1_ms > fp32.latency_b1_ms:
        why += (f". Note: on this CPU the fp32 file is faster at batch 1 ({fp32.latency_b1_ms:.2f} ms); INT8 saves "
                f"size ({best.size_mb:.2f} vs {fp32.size_mb:.2f} MB), not time, here")
    return best, why


def render_table(rows: list[Row], reason: str) -> str:
    """The Markdown table and the choice."""
    lines = ["| model | file | size (MB) | top-1 (%) | batch-1 latency (ms) | batch-32 latency (ms) "
             "| intra-op threads |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        mark = " (kept)" if r.kept else ""
        lines.append(f"| {r.variant}{mark} | {r.file} | {r.size_mb:.2f} | {r.top1:.2f} | {r.latency_b1_ms:.2f} | "
                     f"{r.latency_b32_ms:.2f} | {r.threads} |")
    return "\n".join(lines) + f"\n\n{reason}\n"


@dataclass
class QuantizeResult:
    """The table's rows (fp32, static INT8, dynamic INT8), the kept file and the written table files."""

    rows: list[Row]
    kept: Row
    reason: str
    out: Path
    table_md: Path
    table_json: Path


def run_of_onnx(path: str | Path, overrides: list[str] | None = None) -> Any:
    """The :class:`~fgvc.engine.inference.TrainedRun` an fgvc ONNX file was exported from (its metadata's ``run``
    and ``checkpoint``): where the calibration and test images come from."""
    meta = read_onnx_metadata(path)
    run_dir = meta.get("run")
    if not run_dir or not Path(run_dir).is_dir():
        raise DeployError(f"{path} does not name an existing fgvc run in its metadata (run: {run_dir!r}), which "
                          "provides the calibration and test images: quantize the run directory instead")
    return TrainedRun.load(run_dir, meta.get("checkpoint") or "last", overrides or [],
                           meta.get("weights") if meta.get("weights") in ("ema", "model") else "auto")


def quantize_run(run: Any, out: str | Path | None = None, *, fp32: str | Path | None = None, calib: int = 256,
                 per_channel: bool = False, threads: int | None = None, repeats: int = 20,
                 test_images: int | None = None, log: Callable[[str], None] = print) -> QuantizeResult:
    """fp32 ONNX (``fp32``, or exported now to ``RUN/export/model.onnx`` with a parity check), static and dynamic
    INT8, the table; keeps the chosen INT8 file as ``out`` (default ``<fp32 stem>.int8.onnx`` next to it)."""
    if calib < 1:
        raise DeployError(f"--calib must be >= 1 image, got {calib}")
    if threads is not None and threads < 1:
        raise DeployError(f"--threads must be >= 1, got {threads}")
    threads = threads or default_threads()
    if fp32 is None:
        result = export_run(run, "onnx", default_path(run, "onnx"), log=log)
        if not result.passed:
            raise ParityError(result)
        log(f"fp32: {result.path} ({result.parity.line() if result.parity else 'parity skipped'})")
        fp32 = result.path
    fp32 = Path(fp32)
    out = Path(out) if out is not None else fp32.with_name(f"{fp32.stem}.int8.onnx")
    if out.resolve() == fp32.resolve():
        raise DeployError(f"--out {out} is the fp32 file itself: choose another name")
    prep = Preprocessing.from_metadata(read_onnx_metadata(fp32), fp32)
    datasets, test_split = {}, config.scored_split(run.cfg)
    for split in (run.cfg["data"]["train_split"], test_split):
        ds = copy.copy(run.dataset(split))
        ds.transform = prep.transform()  # the file's own preprocessing (its --img-size)
        datasets[split] = ds
    train, test = datasets[run.cfg["data"]["train_split"]], datasets[test_split]
    base = OnnxModel(fp32, threads)
    stages = {STATIC: Staged(out), DYNAMIC: Staged(out.with_name(f"{out.stem}.dynamic{out.suffix}"))}
    with stages[STATIC] as static_tmp, stages[DYNAMIC] as dynamic_tmp:
        with _preprocessed(fp32, static_tmp, log) as pre:  # once for both
            log(f"static INT8: calibrating on {min(calib, len(train))} image(s) of split "
                f"'{run.cfg['data']['train_split']}'")
            _static(pre, fp32, static_tmp, calibration_reader(train, base.input_name, calib, base.batch),
                    per_channel)
            _dynamic(pre, fp32, dynamic_tmp, per_channel)
        models = {FP32: base, STATIC: OnnxModel(static_tmp, threads), DYNAMIC: OnnxModel(dynamic_tmp, threads)}
        log(f"top-1 on split '{test_split}' and latency ({threads} intra-op thread(s)) ...")
        scores = top1_many(models, test, limit=test_images, num_workers=run.cfg["data"]["num_workers"])
        rows = [measure(v, m, scores[v], repeats, name="(discarded)" if v != FP32 else None)
                for v, m in models.items()]
        kept, reason = choose(rows)
        kept.kept, kept.file = True, out.name
        stages[kept.variant].commit(out)
    table = render_table(rows, reason)
    md, js = out.with_suffix(".md"), out.with_suffix(".json")
    for path, text in ((md, table), (js, json.dumps({"rows": [asdict(r) for r in rows], "kept": kept.variant,
                                                      "reason": reason, "out": str(out), "fp32": str(fp32),
                                                      "calib_images": min(calib, len(train)),
                                                      "per_channel": per_channel, "threads": threads}, indent=2))):
        stage = Staged(path)
        with stage as temp:
            temp.write_text(text)
            stage.commit()
    return QuantizeResult(rows, kept, reason, out, md, js)
