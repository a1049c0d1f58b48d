"""Where a trained classifier fails, from its predictions on a split (numpy only, no model, no drawing).

The HTML run report (:mod:`fgvc.report`) asks three questions of ``probs: N, K`` (softmax) and ``targets: N``
(with the confusion matrix of :func:`fgvc.metrics.accuracy.confusion_matrix`):

* :func:`per_class`: accuracy of every class and the class it is most often taken for;
* :func:`confused_pairs`: the unordered class pairs with the most mistakes between them (``a`` read as ``b`` plus
  ``b`` read as ``a``), each with an example image of the mistake and a typical image of the class it was taken for
  (:func:`pair_examples`), so a reader sees the two species side by side;
* :func:`worst_mistakes`: the wrong predictions made with the highest confidence (the ones to look at first: a
  mislabelled image, a look-alike species, or the model looking at the background).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["per_class", "ClassRow", "confused_pairs", "Pair", "pair_examples", "worst_mistakes"]


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


def confused_pairs(cm: np.ndarray, top: int = 10) -> list[Pair]:
    """The ``top`` unordered pairs with the most mistakes between them (order of
    :func:`fgvc.vis.confusions.confused_pairs`), each oriented so that ``a`` is the class with more of its images
    misread."""
    from fgvc.vis.confusions import confused_pairs as ranked

    out = []
    for i, j, _ in ranked(cm, top):
        a, b = (i, j) if cm[i, j] >= cm[j, i] else (j, i)
        out.append(Pair(a, b, int(cm[a, b]), int(cm[b, a])))
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
