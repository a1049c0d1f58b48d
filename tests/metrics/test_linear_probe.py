"""Linear probe: separable toy data, C chosen on validation, determinism, scikit-learn's optimum, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from fgvc.metrics.linear_probe import C_GRID, DEFAULT_C, fit_logistic, linear_probe
from fgvc.errors import EmbeddingError


def _blobs(n_per: int, seed: int, spread: float = 0.3, d: int = 6, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:k] * 4.0 + 10.0  # offset: standardisation has work to do
    y = np.repeat(np.arange(k), n_per)
    return (centres[y] + spread * rng.standard_normal((len(y), d))).astype(np.float32), y


def test_separable_toy_data_is_classified_perfectly():
    train, val, test = _blobs(20, 0), _blobs(5, 1), _blobs(10, 2)
    res = linear_probe(train, test, 3, val)
    assert res.top1 == 100.0 and res.c in C_GRID
    assert set(res.val_top1) == set(C_GRID) and res.val_top1[res.c] == max(res.val_top1.values())
    no_val = linear_probe(train, test, 3)
    assert no_val.top1 == 100.0 and no_val.c == DEFAULT_C and no_val.val_top1 == {}


def test_c_is_chosen_on_validation_and_ties_go_to_the_stronger_regularisation():
    """Overlapping blobs, val scored at each C; the first C (ascending) with the best val top-1 is kept."""
    train, val, test = _blobs(30, 3, spread=2.5), _blobs(30, 4, spread=2.5), _blobs(30, 5, spread=2.5)
    res = linear_probe(train, test, 3, val, c_grid=(10.0, 0.001, 1.0))
    assert list(res.val_top1) == [0.001, 1.0, 10.0]
    best = max(res.val_top1.values())
    assert res.c == min(c for c, t in res.val_top1.items() if t == best)
    assert 34.0 < res.top1 < 100.0


def test_fit_is_deterministic_and_regularised():
    x, y = _blobs(15, 6, spread=1.0)
    a, b = fit_logistic(x, y, 3, 0.1), fit_logistic(x, y, 3, 0.1)
    assert np.array_equal(a.weight.numpy(), b.weight.numpy()) and np.array_equal(a.bias.numpy(), b.bias.numpy())
    strong = fit_logistic(x, y, 3, 0.001)
    assert float((strong.weight ** 2).sum()) < float((a.weight ** 2).sum())  # smaller C: smaller weights


def test_matches_scikit_learn_on_the_same_objective():
    """sklearn minimises C * sum CE + ||W||^2 / 2 (intercept free): on standardised features, the same optimum."""
    sk = pytest.importorskip("sklearn.linear_model")
    x, y = _blobs(25, 7, spread=1.5)
    ours = fit_logistic(x, y, 3, 0.5, max_iter=500)
    z = (x - ours.mean.numpy()) / ours.std.numpy()
    ref = sk.LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(z, y)
    np.testing.assert_allclose(ours.logits(x).softmax(1).numpy(), ref.predict_proba(z), atol=2e-3)


def test_bad_inputs_get_clear_errors():
    train, test = _blobs(4, 8), _blobs(2, 9)
    with pytest.raises(EmbeddingError, match="train labels must be in 0..1, got 0..2"):
        linear_probe(train, test, 2)
    with pytest.raises(EmbeddingError, match="C must be > 0"):
        fit_logistic(*train, 3, c=0.0)
    bad = train[0].copy()
    bad[0, 0] = np.inf
    with pytest.raises(EmbeddingError, match="the train embeddings hold NaN or Inf"):
        linear_probe((bad, train[1]), test, 3)
