"""An ONNX file as ``fgvc.predict`` sees a model: its eval transform, class names and class probabilities.

The preprocessing comes from the file's fgvc metadata (:mod:`fgvc.deploy.meta`: shorter side to ``resize`` =
``img_size / crop_pct``, centre ``img_size`` crop, ``mean`` / ``std``), built with the same
:func:`fgvc.data.build_transforms` as the run's eval split, so an fp32 or INT8 file exported by ``fgvc.export`` /
``fgvc.quantize`` predicts like the run. A file without that metadata (exported by another tool) is refused unless
the caller gives it: ``img_size``, ``mean`` and ``std`` (``crop_pct`` defaults to 0.875, timm's), and optionally a
class-name file (one name per line; otherwise ``class_0 ... class_{K-1}``). Values given explicitly override the
metadata.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from fgvc.deploy.meta import DEFAULT_CROP_PCT, Preprocessing
from fgvc.deploy.runtime import OnnxModel
from fgvc.errors import DeployError

__all__ = ["OnnxPredictor", "read_class_file"]


def read_class_file(path: str | Path) -> list[str]:
    """One class name per non-empty line."""
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DeployError(f"--classes {path}: cannot read it ({e})") from e
    if not names:
        raise DeployError(f"--classes {path} holds no class names (one name per line)")
    return names


class OnnxPredictor:
    """``transform`` (image array -> tensor), ``class_names``, ``probabilities(images) -> B, K`` of an ONNX file."""

    num_workers = 0

    def __init__(self, path: str | Path, img_size: int | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, crop_pct: float | None = None, classes: str | Path | None = None,
                 threads: int | None = None) -> None:
        self.path = Path(path)
        self.model = OnnxModel(self.path, threads)
        meta = dict(self.model.meta)
        given = {"img_size": img_size, "mean": list(mean) if mean is not None else None,
                 "std": list(std) if std is not None else None}
        meta.update({k: v for k, v in given.items() if v is not None})
        if img_size is not None or crop_pct is not None:  # explicit geometry: resize from crop_pct, not the file's
            meta.pop("resize", None)
            meta["crop_pct"] = crop_pct if crop_pct is not None else meta.get("crop_pct", DEFAULT_CROP_PCT)
        if meta.get("crop_pct") is not None and not 0 < float(meta["crop_pct"]) <= 1:
            raise DeployError(f"--crop-pct must be in (0, 1], got {meta['crop_pct']}")
        self.prep = Preprocessing.from_metadata(meta, self.path)
        if self.model.input_size is not None and self.model.input_size != self.prep.img_size:
            raise DeployError(f"{self.path} takes {self.model.input_size} x {self.model.input_size} images, not "
                              f"--img-size {self.prep.img_size}")
        self.transform = self.prep.transform()
        k = self.model.num_outputs
        if classes is not None:
            names = read_class_file(classes)
        elif isinstance(meta.get("class_names"), list):
            names = [str(c) for c in meta["class_names"]]
        else:
            names = [f"class_{i}" for i in range(k)] if isinstance(k, int) else []
        if isinstance(k, int) and len(names) != k:
            raise DeployError(f"{classes or self.path} names {len(names)} classes, but the model has {k} outputs")
        self.class_names = names
        self.meta = meta

    def probabilities(self, images: Tensor) -> Tensor:
        """Softmax of the file's logits for ``images: B, 3, S, S`` (CPU, float32)."""
        return torch.from_numpy(self.model(images.float().numpy())).float().softmax(1)

    def describe(self) -> str:
        what = self.meta.get("prediction")
        method = self.meta.get("fgvc_method")
        parts = [f"ONNX Runtime, {self.model.threads} thread(s)", f"input {self.prep.img_size} px"]
        if method:
            parts.insert(0, f"{method} '{what}'" if what else str(method))
        return ", ".join(parts)
