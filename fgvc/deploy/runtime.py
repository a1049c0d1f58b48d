"""Running an exported file: ONNX Runtime (CPU) or ``torch.jit``, top-1 over a data set, latency.

:class:`OnnxModel` and :class:`TorchScriptModel` are callables ``images: B, 3, S, S float32 -> logits B, K`` (numpy),
with the file's decoded metadata in ``.meta``. A file exported with a fixed batch (``fgvc.export --static-batch``)
is fed in chunks of that size, the last one padded with zeros whose outputs are dropped, so callers never care.
ONNX Runtime runs on the ``CPUExecutionProvider`` with ``intra_op_num_threads`` = ``threads`` (default: the torch
thread count, i.e. the machine's cores unless set) and one inter-op thread.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from fgvc.deploy.meta import TORCHSCRIPT_META, decode
from fgvc.deploy.model_cost import median_ms
from fgvc.errors import DeployError
from fgvc.extras import require

__all__ = ["OnnxModel", "TorchScriptModel", "load_exported", "default_threads", "latency_ms", "top1", "top1_many",
           "onnx_top1"]


def default_threads() -> int:
    """The intra-op threads ONNX Runtime gets when none are asked for: torch's thread count."""
    return max(torch.get_num_threads(), 1)


def _chunks(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int | None) -> np.ndarray:
    """``fn`` over ``images`` in chunks of exactly ``batch`` (zero-padded), or in one call when ``batch`` is None."""
    if batch is None or len(images) == batch:
        return fn(images)
    out = []
    for start in range(0, len(images), batch):
        part = images[start:start + batch]
        n = len(part)
        if n < batch:
            part = np.concatenate([part, np.zeros((batch - n, *part.shape[1:]), part.dtype)])
        out.append(fn(part)[:n])
    return np.concatenate(out)


class OnnxModel:
    """An ONNX file on ONNX Runtime's CPU provider: ``model(images) -> logits`` (numpy float32)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnxruntime", "running an ONNX model", extra="deploy")
        self.path, self.threads = Path(path), int(threads or default_threads())
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
        options.log_severity_level = 3  # errors only: no per-node warnings on stderr
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise DeployError(f"{self.path} cannot be loaded by ONNX Runtime ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0]})") from e
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DeployError(f"{self.path} is not an image classifier: it takes {len(inputs)} input(s) "
                              f"{[tuple(i.shape) for i in inputs]}, fgvc expects one B x 3 x S x S tensor")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.batch = shape[0] if isinstance(shape[0], int) else None  # a fixed batch, or None (dynamic)
        self.input_size = shape[2] if isinstance(shape[2], int) else None
        self.num_outputs = self.session.get_outputs()[0].shape[-1]
        self.meta = decode(self.session.get_modelmeta().custom_metadata_map)

    def run(self, images: np.ndarray) -> np.ndarray:
        """One call with exactly the file's batch (no chunking)."""
        return self.session.run(None, {self.input_name: images})[0]

    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        x = images.numpy() if isinstance(images, torch.Tensor) else images
        return _chunks(self.run, np.ascontiguousarray(x, dtype=np.float32), self.batch)


class TorchScriptModel:
    """A TorchScript file (``torch.jit.load`` on the CPU): ``model(images) -> logits`` (numpy float32)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        files = {TORCHSCRIPT_META: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the way to read it
                self.module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=files).eval()
        except Exception as e:
            raise DeployError(f"{self.path} is not a loadable TorchScript file ({type(e).__name__}: {e})") from e
        self.meta = decode({"_": files[TORCHSCRIPT_META]})["_"] if files[TORCHSCRIPT_META] else {}
        self.batch = self.meta.get("batch") if isinstance(self.meta.get("batch"), int) else None
        self.threads = torch.get_num_threads()

    @torch.no_grad()
    def run(self, images: np.ndarray) -> np.ndarray:
        return self.module(torch.from_numpy(images)).float().numpy()

    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        x = images.numpy() if isinstance(images, torch.Tensor) else images
        return _chunks(self.run, np.ascontiguousarray(x, dtype=np.float32), self.batch)


def load_exported(path: str | Path, threads: int | None = None) -> OnnxModel | TorchScriptModel:
    """An ``.onnx`` file on ONNX Runtime, anything else as TorchScript."""
    return OnnxModel(path, threads) if Path(path).suffix.lower() == ".onnx" else TorchScriptModel(path)


def latency_ms(model: Callable[[np.ndarray], Any], batch: int, img_size: int | None = None, repeats: int = 20,
               warmup: int = 3) -> float:
    """Median wall time (ms) of one call on a random ``batch x 3 x S x S`` input after ``warmup`` calls.

    ``model``: an :class:`OnnxModel` (``S`` from its input shape when not given), an ``onnxruntime``
    ``InferenceSession``, or any callable taking a float32 numpy array."""
    if hasattr(model, "get_inputs"):  # a bare InferenceSession
        session, name = model, model.get_inputs()[0].name
        img_size = img_size or model.get_inputs()[0].shape[2]
        model = lambda x: session.run(None, {name: x})  # noqa: E731
    img_size = img_size or getattr(model, "input_size", None)
    if not isinstance(img_size, int):
        raise ValueError("latency_ms needs img_size for a model whose input size is not fixed")
    x = np.random.default_rng(0).standard_normal((batch, 3, img_size, img_size)).astype(np.float32)
    return median_ms(model, x, repeats, warmup)


def top1_many(models: Mapping[str, Callable[[np.ndarray], np.ndarray]], dataset: Any, batch_size: int = 32,
              limit: int | None = None, num_workers: int = 0) -> dict[str, float]:
    """Top-1 (%) of each model over ``dataset`` (``(image tensor, label)`` items, already eval-transformed; the first
    ``limit`` only, when given), decoding each image once for all of them."""
    from torch.utils.data import DataLoader, Subset

    if limit is not None and limit < len(dataset):
        dataset = Subset(dataset, list(range(limit)))
    correct = dict.fromkeys(models, 0)
    total = 0
    for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        x = images.numpy()
        for name, model in models.items():
            correct[name] += int((torch.from_numpy(model(x).argmax(1)) == labels).sum())
        total += len(labels)
    if total == 0:
        raise DeployError("top-1 needs at least one image, the split is empty")
    return {name: 100.0 * c / total for name, c in correct.items()}


def top1(model: Callable[[np.ndarray], np.ndarray], dataset: Any, batch_size: int = 32,
         limit: int | None = None) -> float:
    """Top-1 (%) of one model over an eval-transformed ``dataset`` (see :func:`top1_many`)."""
    return top1_many({"model": model}, dataset, batch_size, limit)["model"]


def onnx_top1(path: str | Path, dataset: Any, threads: int | None = None, batch_size: int = 32) -> float:
    """Top-1 (%) of the ONNX file at ``path`` over an eval-transformed ``dataset`` (e.g. ``run.dataset("test")``)."""
    return top1(OnnxModel(path, threads), dataset, batch_size)
