"""Linear probe: multinomial logistic regression on frozen embeddings.

The standard test of how linearly separable a backbone's features are (Alain & Bengio 2016, "Understanding
intermediate layers using linear classifier probes"; the protocol of Kornblith et al. 2019, "Do Better
ImageNet Models Transfer Better?", and Radford et al. 2021, CLIP: L2-regularised logistic regression with
the regularisation chosen on a validation split).

The fit minimises, over weights ``W`` (D x K) and biases ``b`` (not regularised)::

    mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 C N)

i.e. scikit-learn's ``C * sum CE + ||W||^2 / 2`` divided by ``C N``: larger ``C`` means less regularisation.
Features are standardised with the train split's mean and standard deviation. The optimiser is full-batch
L-BFGS with a strong-Wolfe line search in torch (float32, CPU): deterministic, and the core of fgvc needs no
scikit-learn. ``C`` is chosen on the validation split among ``C_GRID`` (ties: the smaller ``C``, i.e. the
stronger regularisation), each fit warm-started from the previous one; without a validation split it is
``DEFAULT_C`` (scikit-learn's default). The model fitted on train with that ``C`` is scored on test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from fgvc.errors import EmbeddingError

__all__ = ["C_GRID", "DEFAULT_C", "LogisticModel", "ProbeResult", "fit_logistic", "linear_probe"]

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
DEFAULT_C = 1.0


@dataclass
class LogisticModel:
    """A fitted probe: standardisation (``mean``, ``std``) then ``x W + b``."""

    mean: torch.Tensor  # D
    std: torch.Tensor  # D
    weight: torch.Tensor  # D, K
    bias: torch.Tensor  # K
    c: float

    def logits(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        z = (torch.as_tensor(np.asarray(x), dtype=torch.float32) - self.mean) / self.std
        return z @ self.weight + self.bias

    def top1(self, x: np.ndarray, y: np.ndarray) -> float:
        """Percent of rows of ``x`` whose arg-max class is ``y``."""
        pred = self.logits(x).argmax(1).numpy()
        return 100.0 * float((pred == np.asarray(y)).mean())


@dataclass
class ProbeResult:
    """``top1`` on test (percent), the chosen ``c``, and the validation top-1 of every ``C`` tried."""

    top1: float
    c: float
    val_top1: dict[float, float] = field(default_factory=dict)


def _standardiser(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    std = x.std(0, unbiased=False)
    return x.mean(0), torch.where(std > 1e-6, std, torch.ones_like(std))  # constant features stay as they are


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, c: float = DEFAULT_C, max_iter: int = 200,
                 init: LogisticModel | None = None) -> LogisticModel:
    """Fit the probe (module docstring) on ``x: N, D`` and labels ``y: N`` in ``0..num_classes-1``."""
    if c <= 0:
        raise EmbeddingError(f"linear probe: C must be > 0 (the inverse regularisation strength), got {c}")
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    n, d = xt.shape
    mean, std = (init.mean, init.std) if init is not None else _standardiser(xt)
    z = (xt - mean) / std
    weight = torch.zeros(d, num_classes) if init is None else init.weight.clone()
    bias = torch.zeros(num_classes) if init is None else init.bias.clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ weight + bias, yt) + (weight * weight).sum() / (2 * c * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LogisticModel(mean, std, weight.detach(), bias.detach(), float(c))


def _labels_in_range(y: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise EmbeddingError(f"linear probe: {what} labels must be in 0..{num_classes - 1}, got {y.min()}..{y.max()}")
    return y


def linear_probe(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], num_classes: int,
                 val: tuple[np.ndarray, np.ndarray] | None = None, c_grid: Sequence[float] = C_GRID,
                 default_c: float = DEFAULT_C, max_iter: int = 200) -> ProbeResult:
    """Fit on ``train`` (embeddings, labels), choose ``C`` on ``val`` when given, score on ``test``."""
    (xtr, ytr), (xte, yte) = train, test
    ytr, yte = _labels_in_range(ytr, num_classes, "train"), _labels_in_range(yte, num_classes, "test")
    if len(ytr) == 0 or len(yte) == 0:
        raise EmbeddingError(f"linear probe: {len(ytr)} train and {len(yte)} test embeddings; both splits need images")
    for name, arr in (("train", xtr), ("test", xte)) + ((("val", val[0]),) if val is not None else ()):
        if not np.isfinite(np.asarray(arr, dtype=np.float32)).all():
            raise EmbeddingError(f"linear probe: the {name} embeddings hold NaN or Inf (a diverged model?): "
                                 "evaluate another checkpoint or retrain")
    if val is None or len(val[1]) == 0:
        model = fit_logistic(xtr, ytr, num_classes, default_c, max_iter)
        return ProbeResult(model.top1(xte, yte), model.c)
    xva, yva = val[0], _labels_in_range(val[1], num_classes, "val")
    scores: dict[float, float] = {}
    best: LogisticModel | None = None
    prev: LogisticModel | None = None
    for c in sorted(float(c) for c in c_grid):
        prev = fit_logistic(xtr, ytr, num_classes, c, max_iter, init=prev)
        scores[c] = prev.top1(xva, yva)
        if best is None or scores[c] > scores[best.c]:
            best = prev
    assert best is not None
    return ProbeResult(best.top1(xte, yte), best.c, scores)
