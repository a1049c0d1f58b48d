"""Data layer: dataset readers (CUB-200-2011, Wah et al. 2011; Oxford Flowers 102, Nilsback and Zisserman 2008;
image folders; CSV manifests; a synthetic fine-grained set), transforms, download and checks.

Importing this package registers every reader in :data:`fgvc.registry.DATASETS`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from fgvc.data import cub, flowers, folder, synthetic  # noqa: F401  (registers the readers)
from fgvc.data.base import (
    AnnotationError, BadImageError, DataError, DatasetNotFoundError, FGVCDataset, MissingImagesError, Sample,
    load_image,
)
from fgvc.data.synthetic import make_synthetic
from fgvc.data.transforms import build_transforms
from fgvc.registry import DATASETS

__all__ = [
    "build_dataset", "build_transforms", "make_synthetic", "load_image", "FGVCDataset", "Sample", "DataError",
    "BadImageError", "AnnotationError", "DatasetNotFoundError", "MissingImagesError", "DATASETS",
]


def build_dataset(
    name: str,
    root: str | Path,
    split: str,
    transform: Callable[[np.ndarray], Any] | None = None,
    on_bad_image: str = "error",
    **kwargs: Any,
) -> FGVCDataset:
    """Build the registered data set ``name`` (e.g. ``cub200``); ``kwargs`` are the recipe's ``data.args``."""
    DATASETS.check_kwargs(name, kwargs, where="data.args")
    return DATASETS.build(name, root=root, split=split, transform=transform, on_bad_image=on_bad_image, **kwargs)
