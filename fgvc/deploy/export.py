"""Export a trained run's headline prediction to ONNX or TorchScript, preprocessing inside, checked for parity.

What is exported: ``images B, 3, S, S -> Method.infer(images).logits[headline]`` (``B, K``, fp32, CPU), the number
``final.json``'s top-1 scores, for every registered method (WS-DAN's ``refined`` includes its data-dependent
test-time object box and crop; RA-CNN's ``fused`` includes its zooms). Should the headline ever fail to export, the
method's other predictions are tried in turn and the one exported is named in one printed line and in the metadata
(``prediction``); with the current methods and torch this does not happen.

* ONNX: ``torch.onnx.export(..., dynamo=True)``, the torch.export-based exporter (opset :data:`DEFAULT_OPSET`). The
  TorchScript-based exporter (``dynamo=False``, opset 17) cannot export compact bilinear pooling (``aten::fft_rfft``)
  nor RA-CNN's zoom (``affine_grid`` needs opset 20 there) and is deprecated; the dynamo exporter handles every
  method with standard ONNX operators only (RoiAlign, Einsum, DFT, GridSample ... no custom ops). The batch axis is
  dynamic (named ``batch``) unless ``static_batch`` fixes it; height and width are always fixed at ``S``.
* TorchScript: ``torch.jit.trace`` (the batch axis stays free), saved with ``_extra_files["fgvc.json"]``.

Both carry :func:`fgvc.deploy.meta.run_metadata`. Two layers are traced in an equivalent, export-friendly form
(:func:`fgvc.deploy.traceable.export_friendly`: WS-DAN's crop keeps the batch axis symbolic, compact bilinear
pooling's count sketch avoids a scatter that ONNX Runtime computes wrongly on several threads). After writing, the
file is run (ONNX Runtime CPU / ``torch.jit.load``) next to the PyTorch model on up to 64 images of the run's test
split (:mod:`fgvc.deploy.parity`); only a file that passes is renamed to its destination, one that fails is kept
as ``<name>.parity-failed<suffix>`` for inspection. ``--img-size`` is tried with a forward pass first: a size the
backbone cannot take, or one smaller than its total stride, is refused before anything is written.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from fgvc.config import scored_split
from fgvc.deploy.files import Staged
from fgvc.deploy.meta import TORCHSCRIPT_META, Preprocessing, run_metadata, set_onnx_metadata
from fgvc.deploy.parity import MAX_IMAGES, ParityReport, check_parity, parity_images
from fgvc.deploy.runtime import OnnxModel, TorchScriptModel
from fgvc.deploy.traceable import export_friendly
from fgvc.errors import DeployError, ParityError
from fgvc.extras import require

__all__ = ["FORMATS", "DEFAULT_OPSET", "INPUT_NAME", "OUTPUT_NAME", "PredictionHead", "ExportResult", "ParityError",
           "default_path", "export_run", "export_onnx", "export_torchscript"]

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
DEFAULT_OPSET = 18  # the dynamo exporter's lowest own opset (its conversion to 17 fails on these models)
INPUT_NAME, OUTPUT_NAME = "images", "logits"
EXAMPLE_BATCH = 2  # the tracing example: 1 would let torch.export specialise the batch axis to 1


class PredictionHead(nn.Module):
    """``images B, 3, S, S -> method.infer(images).logits[key]`` (``B, K`` float32): what an exported file computes."""

    def __init__(self, method: nn.Module, key: str) -> None:
        super().__init__()
        self.method, self.key = method, key

    def forward(self, images: Tensor) -> Tensor:
        return self.method.infer(images).logits[self.key].float()


@dataclass
class ExportResult:
    """Where the file went and what it holds; ``parity`` is None when the check was skipped."""

    path: Path
    format: str
    prediction: str  # the Outputs.logits key the file computes
    headline: str  # the method's headline key
    note: str | None  # why prediction != headline, if it is not
    metadata: dict[str, Any]
    parity: ParityReport | None

    @property
    def passed(self) -> bool:
        return self.parity is None or self.parity.passed



def default_path(run: Any, fmt: str) -> Path:
    """``RUN/export/model.onnx`` or ``RUN/export/model.pt``."""
    return Path(run.run_dir) / "export" / f"model{FORMATS[fmt]}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Exporter chatter (progress lines on stdout, tracer and deprecation warnings) kept off the user's terminal."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@torch.no_grad()
def _probe(method: nn.Module, prep: Preprocessing, native: Preprocessing, backbone: str) -> tuple[str, list[str]]:
    """Run the method once at the export size (the headline and every logits key); refuse a size it cannot take,
    or one below the backbone's total stride (its feature map would be padding only)."""
    try:
        out = method.infer(torch.zeros(EXAMPLE_BATCH, 3, prep.img_size, prep.img_size))
    except Exception as e:
        raise DeployError(f"--img-size {prep.img_size}: the {backbone} backbone of this run cannot take "
                          f"{prep.img_size} x {prep.img_size} images ({_first_line(e)}); use the run's own size "
                          f"{native.img_size} or another the backbone accepts") from e
    if prep.img_size != native.img_size:
        fmap = method.infer(torch.zeros(1, 3, native.img_size, native.img_size)).feature_map
        stride = max(round(native.img_size / fmap.shape[-1]), 1)
        if prep.img_size < stride:
            raise DeployError(f"--img-size {prep.img_size} is smaller than the {backbone} backbone's total stride "
                              f"({stride} px): its feature map would be padding only; use at least {stride} (the run "
                              f"was trained at {native.img_size})")
    return out.headline, [out.headline, *[k for k in out.logits if k != out.headline]]


