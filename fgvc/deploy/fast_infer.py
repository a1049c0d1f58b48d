"""The fast inference path of a trained run: the quickest way to its logits that computes what PyTorch computes.

The ways (:data:`PATHS`), each ``normalised images B, 3, S, S -> headline logits B, K`` (float32, on the CPU):

* ``eager``: PyTorch fp32, contiguous NCHW (the reference row of ``fgvc.bench infer``);
* ``channels_last``: PyTorch fp32, NHWC weights and input (what ``train.channels_last: auto`` gives CNN backbones);
* ``compile``: ``torch.compile`` of the headline in the run's layout (seconds of compilation per input shape);
* ``torchscript`` / ``onnx``: the file :mod:`fgvc.deploy.export` writes, run by ``torch.jit`` / ONNX Runtime (CPU);
* ``bf16`` / ``fp16``: PyTorch under autocast (approximate: never exact, never chosen; bench rows only).

:class:`Backend` is what :func:`use_backend` installs on a :class:`~fgvc.engine.inference.TrainedRun` for ``fgvc.evaluate`` and ``fgvc.predict``
(``--backend``, default ``auto``). ``auto`` considers ``onnx`` for a trained run evaluated on the CPU in fp32, the
fastest exact path ``fgvc.bench infer`` measured there (tf_efficientnet_lite0, 160 px, 2 cores), and runs it only
where it pays back (:mod:`fgvc.deploy.auto_backend`): a file already cached for these weights, or enough images that
the expected saving exceeds the export's cost (about 1,500 for lite0 on 2 cores; never a few photos); it decides
after the first batch, which PyTorch runs anyway, and says its choice and why in one line (stderr). Otherwise, and
on CUDA, under AMP, with DDP, for a recipe or without onnxruntime, it is the run's own PyTorch path
(``channels_last`` for CNNs, ``eager`` for vision transformers). An exported file is cached as
``RUN/cache/infer/<checkpoint>-<weights>.onnx`` next to a key of the weights, the model keys, the input size and the
torch version (``--backend onnx`` always exports, or reuses that file); a changed checkpoint or ``--set``
re-exports.

No path is faster by being wrong: a file or compiled path is checked against PyTorch on the first batch of every
command (:func:`fgvc.deploy.parity.compare`: the same top-1 for every image, logits within the tolerance of
:func:`fgvc.deploy.parity.rel_tol_for`, wider where CUDA's fp32 reference itself runs TF32), and on a
disagreement or an error the command goes on with PyTorch and says why. Such a path gives the headline logits only:
where every prediction of a multi-head method (WS-DAN's raw / crop / refined) or other outputs are needed, PyTorch runs.
"""
from __future__ import annotations

import atexit
import hashlib
import importlib.util
import json
import shutil
import tempfile
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from fgvc.deploy.auto_backend import decide, export_seconds, record_export_seconds
from fgvc.deploy.export import FORMATS, PredictionHead, export_run
from fgvc.deploy.meta import Preprocessing
from fgvc.deploy.model_cost import logits_fn
from fgvc.deploy.runtime import OnnxModel, TorchScriptModel
from fgvc.deploy.parity import compare, rel_tol_for
from fgvc.engine.inference import TrainedRun, flip_average
from fgvc.errors import DeployError, PathUnavailable
from fgvc.methods.base import Outputs

__all__ = ["use_backend", "PATHS", "BACKENDS", "InferPath", "PathUnavailable", "pytorch_path", "auto_choice", "weights_key",
           "cached_file", "exported_file", "build_path", "check_available", "Backend"]

PATHS = ("eager", "channels_last", "compile", "torchscript", "onnx", "bf16", "fp16")
BACKENDS = ("auto", "eager", "channels_last", "compile", "torchscript", "onnx")  # fgvc.evaluate / predict --backend
FILE_PATHS = ("torchscript", "onnx")


@dataclass
class InferPath:
    """One way to the headline logits: ``fn(images on the run's device) -> B, K`` float32 CPU logits."""

    name: str
    fn: Callable[[Tensor], Tensor]
    setup_s: float = 0.0  # seconds spent exporting (0 for a cached file and the PyTorch paths)
    detail: str = ""  # how it runs, for a command's report line


def pytorch_path(run: Any) -> str:
    """The run's own PyTorch path: ``channels_last`` when its runtime uses it (CNNs under ``auto``), else ``eager``."""
    return "channels_last" if run.runtime.channels_last else "eager"


