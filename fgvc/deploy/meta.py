"""The preprocessing and class names that travel inside an exported file.

An ONNX file carries them as ``metadata_props`` (string key -> JSON-encoded value); a TorchScript file as one JSON
object in its ``_extra_files["fgvc.json"]``. The same keys either way:

=============== ==========================================================================================
``img_size``    the model's input side S (the run's eval crop, times WS-DAN's ``input_scale``; or ``--img-size``)
``resize``      the shorter side images are resized to before the centre S x S crop
``crop_pct``    ``img_size / resize`` (timm's convention; ``resize = round(img_size / crop_pct)``)
``mean``/``std`` per-channel normalisation of RGB values in [0, 1] (3 floats each)
``class_names`` the K class names, in logit order
``fgvc_method``, ``backbone``, ``headline``, ``prediction`` (which ``Outputs.logits`` key the file computes),
``batch`` (``"dynamic"`` or the fixed batch size), ``exporter``, ``opset``, ``run``, ``checkpoint``, ``weights``
=============== ==========================================================================================

:class:`Preprocessing` turns them back into the run's eval transform (:func:`fgvc.data.build_transforms`: shorter
side to ``resize``, centre crop, normalise), so an exported file predicts exactly as ``fgvc.predict`` on the run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from fgvc.engine.environment import package_version
from fgvc.errors import DeployError
from fgvc.config import input_geometry
from fgvc.data import build_transforms
from fgvc.extras import require

__all__ = ["REQUIRED_KEYS", "TORCHSCRIPT_META", "DEFAULT_CROP_PCT", "Preprocessing", "run_metadata", "encode",
           "decode", "set_onnx_metadata", "read_onnx_metadata"]

REQUIRED_KEYS = ("img_size", "mean", "std", "class_names")
TORCHSCRIPT_META = "fgvc.json"  # the name of the TorchScript extra file
DEFAULT_CROP_PCT = 0.875  # timm's default (224 / 256), for a foreign ONNX file given --img-size without --crop-pct


@dataclass(frozen=True)
class Preprocessing:
    """Shorter side to ``resize``, centre ``img_size`` crop, ``(x / 255 - mean) / std`` -- the eval transform."""

    img_size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def crop_pct(self) -> float:
        return self.img_size / self.resize

    @classmethod
    def from_run(cls, run: Any, img_size: int | None = None) -> "Preprocessing":
        """The eval transform of a :class:`~fgvc.engine.inference.TrainedRun` (as
        :func:`fgvc.engine.builder.build_transform` makes it), optionally at another input side ``img_size`` with
        the same crop share."""
        d = run.cfg["data"]
        scale = float(run.data_config.get("input_scale", 1.0))
        own = cls(*input_geometry(d, scale),
                  _three(run.data_config["mean"]), _three(run.data_config["std"]))
        if img_size is None or img_size == own.img_size:
            return own
        return cls(int(img_size), max(int(img_size), round(img_size / own.crop_pct)), own.mean, own.std)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], source: str | Path) -> "Preprocessing":
        """From decoded metadata; :class:`DeployError` naming the missing keys and the flags that replace them."""
        missing = [k for k in ("img_size", "mean", "std") if k not in meta]
        if missing:
            raise DeployError(
                f"{source} carries no fgvc preprocessing metadata (missing {', '.join(missing)}): it was not written "
                "by fgvc.export; give the preprocessing yourself with --img-size S --mean R G B --std R G B (and "
                "optionally --crop-pct P, default 0.875, and --classes FILE with one class name per line)")
        try:
            img_size = int(meta["img_size"])
            resize = int(meta["resize"]) if "resize" in meta else round(img_size / float(meta.get("crop_pct",
                                                                                                 DEFAULT_CROP_PCT)))
            return cls(img_size, max(img_size, resize), _three(meta["mean"]), _three(meta["std"]))
        except (TypeError, ValueError) as e:
            raise DeployError(f"{source}: unreadable preprocessing metadata ({e}); re-export it with "
                              "fgvc.export") from e

    def transform(self) -> Any:
        """The eval transform: ``H, W, 3`` uint8 RGB array -> normalised ``3, S, S`` float tensor."""
        return build_transforms(img_size=self.img_size, resize=self.resize, mean=self.mean, std=self.std, train=False)

    def as_metadata(self) -> dict[str, Any]:
        return {"img_size": self.img_size, "resize": self.resize, "crop_pct": round(self.crop_pct, 6),
                "mean": list(self.mean), "std": list(self.std)}


def _three(values: Sequence[float]) -> tuple[float, float, float]:
    out = tuple(float(v) for v in values)
    if len(out) != 3:
        raise ValueError(f"mean and std need 3 values, got {list(values)}")
    return out  # type: ignore[return-value]


def run_metadata(run: Any, prep: Preprocessing, prediction: str, headline: str, batch: int | None, exporter: str,
                 opset: int | None) -> dict[str, Any]:
    """Everything an exported file of ``run`` says about itself (decoded values; :func:`encode` for ONNX)."""
    model = run.cfg["model"]
    return {**prep.as_metadata(), "class_names": list(run.class_names), "fgvc_method": model["name"],
            "backbone": model["backbone"], "headline": headline, "prediction": prediction,
            "batch": "dynamic" if batch is None else int(batch), "exporter": exporter, "opset": opset,
            "run": str(Path(run.run_dir).resolve()) if run.run_dir is not None else None,
            "checkpoint": run.checkpoint, "weights": run.weights, "fgvc_version": package_version("fgvc")}


def encode(meta: Mapping[str, Any]) -> dict[str, str]:
    """ONNX ``metadata_props`` values are strings: each value JSON-encoded."""
    return {k: json.dumps(v) for k, v in meta.items()}


def decode(props: Mapping[str, str]) -> dict[str, Any]:
    """The inverse of :func:`encode`; a value that is not JSON (another tool's note) stays a string."""
    out: dict[str, Any] = {}
    for k, v in props.items():
        try:
            out[k] = json.loads(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def set_onnx_metadata(model: Any, meta: Mapping[str, Any]) -> None:
    """Write ``meta`` (decoded values) into an ``onnx.ModelProto``'s ``metadata_props``, replacing equal keys."""
    encoded = encode(meta)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in encoded]
    del model.metadata_props[:]
    for key, value in [*kept, *encoded.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded ``metadata_props`` of an ONNX file (without loading its weights)."""
    onnx = require("onnx", "onnx", "reading ONNX metadata", extra="deploy")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # not a protobuf, truncated, ...
        raise DeployError(f"{path} is not a readable ONNX file ({type(e).__name__}: {e})") from e
    return decode({p.key: p.value for p in model.metadata_props})