def _write_onnx(head: nn.Module, example: Tensor, path: Path, opset: int, static: bool, meta: dict[str, Any]) -> None:
    onnx = require("onnx", "onnx", "ONNX export", extra="deploy")
    require("onnxscript", "onnxscript", "ONNX export (torch's dynamo exporter)", extra="deploy")
    dynamic = None if static else ({0: torch.export.Dim("batch", min=1, max=65536)},)
    with _quiet(), export_friendly(head):
        program = torch.onnx.export(head, (example,), None, dynamo=True, opset_version=opset, verbose=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic,
                                    report=False, optimize=True)
    model = program.model_proto
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise DeployError(f"--opset {opset}: the exporter wrote opset {written} instead; use --opset {written}")
    set_onnx_metadata(model, meta)
    onnx.save_model(model, str(path))


def _write_torchscript(head: nn.Module, example: Tensor, path: Path, meta: dict[str, Any]) -> None:
    with _quiet(), export_friendly(head):
        traced = torch.jit.trace(head, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})


def export_run(run: Any, fmt: str = "onnx", out: str | Path | None = None, *, opset: int | None = None,
               img_size: int | None = None, static_batch: int | None = None, split: str | None = None,
               n_parity: int = MAX_IMAGES, log: Callable[[str], None] = print) -> ExportResult:
    """Export ``run`` (a :class:`~fgvc.engine.inference.TrainedRun`) to ``out`` (default :func:`default_path`) and
    check parity on ``n_parity`` images of ``split`` (default the run's test split; 0 skips the check).

    ``img_size``: the file's input side (default the run's eval input); ``static_batch``: a fixed batch size (ONNX
    only). A failed parity check does not raise: the result's ``passed`` is False and the file is at
    ``<name>.parity-failed<suffix>``. User errors raise :class:`DeployError` with nothing written."""
    if fmt not in FORMATS:
        raise DeployError(f"unknown export format '{fmt}': choose onnx or torchscript")
    if fmt != "onnx" and (opset is not None or static_batch is not None):
        raise DeployError(f"--opset and --static-batch apply to --format onnx, not {fmt} (a traced TorchScript file "
                          "takes any batch)")
    if opset is not None and opset < DEFAULT_OPSET:
        raise DeployError(f"--opset {opset}: the dynamo exporter writes opset {DEFAULT_OPSET} and newer (its version "
                          f"conversion down to {opset} fails on these models); use --opset {DEFAULT_OPSET} or higher")
    if static_batch is not None and static_batch < 1:
        raise DeployError(f"--static-batch must be >= 1, got {static_batch}")
    if img_size is not None and img_size < 1:
        raise DeployError(f"--img-size must be a positive number of pixels, got {img_size}")
    opset = DEFAULT_OPSET if fmt == "onnx" and opset is None else opset
    try:
        return _export(run, fmt, out, opset, img_size, static_batch, split, n_parity, log)
    finally:
        run.runtime.prepare(run.method)  # back on the run's device: the run stays usable after an export