def auto_choice(run: Any) -> tuple[str, str]:
    """``(path, why)`` of ``--backend auto`` for ``run`` (see the module doc)."""
    rt, own = run.runtime, pytorch_path(run)
    if rt.device.type != "cpu":
        return own, f"on {rt.device.type} the PyTorch path is the fast one (fgvc runs exported files on the CPU)"
    if rt.amp != "none":
        return own, f"train.amp={rt.amp}: the PyTorch path under autocast"
    if rt.env.enabled:
        return own, "distributed evaluation runs the PyTorch path on every rank"
    if run.recipe is not None:
        return own, "a recipe: no trained checkpoint to cache an export of"
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        return own, f"{', '.join(missing)} not installed (pip install 'fgvc[deploy]' for the faster onnx path)"
    return "onnx", "the fastest exact path on the CPU (fgvc.bench infer)"


def weights_key(run: Any, fmt: str, img_size: int) -> str:
    """A digest of everything an exported file depends on: the weights, the model and data keys, the input size, the
    format and the torch version."""
    h = hashlib.blake2b(digest_size=16)
    meta = {"format": fmt, "img_size": img_size, "torch": torch.__version__, "model": run.cfg["model"],
            "data_config": run.data_config, "method": type(run.method).__name__}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name, value in run.method.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _temp_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fgvc-infer-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _cache_paths(run: Any, fmt: str, folder: Path) -> tuple[Path, Path]:
    """``folder/<checkpoint>-<weights>.<ext>`` and the ``.key`` file beside it."""
    path = folder / f"{run.checkpoint}-{run.weights}{FORMATS[fmt]}"
    return path, path.with_name(path.name + ".key")


def _run_key(run: Any, fmt: str) -> str:
    return weights_key(run, fmt, Preprocessing.from_run(run).img_size)


def _key_matches(key_file: Path, key: str) -> bool:
    return key_file.is_file() and key_file.read_text().strip() == key


def cached_file(run: Any, fmt: str, folder: Path) -> Path | None:
    """``folder/<checkpoint>-<weights>.<ext>`` when it exists with the key (:func:`weights_key`) of ``run`` as it is
    now, else None."""
    path, key_file = _cache_paths(run, fmt, folder)
    if not (path.is_file() and key_file.is_file()):
        return None
    return path if _key_matches(key_file, _run_key(run, fmt)) else None


def exported_file(run: Any, fmt: str, folder: Path | None = None, cache: bool = False) -> tuple[Path, float, str]:
    """``(file, seconds spent exporting, detail)``: the run's headline exported to ``fmt`` (``onnx`` or
    ``torchscript``, no parity check here: :class:`Backend` checks the first batch) into ``folder`` (default a
    temporary folder). ``cache``: reuse ``<checkpoint>-<weights>.<ext>`` in ``folder`` when its key
    (:func:`weights_key`) matches (:func:`cached_file`), else export it, write the key beside it and record the
    export's seconds (:func:`fgvc.deploy.auto_backend.record_export_seconds`)."""
    folder = folder or _temp_folder()
    path, key_file = _cache_paths(run, fmt, folder)
    key = _run_key(run, fmt) if cache else ""  # hashed once: the check and the key written after the export
    if cache and path.is_file() and _key_matches(key_file, key):
        return path, 0.0, f"cached export {path}"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = export_run(run, fmt, path, n_parity=0, log=lambda _: None)
    seconds = time.perf_counter() - t0
    if cache:
        key_file.write_text(key + "\n")
        record_export_seconds(folder, fmt, seconds)
    what = "" if result.prediction == result.headline else f", prediction '{result.prediction}'"
    return result.path, seconds, f"exported to {result.path} in {seconds:.1f} s{what}"


def _compiled(run: Any) -> Callable[[Tensor], Tensor]:
    """``torch.compile`` of the run's headline in its own layout (compiled at the first call of each input shape)."""
    rt = run.runtime
    layout = torch.channels_last if rt.channels_last else torch.contiguous_format
    size = Preprocessing.from_run(run).img_size
    with torch.inference_mode():  # which logits key is the headline: one image at the run's input size
        headline = run.method.infer(torch.zeros(1, 3, size, size, device=rt.device)).headline
    compiled = torch.compile(PredictionHead(run.method, headline).eval())

    @torch.inference_mode()
    def fn(images: Tensor) -> Tensor:
        return compiled(images.to(rt.device).contiguous(memory_format=layout)).float().cpu()

    return fn


