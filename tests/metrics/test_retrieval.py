"""Retrieval (Recall@K, MAP@R, NDCG) and kNN metrics: a hand-worked example, brute force on random data,
pytorch-metric-learning's AccuracyCalculator, blockwise == one block, faiss == numpy, and the clear errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fgvc.metrics import retrieval
from fgvc.metrics.retrieval import knn_predict, knn_top1, l2_normalize, nearest, retrieval_metrics
from fgvc.errors import EmbeddingError

KS = (1, 2, 4, 8)


def _circle(degrees: list[float]) -> np.ndarray:
    rad = np.deg2rad(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], 1).astype(np.float32)


def test_hand_worked_example():
    """Five points on a circle (angles 0, 20, 45, 100, 170 degrees; classes A B A B A), lengths varied (cosine
    ignores them). Every A query ranks B A B A (its two A at ranks 2 and 4): R@1 0, R@2 1, AP@R (1/2)/2,
    NDCG (1/log2 3 + 1/log2 5) / (1 + 1/log2 3). Every B query ranks A A B A (its B at rank 3): R@1 = R@2 = 0,
    R@4 1, AP@R 0, NDCG 1/log2 4."""
    x = _circle([0, 20, 45, 100, 170]) * np.array([[1], [3], [0.5], [2], [7]], np.float32)
    y = np.array([0, 1, 0, 1, 0])
    m = retrieval_metrics(x, y)
    ndcg_a = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert m["n_queries"] == 5
    assert m["recall@1"] == 0.0 and m["recall@2"] == pytest.approx(60.0)
    assert m["recall@4"] == m["recall@8"] == 100.0
    assert m["map@r"] == pytest.approx(100 * (3 * 0.25 + 2 * 0.0) / 5)
    assert m["ndcg"] == pytest.approx(100 * (3 * ndcg_a + 2 * 0.5) / 5)


def test_hand_worked_knn_weights_by_similarity():
    """Query (1, 0): neighbours A (sim 1), B (0.3), B (0.3): a majority vote says B, the weighted vote A."""
    g = np.array([[1, 0], [0.3, 0.954], [0.3, -0.954], [-1, 0]], np.float32)
    gy = np.array([0, 1, 1, 0])
    q = np.array([[2, 0], [0, 1]], np.float32)
    for backend in ("numpy", "faiss") if _has_faiss() else ("numpy",):
        assert knn_predict(g, gy, q, k=3, backend=backend).tolist() == [0, 1]
        assert knn_predict(g, gy, q, k=1, backend=backend).tolist() == [0, 1]
        assert knn_top1(g, gy, q, np.array([0, 0]), k=3, backend=backend) == 50.0


def test_queries_without_another_image_of_their_class_are_left_out():
    x = np.array([[1, 0], [0.8, 0.6], [-1, 0]], np.float32)
    m = retrieval_metrics(x, np.array([5, 5, 9]))  # class 9 has one image: nothing to retrieve
    assert m["n_queries"] == 2 and all(m[k] == 100.0 for k in ("recall@1", "map@r", "ndcg"))
    with pytest.raises(EmbeddingError, match="none of the 3 images has another image of its class"):
        retrieval_metrics(x, np.array([0, 1, 2]))


def _brute_force(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The definitions, one query at a time, in float64."""
    x = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    out = {f"recall@{k}": 0.0 for k in KS} | {"map@r": 0.0, "ndcg": 0.0}
    n = 0
    for i in range(len(x)):
        others = np.array([j for j in range(len(x)) if j != i])
        ranked = others[np.argsort(-sims[i, others], kind="stable")]
        rel = [bool(y[j] == y[i]) for j in ranked]
        r = sum(rel)
        if r == 0:
            continue
        n += 1
        for k in KS:
            out[f"recall@{k}"] += any(rel[:k])
        out["map@r"] += sum(sum(rel[: p + 1]) / (p + 1) for p in range(r) if rel[p]) / r
        dcg = sum(1 / math.log2(p + 2) for p, hit in enumerate(rel) if hit)
        out["ndcg"] += dcg / sum(1 / math.log2(p + 2) for p in range(r))
    return {k: 100 * v / n for k, v in out.items()} | {"n_queries": n}


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_brute_force_on_random_data(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((150, 12)).astype(np.float32)
    y = rng.integers(0, 12, 150)
    y[0] = 99  # a lone query
    got, want = retrieval_metrics(x, y), _brute_force(x, y)
    assert got["n_queries"] == want["n_queries"] == 149
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key


def test_blockwise_equals_one_block_and_bounds_memory(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((97, 8)).astype(np.float32)
    y = rng.integers(0, 5, 97)
    one = retrieval_metrics(x, y, block_size=97)
    for block in (1, 7, 50):
        got = retrieval_metrics(x, y, block_size=block)
        assert all(got[k] == pytest.approx(one[k], abs=1e-9) for k in one)
    shapes = []
    original = retrieval._blocks
    monkeypatch.setattr(retrieval, "MAX_BLOCK_ELEMENTS", 1000)
    monkeypatch.setattr(retrieval, "_blocks",
                        lambda *a: ((s, b) for s, b in original(*a) if not shapes.append(b.shape)))
    auto = retrieval_metrics(x, y)
    assert max(r * c for r, c in shapes) <= 1000 and len(shapes) == math.ceil(97 / (1000 // 97))
    assert all(auto[k] == pytest.approx(one[k], abs=1e-9) for k in one)
    sims, idx = nearest(x[:30], x, 5, backend="numpy", block_size=4)
    sims1, idx1 = nearest(x[:30], x, 5, backend="numpy", block_size=30)
    assert np.array_equal(idx, idx1) and np.array_equal(sims, sims1)


def test_nearest_is_exact_and_sorted():
    rng = np.random.default_rng(3)
    q, g = rng.standard_normal((20, 6)).astype(np.float32), rng.standard_normal((40, 6)).astype(np.float32)
    sims, idx = nearest(q, g, 7, backend="numpy")
    full = l2_normalize(q).astype(np.float64) @ l2_normalize(g).astype(np.float64).T
    assert np.array_equal(idx, np.argsort(-full, axis=1)[:, :7])
    np.testing.assert_allclose(sims, np.take_along_axis(full, idx, 1), atol=1e-6)
    assert nearest(q, g, 100, backend="numpy")[1].shape == (20, 40)  # k capped at the gallery


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def test_faiss_and_numpy_give_the_same_neighbours_and_votes():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(4)
    g, q = rng.standard_normal((300, 16)).astype(np.float32), rng.standard_normal((120, 16)).astype(np.float32)
    gy, qy = rng.integers(0, 7, 300), rng.integers(0, 7, 120)
    s_np, i_np = nearest(q, g, 10, backend="numpy", block_size=16)
    s_fa, i_fa = nearest(q, g, 10, backend="faiss", block_size=16)
    assert np.array_equal(i_np, i_fa)
    np.testing.assert_allclose(s_np, s_fa, atol=1e-5)
    for k in (1, 5, 9):
        assert np.array_equal(knn_predict(g, gy, q, k, backend="numpy"), knn_predict(g, gy, q, k, backend="faiss"))
        assert knn_top1(g, gy, q, qy, k, backend="numpy") == knn_top1(g, gy, q, qy, k, backend="faiss")


def test_knn_equals_brute_force():
    rng = np.random.default_rng(5)
    g, q = rng.standard_normal((80, 5)).astype(np.float32), rng.standard_normal((30, 5)).astype(np.float32)
    gy = rng.integers(0, 4, 80)
    full = l2_normalize(q).astype(np.float64) @ l2_normalize(g).astype(np.float64).T
    want = []
    for row in full:
        top = np.argsort(-row)[:5]
        votes: dict[int, float] = {}
        for j in top:
            votes[int(gy[j])] = votes.get(int(gy[j]), 0.0) + row[j]
        want.append(max(sorted(votes), key=lambda c: votes[c]))
    assert knn_predict(g, gy, q, 5, backend="numpy").tolist() == want


def _pml(include: tuple[str, ...]):
    acc = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    return acc.AccuracyCalculator(include=include, k="max_bin_count", device=torch.device("cpu"))


def test_agrees_with_pytorch_metric_learning():
    """PML's precision_at_1 is our recall@1 and its mean_average_precision_at_r our map@r, with the query left out
    of its own references (``reference=None`` -> ref_includes_query) and ``k="max_bin_count"`` (enough neighbours
    for MAP@R); PML ranks by L2 distance, the same order as cosine on unit vectors. Both skip lone queries."""
    calc = _pml(("precision_at_1", "mean_average_precision_at_r"))
    rng = np.random.default_rng(6)
    y = rng.integers(0, 15, 240)
    x = l2_normalize(rng.standard_normal((15, 10))[y] + 0.6 * rng.standard_normal((240, 10))).astype(np.float32)
    y[:2] = [100, 101]  # two lone queries
    theirs = calc.get_accuracy(x, y)
    ours = retrieval_metrics(x, y)
    assert 20 < ours["map@r"] < 80 and 40 < ours["recall@1"] < 100  # clustered, not trivial
    assert ours["recall@1"] == pytest.approx(100 * theirs["precision_at_1"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(100 * theirs["mean_average_precision_at_r"], abs=1e-6)


def test_one_nearest_neighbour_agrees_with_pytorch_metric_learning():
    """Separate queries and references: PML's precision_at_1 is kNN top-1 with k=1."""
    calc = _pml(("precision_at_1",))
    rng = np.random.default_rng(7)
    g, q = l2_normalize(rng.standard_normal((200, 8))), l2_normalize(rng.standard_normal((90, 8)))
    gy, qy = rng.integers(0, 6, 200), rng.integers(0, 6, 90)
    theirs = calc.get_accuracy(q, qy, g, gy, ref_includes_query=False)["precision_at_1"]
    assert knn_top1(g, gy, q, qy, k=1, backend="numpy") == pytest.approx(100 * theirs, abs=1e-6)


def test_bad_inputs_get_clear_errors(monkeypatch):
    x = np.ones((4, 3), np.float32)
    with pytest.raises(EmbeddingError, match="4 embeddings but 3 labels"):
        retrieval_metrics(x, np.zeros(3))
    x[1, 2] = np.nan
    with pytest.raises(EmbeddingError, match="1 of 4 embeddings hold NaN or Inf"):
        retrieval_metrics(x, np.zeros(4))
    with pytest.raises(EmbeddingError, match="2-D array"):
        retrieval_metrics(np.ones(4), np.zeros(4))
    with pytest.raises(EmbeddingError, match="queries have 3 dimensions and the gallery 2"):
        nearest(np.ones((2, 3)), np.ones((2, 2)), 1)
    with pytest.raises(EmbeddingError, match="unknown nearest-neighbour backend 'annoy'"):
        nearest(np.ones((2, 2)), np.ones((2, 2)), 1, backend="annoy")
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "faiss" else real_import(name, *a, **k))
    assert retrieval.resolve_backend("auto") == "numpy"  # optional: falls back to the exact numpy search
    with pytest.raises(EmbeddingError, match="faiss is not installed; pip install faiss-cpu"):
        retrieval.resolve_backend("faiss")
