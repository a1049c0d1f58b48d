"""The most-confused class pairs, marked on embedding maps: from a confusion matrix (a run's
``eval/confusion.csv``, rows = true class, columns = predicted class, as :mod:`fgvc.protocols.classification`
writes it) or, for bare embeddings, from k-nearest-neighbour confusions in embedding space (cosine similarity,
each image's own entry left out, as the ``knn`` protocol scores them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fgvc.errors import EmbeddingError

__all__ = ["confused_pairs", "knn_confusion", "read_confusion_csv"]


def confused_pairs(confusion: np.ndarray, top: int = 5) -> list[tuple[int, int, int]]:
    """The ``top`` class pairs ``(i, j, count)`` with ``i < j`` confused most in either direction
    (``confusion[i, j] + confusion[j, i]``), largest first (ties: smaller ``i``, then ``j``); pairs never
    confused are left out."""
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix is K x K, got shape {cm.shape}")
    both = cm + cm.T
    i, j = np.triu_indices(len(cm), k=1)
    counts = both[i, j]
    order = sorted(range(len(counts)), key=lambda t: (-counts[t], i[t], j[t]))
    return [(int(i[t]), int(j[t]), int(round(float(counts[t])))) for t in order[:max(top, 0)] if counts[t] > 0]


def knn_confusion(emb: np.ndarray, labels: np.ndarray, num_classes: int, k: int = 5) -> np.ndarray:
    """``K x K`` counts: row ``c``, column ``d`` = how often an image of class ``c`` has one of class ``d`` among its
    ``k`` nearest other images (cosine similarity). The diagonal holds same-class neighbours."""
    x = np.asarray(emb, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(x) != len(y):
        raise EmbeddingError(f"{len(x)} embeddings but {len(y)} labels")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    if len(x) < 2:
        return cm
    k = min(k, len(x) - 1)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    for start in range(0, len(x), 1024):  # blocks of queries: memory N x 1024
        sim = x[start:start + 1024] @ x.T  # b, N
        rows = np.arange(len(sim))
        sim[rows, start + rows] = -np.inf  # leave each image's own entry out
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # b, k
        np.add.at(cm, (np.repeat(y[start:start + len(sim)], k), y[nn].ravel()), 1)
    return cm


def read_confusion_csv(path: str | Path, class_names: Sequence[str]) -> np.ndarray | None:
    """The confusion matrix of ``path`` (index and header = class names) in the order of ``class_names``, or None
    when it is missing or holds other classes."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        return None
    try:  # every cell as text: class names such as "001" must not become numbers
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        table = table.set_index(table.columns[0])
        names = [str(c) for c in class_names]
        if sorted(table.index) != sorted(names) or sorted(table.columns) != sorted(names):
            return None
        return table.loc[names, names].astype(float).round().to_numpy(dtype=np.int64)
    except (ValueError, OSError, IndexError):
        return None
