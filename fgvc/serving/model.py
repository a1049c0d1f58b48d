"""The model a server answers with, loaded once through ``fgvc.predict``'s own path.

A run directory (or checkpoint) is a :class:`fgvc.engine.inference.TrainedRun` on the inference backend of
``--backend`` wrapped as ``fgvc.predict`` wraps it; an ``.onnx`` file (fp32 or INT8) is a
:class:`fgvc.deploy.predictor.OnnxPredictor` reading preprocessing and class names from the file's metadata. Either
way the server gets the eval ``transform``, the ``class_names``, ``probabilities(B x 3 x S x S) -> B x K`` and, for a
run, a Grad-CAM overlay of one image (``?cam=1``).
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fgvc.deploy.fast_infer import use_backend
from fgvc.deploy.meta import Preprocessing
from fgvc.deploy.predictor import OnnxPredictor
from fgvc.deploy.run_predictor import RunModel
from fgvc.engine.environment import package_version
from fgvc.engine.inference import TrainedRun
from fgvc.vis.cam import cam_maps
from fgvc.vis.overlay import denormalize, heat_overlay

__all__ = ["ServedModel", "load_model", "cam_data_url"]


@dataclass
class ServedModel:
    """What the app needs of a model: preprocessing, names, batched probabilities, what to say in ``/info``."""

    transform: Callable[[Any], Tensor]
    class_names: list[str]
    probabilities: Callable[[Tensor], Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    img_size: int = 224
    cam: Callable[[Tensor], str] | None = None  # one preprocessed image -> PNG data URL of its Grad-CAM overlay

    @property
    def cam_why_not(self) -> str:
        return "" if self.cam is not None else ("the Grad-CAM overlay needs a run directory (PyTorch); this server "
                                                "runs an exported file")


def cam_data_url(run: Any, image: Tensor) -> str:
    """The Grad-CAM overlay (:func:`fgvc.vis.cam.cam_maps`, the predicted class) of one preprocessed ``image``
    (``3 x S x S``) on the image itself, as a ``data:image/png;base64,...`` URL."""
    heat = cam_maps(run, image[None], None, "gradcam")[0]  # S, S in [0, 1]
    picture = denormalize(image, run.data_config["mean"], run.data_config["std"])  # S, S, 3 in [0, 1]
    overlay = (np.clip(heat_overlay(picture, heat), 0.0, 1.0) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(overlay).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _version() -> str:
    return package_version("fgvc") or "unknown"  # None: a source checkout on PYTHONPATH, not installed


def load_model(target: Path, checkpoint: str = "last", sets: Sequence[str] = (), weights: str = "auto",
               backend: str = "auto", onnx_options: dict[str, Any] | None = None,
               threads: int | None = None) -> ServedModel:
    """Load ``target`` (a run directory / checkpoint, or an ``.onnx`` file) as ``fgvc.predict`` does; ``threads``:
    ONNX Runtime's intra-op threads for a file, torch's for a run (default: torch's thread count)."""
    if target.suffix.lower() == ".onnx" and target.is_file():
        onnx = OnnxPredictor(target, **(onnx_options or {}), threads=threads)
        meta = onnx.meta
        info = {"target": target.name, "format": "onnx", "method": meta.get("fgvc_method"),
                "backbone": meta.get("backbone"), "img_size": onnx.prep.img_size, "classes": len(onnx.class_names),
                "backend": onnx.describe(), "version": _version(), "cam": False}
        return ServedModel(onnx.transform, list(onnx.class_names), onnx.probabilities, info, onnx.prep.img_size)

    if threads is not None:
        torch.set_num_threads(threads)
    trained = TrainedRun.load(target, checkpoint, list(sets), weights)
    use_backend(trained, backend)  # the number of images is not known: auto runs a cached export or PyTorch
    run = RunModel(trained)
    img_size = Preprocessing.from_run(trained).img_size
    info = {"target": target.name, "format": "run", "method": trained.cfg["model"]["name"],
            "backbone": trained.cfg["model"].get("backbone"), "img_size": img_size,
            "classes": len(run.class_names), "backend": run.describe(), "version": _version(), "cam": True}
    return ServedModel(run.transform, list(run.class_names), run.probabilities, info, img_size,
                       cam=lambda image: cam_data_url(trained, image))
