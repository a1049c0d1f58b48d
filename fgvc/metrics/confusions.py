"""Where a classifier goes wrong, from its confusion matrix, its predictions or its embeddings (numpy only: no
model, no drawing).

* :func:`per_class`: accuracy of every class and the class it is most often taken for;
* :func:`confused_pairs`: the unordered class pairs with the most mistakes between them (``a`` read as ``b`` plus
  ``b`` read as ``a``), each with an example image of the mistake and a typical image of the class it was taken for
  (:func:`pair_examples`), so a reader sees the two species side by side;
* :func:`worst_mistakes`: the wrong predictions made with the highest confidence (the ones to look at first: a
  mislabelled image, a look-alike species, or the model looking at the background);
* :func:`knn_confusion`: the confusion of an embedding's nearest neighbours, for a model without a classifier;
* :func:`read_confusion_csv`: the ``confusion`` table a run's evaluation wrote, in a given class order.

The matrices are ``K x K`` counts, rows the true class, columns the predicted one
(:func:`fgvc.metrics.accuracy.confusion_matrix`); ``probs: N, K`` are softmax outputs and ``targets: N`` labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fgvc.errors import EmbeddingError

__all__ = ["per_class", "ClassRow", "confused_pairs", "Pair", "pair_examples", "worst_mistakes", "knn_confusion",
           "read_confusion_csv"]


@dataclass(frozen=True)
class ClassRow:
    index: int
    name: str
    n_images: int
    correct: int
    accuracy: float | None  # percent; None for a class without test images
    confused_with: str | None
    n_confused: int


def per_class(cm: np.ndarray, class_names: Sequence[str]) -> list[ClassRow]:
    """One row per class of the confusion matrix ``cm`` (true x predicted)."""
    rows = []
    for k, name in enumerate(class_names):
        n, ok = int(cm[k].sum()), int(cm[k, k])
        off = cm[k].copy()
        off[k] = -1
        j = int(off.argmax())
        worst = (class_names[j], int(cm[k, j])) if n and cm[k, j] > 0 else (None, 0)
        rows.append(ClassRow(k, name, n, ok, 100.0 * ok / n if n else None, *worst))
    return rows


@dataclass(frozen=True)
class Pair:
    a: int
    b: int
    a_as_b: int  # images of a predicted as b
    b_as_a: int

    @property
    def total(self) -> int:
        return self.a_as_b + self.b_as_a

    def unordered(self) -> tuple[int, int, int]:
        """``(i, j, total)`` with ``i < j``: the pair without its orientation (e.g. for a line between the two)."""
        return min(self.a, self.b), max(self.a, self.b), self.total


def confused_pairs(cm: np.ndarray, top: int = 10) -> list[Pair]:
    """The ``top`` unordered class pairs confused most in either direction (``cm[a, b] + cm[b, a]``), largest first
    (ties: the smaller class index first), each oriented so that ``a`` is the class with more of its images misread;
    pairs never confused are left out."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix is K x K, got shape {cm.shape}")
    both = cm + cm.T
    i, j = np.triu_indices(len(cm), k=1)
    counts = both[i, j]
    order = sorted(range(len(counts)), key=lambda t: (-counts[t], i[t], j[t]))
    out = []
    for t in order[:max(top, 0)]:
        if counts[t] <= 0:
            continue
        a, b = (int(i[t]), int(j[t])) if cm[i[t], j[t]] >= cm[j[t], i[t]] else (int(j[t]), int(i[t]))
        out.append(Pair(a, b, int(round(float(cm[a, b]))), int(round(float(cm[b, a])))))
    return out


def pair_examples(probs: np.ndarray, targets: np.ndarray, pair: Pair) -> tuple[int | None, int | None]:
    """(mistake, reference): the image of ``pair.a`` predicted as ``pair.b`` with the highest probability for ``b``
    (else of ``b`` predicted as ``a``), and the image of the other class that the model is surest of."""
    preds = probs.argmax(1)
    mistake, other = None, None
    for true, wrong in ((pair.a, pair.b), (pair.b, pair.a)):
        idx = np.flatnonzero((targets == true) & (preds == wrong))
        if len(idx):
            mistake, other = int(idx[probs[idx, wrong].argmax()]), wrong
            break
    if other is None:
        return None, None
    idx = np.flatnonzero(targets == other)
    reference = int(idx[probs[idx, other].argmax()]) if len(idx) else None
    return mistake, reference


def worst_mistakes(probs: np.ndarray, targets: np.ndarray, n: int = 12) -> list[int]:
    """Indices of the ``n`` wrong predictions with the highest confidence, most confident first."""
    preds, conf = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(preds != targets)
    return [int(i) for i in wrong[np.argsort(-conf[wrong], kind="stable")][:n]]


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