def _export(run: Any, fmt: str, out: str | Path | None, opset: int | None, img_size: int | None,
            static_batch: int | None, split: str | None, n_parity: int, log: Callable[[str], None]) -> ExportResult:
    native = Preprocessing.from_run(run)
    prep = Preprocessing.from_run(run, img_size)
    method = run.method.to("cpu", memory_format=torch.contiguous_format).float().eval()  # the file: fp32 on CPU
    backbone = run.cfg["model"]["backbone"]
    headline, keys = _probe(method, prep, native, backbone)
    images = None
    if n_parity > 0:  # read the images before exporting: a missing data set fails fast, with nothing written
        dataset = copy.copy(run.dataset(scored_split(run.cfg, split)))
        dataset.transform = prep.transform()
        images = parity_images(dataset, n_parity)
    example = torch.zeros(static_batch or EXAMPLE_BATCH, 3, prep.img_size, prep.img_size)
    exporter = (f"torch.onnx.export(dynamo=True) torch {torch.__version__}" if fmt == "onnx"
                else f"torch.jit.trace torch {torch.__version__}")
    stage = Staged(out if out is not None else default_path(run, fmt))
    with stage as temp:
        errors: list[str] = []
        for key in keys:
            meta = run_metadata(run, prep, key, headline, static_batch, exporter, opset)
            head = PredictionHead(method, key).eval()
            try:
                if fmt == "onnx":
                    _write_onnx(head, example, temp, opset, static_batch is not None, meta)
                else:
                    _write_torchscript(head, example, temp, meta)
                break
            except DeployError:
                raise
            except Exception as e:  # the exporter could not take this prediction: try the method's next one
                errors.append(f"'{key}': {_first_line(e)}")
        else:
            raise DeployError(f"could not export any prediction of {run.cfg['model']['name']} to {fmt} (opset "
                              f"{opset}): " + "; ".join(errors))
        note = None
        if key != headline:
            note = (f"the headline prediction '{headline}' could not be exported ({errors[0]}); this file computes "
                    f"'{key}' instead")
            log(f"note: {note}")
        exported = OnnxModel(temp) if fmt == "onnx" else TorchScriptModel(temp)
        report = check_parity(head, exported, images) if images is not None else None  # PyTorch at 32
        final = stage.final
        if report is not None and not report.passed:
            final = final.with_name(f"{final.stem}.parity-failed{final.suffix}")
        path = stage.commit(final)
    return ExportResult(path, fmt, key, headline, note, meta, report)


def export_onnx(run: Any, path: str | Path | None = None, *, opset: int = DEFAULT_OPSET, img_size: int | None = None,
                static_batch: int | None = None, n_parity: int = MAX_IMAGES) -> Path:
    """The run's headline prediction as an ONNX file at ``path`` (default ``RUN/export/model.onnx``); raises
    :class:`ParityError` when the file disagrees with PyTorch (``n_parity=0`` skips the check)."""
    result = export_run(run, "onnx", path, opset=opset, img_size=img_size, static_batch=static_batch,
                        n_parity=n_parity, log=lambda _: None)
    if not result.passed:
        raise ParityError(result)
    return result.path


def export_torchscript(run: Any, path: str | Path | None = None, *, img_size: int | None = None,
                       n_parity: int = MAX_IMAGES) -> Path:
    """The run's headline prediction as a TorchScript file at ``path`` (default ``RUN/export/model.pt``); raises
    :class:`ParityError` when it disagrees with PyTorch."""
    result = export_run(run, "torchscript", path, img_size=img_size, n_parity=n_parity, log=lambda _: None)
    if not result.passed:
        raise ParityError(result)
    return result.path
