"""Data layer: dataset readers (CUB-200-2011, Wah et al. 2011; Oxford Flowers 102, Nilsback and Zisserman 2008;
image folders; CSV manifests; a synthetic fine-grained set; ``union``, several of them as one), transforms,
download and checks.

Every data set is a reader (``read(root, split, /, *, <data.args>) -> SplitContents``) registered in
:data:`fgvc.registry.DATASETS` when this package is imported; :func:`build_dataset` is the one way to make
an :class:`FGVCDataset` from it.
"""
from __future__ import annotations

from fgvc.data import cub, flowers, folder, synthetic, union, unlabeled  # noqa: F401  (registers the readers)
from fgvc.data.base import (
    AnnotationError, BadImageError, DataError, DatasetNotFoundError, FGVCDataset, MissingImagesError, Sample,
    SplitContents, load_image,
)
from fgvc.data.readers import build_dataset
from fgvc.data.synthetic import make_synthetic
from fgvc.data.transforms import build_transforms
from fgvc.registry import DATASETS

__all__ = [
    "build_dataset", "build_transforms", "make_synthetic", "load_image", "FGVCDataset", "Sample", "SplitContents",
    "DataError", "BadImageError", "AnnotationError", "DatasetNotFoundError", "MissingImagesError", "DATASETS",
]