def _file_fn(run: Any, fmt: str, path: Path) -> Callable[[Tensor], Tensor]:
    model = OnnxModel(path, run.runtime.threads or None) if fmt == "onnx" else TorchScriptModel(path)

    def fn(images: Tensor) -> Tensor:
        return torch.from_numpy(model(images.detach().float().cpu().contiguous().numpy()))

    return fn


def build_path(run: Any, name: str, folder: Path | None = None, cache: bool = False) -> InferPath:
    """The path ``name`` (:data:`PATHS`) of ``run``; the PyTorch ones work on copies of the method, ``compile`` and
    the exported files on the run's own (``folder`` / ``cache``: see :func:`exported_file`).
    :class:`PathUnavailable` when it cannot run here."""
    device = run.runtime.device
    if name in ("eager", "channels_last"):
        return InferPath(name, logits_fn(run.method, device, name == "channels_last"),
                         detail=f"PyTorch fp32, {'channels-last' if name == 'channels_last' else 'contiguous'}")
    if name in ("bf16", "fp16"):
        if name == "fp16" and device.type != "cuda":
            raise PathUnavailable("fp16 autocast needs CUDA")
        return InferPath(name, logits_fn(run.method, device, run.runtime.channels_last, name),
                         detail=f"PyTorch {name} autocast (approximate)")
    if name == "compile":
        return InferPath(name, _compiled(run), detail="torch.compile (compiled at the first batch of each shape)")
    if name not in FILE_PATHS:
        raise ValueError(f"unknown inference path {name!r}; choose from {', '.join(PATHS)}")
    check_available(run, name)
    path, seconds, detail = exported_file(run, name, folder, cache)
    runner = "ONNX Runtime" if name == "onnx" else "torch.jit"
    return InferPath(name, _file_fn(run, name, path), seconds, f"{runner}, {detail}")


def check_available(run: Any, name: str) -> None:
    """:class:`PathUnavailable` when the file path ``name`` cannot run for ``run`` here (before any export)."""
    device = run.runtime.device
    if name in FILE_PATHS and device.type != "cpu":
        raise PathUnavailable(f"{name}: fgvc runs exported files on the CPU, this run is on {device.type}")
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if name == "onnx" and missing:
        raise PathUnavailable(f"onnx: {', '.join(missing)} not installed (pip install 'fgvc[deploy]')")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:200]


class Backend:
    """The path a :class:`TrainedRun` computes logits with in evaluate / predict (``requested``: :data:`BACKENDS`).

    ``eager`` / ``channels_last`` set the run's PyTorch layout; the others build their :class:`InferPath` at the
    first batch that can use it (no export where a multi-head method's every prediction is asked for) and use it
    once it agreed with PyTorch on that batch (see the module doc). ``ran`` names the path
    that computed the logits so far; :meth:`describe` says which, why, and what it cost."""

    def __init__(self, run: Any, requested: str = "auto", n_images: int | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        if requested not in BACKENDS:
            raise DeployError(f"--backend {requested}: choose from {', '.join(BACKENDS)}")
        self.run, self.requested, self.n_images, self.done = run, requested, n_images, 0
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self.name, self.why = auto_choice(run) if requested == "auto" else (requested, "")
        self.path: InferPath | None = None
        self.state = "pytorch"  # pytorch | unchecked | checked | failed
        self.heads, self.headline, self.report = 0, "", None
        if self.name in ("eager", "channels_last"):
            run.runtime.channels_last = self.name == "channels_last"
            run.runtime.prepare(run.method)
            return
        check_available(run, self.name)
        self.state = "unchecked"

    def _folder(self) -> Path | None:
        """Where exports of the run are cached (None for a recipe)."""
        return None if self.run.recipe is not None else Path(self.run.run_dir) / "cache" / "infer"

    def _pays_back(self, batch: int, seconds: float) -> bool | None:
        """``auto``'s choice at a batch of ``batch`` images that PyTorch ran in ``seconds``: the file only where it
        pays back (:func:`fgvc.deploy.auto_backend.decide`), said in one line; None to wait for the next batch (the
        first is a warm-up, unless a cached file, an unknown count or no images after it decide already)."""
        self.done += batch
        folder = self._folder()
        cached = cached_file(self.run, self.name, folder) if folder is not None else None
        if self.done == batch and not cached and self.n_images is not None and self.n_images > batch:
            self.why = f"{self.name} not used: auto decides at the second batch, and none came"
            return None
        export_s, measured = export_seconds(folder, self.name)
        decision = decide(self.n_images, self.done, batch, seconds / max(batch, 1), str(cached) if cached else None,
                          export_s, measured, fmt=self.name)
        self.why = decision.why
        chosen = self.name if decision.use_file else f"{pytorch_path(self.run)} (PyTorch)"
        self.log(f"backend auto: {chosen}: {decision.why}" + (f" ({cached})" if decision.use_file and cached else ""))
        if not decision.use_file:
            self.state = "pytorch"
        return decision.use_file

    def _build(self) -> None:
        folder = self._folder()
        try:
            self.path = build_path(self.run, self.name, folder, cache=folder is not None)
        except Exception as e:
            if self.requested != "auto":
                raise
            self._fail(f"could not be prepared ({_first_line(e)})")

    @property
    def ran(self) -> str:
        """The path that computes the logits (the PyTorch one until a file / compiled path passed its check)."""
        return self.name if self.state == "checked" else pytorch_path(self.run)

    def _fail(self, why: str) -> None:
        self.why, self.state = f"{self.name} {why}: PyTorch ran instead", "failed"

    def _fast(self, images: Tensor, tta: bool) -> Outputs:
        x = self.run.inputs(images)
        out = Outputs({self.headline: self.path.fn(x)}, self.headline, None, None)  # type: ignore[union-attr,arg-type]
        if tta:
            flipped = self.path.fn(torch.flip(x, dims=[3]))  # type: ignore[union-attr]
            out = flip_average(out, Outputs({self.headline: flipped}, self.headline, None, None))  # type: ignore
        return out

    def outputs(self, images: Tensor, tta: bool = False, every_head: bool = False) -> Outputs:
        """:class:`Outputs` of one batch where only logits are needed: the headline's (``every_head``: every logits
        key). From the fast path once checked (its other fields are None), else :meth:`TrainedRun.infer`'s."""
        if self.state in ("pytorch", "failed") or (every_head and self.heads > 1):
            return self.run.infer(images, tta)
        if self.state == "unchecked":
            t0 = time.perf_counter()
            ref = self.run.infer(images, tta)
            seconds = time.perf_counter() - t0
            self.heads, self.headline = len(ref.logits), ref.headline
            if every_head and self.heads > 1:
                self.why = f"{self.name} computes the headline only, and all {self.heads} predictions were asked for"
                return ref
            if self.requested == "auto" and not self._pays_back(len(images), seconds):
                return ref  # not now (the warm-up batch) or not at all
            self._build()
            if self.state == "failed":
                return ref
            try:
                got = self._fast(images, tta).prediction
            except Exception as e:
                self._fail(f"failed on the first batch ({_first_line(e)})")
                return ref
            self.report = compare(ref.prediction.float().cpu().numpy(), got.numpy(),
                                  rel_tol_for(self.run.runtime.device))
            if self.report.passed:
                self.state = "checked"
            else:
                self._fail(f"disagreed with PyTorch on the first batch ({self.report.line()})")
            return ref
        try:
            return self._fast(images, tta)
        except Exception as e:
            self._fail(f"failed on a batch ({_first_line(e)})")
            return self.run.infer(images, tta)

    def describe(self) -> str:
        """One line: the path that ran, how, and why (``inference: onnx (ONNX Runtime, cached export ...)``)."""
        if self.state == "checked":
            detail, diff = self.path.detail, self.report.max_abs_diff  # type: ignore[union-attr]
            return (f"{self.name} ({detail}; agreed with PyTorch on the first batch, max |logit diff| {diff:.2g})"
                    + (f"; {self.why}" if self.requested == "auto" else ""))
        own = pytorch_path(self.run)
        amp = f" {self.run.runtime.amp} autocast" if self.run.runtime.amp != "none" else " fp32"
        layout = "channels-last" if own == "channels_last" else "contiguous"
        line = f"{own} (PyTorch{amp}, {layout})"
        if self.state == "unchecked" and self.heads == 0:
            line += f"; {self.name} not used: no batch ran"
        elif self.why:
            line += f"; {self.why}"
        return line


def use_backend(run: TrainedRun, name: str = "auto", n_images: int | None = None,
                log: Callable[[str], None] | None = None) -> Backend:
    """Compute ``run``'s logits-only passes (:meth:`~fgvc.engine.inference.TrainedRun.infer_logits`, ``collect`` of
    ``logits`` alone) on the inference path ``name`` (:data:`BACKENDS`; ``auto``: the fastest exact one that pays
    back for ``n_images`` images, :mod:`fgvc.deploy.auto_backend`; ``log``: where its choice is said, default
    stderr); returns the :class:`Backend`, also kept as ``run.backend``."""
    run.backend = Backend(run, name, n_images, log)
    return run.backend
