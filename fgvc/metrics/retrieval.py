"""Retrieval and kNN metrics on embeddings, with cosine similarity, blockwise over the queries.

Every image of a split queries all the others (itself left out), ranked by cosine similarity:

* ``recall@k``: percent of queries with at least one image of their class among the ``k`` nearest others
  (the "Recall@K" of deep metric learning since Oh Song et al. 2016, "Deep Metric Learning via Lifted
  Structured Feature Embedding").
* ``map@r``: MAP@R of Musgrave et al. 2020, "A Metric Learning Reality Check": with R the number of *other*
  images of the query's class, the mean over the first R ranks of precision@i at the ranks i that hold an
  image of the class, divided by R (so it is 100 only when the R nearest are exactly the class).
* ``ndcg``: normalised discounted cumulative gain (Jarvelin & Kekalainen 2002, "Cumulated gain-based evaluation
  of IR techniques") with binary relevance over the whole ranking: sum of 1/log2(1 + rank) over the ranks holding
  an image of the class, divided by its ideal value (the R images of the class at ranks 1..R).

A query whose class has no other image (R = 0) has nothing to retrieve: it is left out of every metric, and
``n_queries`` counts the queries that were scored. All metrics are percentages, like top-1 elsewhere.

kNN (query vs gallery, e.g. test images against the train split): each query takes its ``k`` most similar
gallery images and each votes for its class with its cosine similarity as weight (only classes among the k
neighbours can win; ties go to the lower class index); with k = 1 it is the nearest neighbour's class.

Memory: similarities are computed for a block of queries at a time (``block_size`` rows against the whole
gallery, by default about ``MAX_BLOCK_ELEMENTS`` similarities, ~200 MB with the sort), so no N x N matrix
exists for a split of ~20k images. The k-nearest search of kNN runs on faiss (``IndexFlatIP``, exact) when it
is installed and on numpy otherwise (``backend``); both give the same neighbours. Retrieval ranks every other
image (NDCG is over the whole ranking), which an exact blockwise numpy sort does faster than a faiss search
for all N neighbours, so it always uses numpy. Ties in similarity go to the lower index with numpy.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from fgvc.errors import EmbeddingError

__all__ = ["MAX_BLOCK_ELEMENTS", "l2_normalize", "resolve_backend", "nearest", "retrieval_metrics",
           "knn_predict", "knn_top1"]

MAX_BLOCK_ELEMENTS = 2**23  # similarities per query block (x ~25 bytes with the sort and its labels)
RECALL_KS = (1, 2, 4, 8)


def _check(embeddings: np.ndarray, labels: np.ndarray | None, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 ``N, D`` embeddings and int64 ``N`` labels, or an :class:`EmbeddingError` naming what is wrong."""
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise EmbeddingError(f"{what}: embeddings must be a 2-D array (N images x D dimensions), got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(1).sum())
        raise EmbeddingError(f"{what}: {bad} of {len(x)} embeddings hold NaN or Inf (a diverged model or bad "
                             "weights?): evaluate another checkpoint (--checkpoint best) or retrain")
    if labels is None:
        return x, None
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(y) != len(x):
        raise EmbeddingError(f"{what}: {len(x)} embeddings but {len(y)} labels; give one label per embedding")
    return x, y


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32), so inner products are cosine similarities; zero rows stay zero."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``faiss`` when it is installed, else ``numpy``; ``faiss`` must be installed."""
    if backend not in ("auto", "faiss", "numpy"):
        raise EmbeddingError(f"unknown nearest-neighbour backend '{backend}': use auto, faiss or numpy")
    if backend == "numpy":
        return backend
    try:
        import faiss  # noqa: F401
    except ImportError:
        if backend == "faiss":
            raise EmbeddingError("backend faiss: faiss is not installed; pip install faiss-cpu (the extra "
                                 "fgvc[metric]) or use backend numpy (exact, same numbers)") from None
        return "numpy"
    return "faiss"


def _block_rows(n_queries: int, n_gallery: int, block_size: int | None) -> int:
    if block_size is not None:
        if block_size < 1:
            raise EmbeddingError(f"block_size must be >= 1 query, got {block_size}")
        return block_size
    return max(1, min(n_queries, MAX_BLOCK_ELEMENTS // max(n_gallery, 1)))


def _blocks(queries: np.ndarray, gallery: np.ndarray, block_size: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, similarities)`` of each block of query rows against the whole gallery (float32)."""
    rows = _block_rows(len(queries), len(gallery), block_size)
    for start in range(0, len(queries), rows):
        yield start, queries[start:start + rows] @ gallery.T


def nearest(queries: np.ndarray, gallery: np.ndarray, k: int, backend: str = "auto",
            block_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar gallery rows of every query: ``(similarities, indices)``, each ``Q, k``,
    most similar first (``k`` is capped at the gallery size)."""
    q, _ = _check(queries, None, "queries")
    g, _ = _check(gallery, None, "gallery")
    if q.shape[1] != g.shape[1]:
        raise EmbeddingError(f"queries have {q.shape[1]} dimensions and the gallery {g.shape[1]}: embed both with "
                             "the same model")
    if len(g) == 0:
        raise EmbeddingError("the gallery is empty: a nearest-neighbour search needs at least one gallery image")
    q, g, k = l2_normalize(q), l2_normalize(g), max(1, min(int(k), len(g)))
    sims = np.empty((len(q), k), np.float32)
    idx = np.empty((len(q), k), np.int64)
    rows = _block_rows(len(q), len(g), block_size)
    if resolve_backend(backend) == "faiss":
        import faiss

        index = faiss.IndexFlatIP(g.shape[1])
        index.add(g)
        for start in range(0, len(q), rows):
            sims[start:start + rows], idx[start:start + rows] = index.search(q[start:start + rows], k)
        return sims, idx
    for start, block in _blocks(q, g, block_size):
        top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < len(g) else np.tile(np.arange(len(g)),
                                                                                        (len(block), 1))
        vals = np.take_along_axis(block, top, axis=1)
        order = np.lexsort((top, -vals), axis=1)  # by similarity, then index
        sims[start:start + len(block)] = np.take_along_axis(vals, order, axis=1)
        idx[start:start + len(block)] = np.take_along_axis(top, order, axis=1)
    return sims, idx


def retrieval_metrics(embeddings: np.ndarray, labels: np.ndarray, ks: Sequence[int] = RECALL_KS,
                      block_size: int | None = None) -> dict[str, float | int]:
    """``recall@k`` for each k, ``map@r``, ``ndcg`` (percent) and ``n_queries`` of every image against all the
    others (module docstring); queries whose class has no other image are left out."""
    x, y = _check(embeddings, labels, "retrieval")
    assert y is not None
    n = len(x)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    relevant = counts[inverse] - 1  # R of each query
    scored = relevant > 0
    if not scored.any():
        raise EmbeddingError(f"retrieval: none of the {n} images has another image of its class to retrieve; "
                             "use a split with at least two images of some class")
    x = l2_normalize(x)
    discount = 1.0 / np.log2(np.arange(2, n + 1, dtype=np.float64))  # rank 1 .. n-1
    ideal = np.cumsum(discount)  # IDCG for R = 1 .. n-1
    hits = {k: 0 for k in ks}
    map_sum = ndcg_sum = 0.0
    for start, sims in _blocks(x, x, block_size):
        keep = np.flatnonzero(scored[start:start + len(sims)])
        if not len(keep):
            continue
        rows = start + keep
        sims = sims[keep]
        sims[np.arange(len(rows)), rows] = -np.inf  # the query itself: ranked last, then dropped
        order = np.argsort(-sims, axis=1, kind="stable")[:, : n - 1]
        rel = y[order] == y[rows, None]  # B, n-1: rank -> same class
        for k in ks:
            hits[k] += int(rel[:, :k].any(1).sum())
        r = relevant[rows]
        top = rel[:, : r.max()]
        ranks = np.arange(1, top.shape[1] + 1)
        precision = np.cumsum(top, axis=1) / ranks
        map_sum += float((np.where(top & (ranks <= r[:, None]), precision, 0.0).sum(1) / r).sum())
        ndcg_sum += float(((rel @ discount[: n - 1]) / ideal[r - 1]).sum())
    n_queries = int(scored.sum())
    result: dict[str, float | int] = {f"recall@{k}": 100.0 * hits[k] / n_queries for k in ks}
    result.update({"map@r": 100.0 * map_sum / n_queries, "ndcg": 100.0 * ndcg_sum / n_queries,
                   "n_queries": n_queries})
    return result


def knn_predict(gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray, k: int = 5,
                num_classes: int | None = None, backend: str = "auto", block_size: int | None = None) -> np.ndarray:
    """Class ``Q`` of every query: similarity-weighted vote of its ``k`` nearest gallery images (cosine)."""
    g, gy = _check(gallery, gallery_labels, "knn gallery")
    assert gy is not None
    if k < 1:
        raise EmbeddingError(f"knn: k must be >= 1 neighbour, got {k}")
    sims, idx = nearest(queries, g, k, backend, block_size)
    labels = gy[idx]  # Q, k
    c = int(num_classes if num_classes is not None else gy.max() + 1)
    rows = np.repeat(np.arange(len(idx)), idx.shape[1])
    scores = np.zeros((len(idx), c), np.float64)
    np.add.at(scores, (rows, labels.ravel()), sims.ravel().astype(np.float64))
    present = np.zeros((len(idx), c), bool)
    present[rows, labels.ravel()] = True
    return np.where(present, scores, -np.inf).argmax(1)


def knn_top1(gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray, query_labels: np.ndarray,
             k: int = 5, backend: str = "auto", block_size: int | None = None) -> float:
    """Percent of queries whose kNN vote (:func:`knn_predict`) is their own class."""
    _, qy = _check(queries, query_labels, "knn queries")
    assert qy is not None
    if len(qy) == 0:
        raise EmbeddingError("knn: no query images to score; use a split with images")
    gy = np.asarray(gallery_labels).astype(np.int64)
    c = int(max(gy.max(initial=-1), qy.max()) + 1)
    pred = knn_predict(gallery, gy, queries, k, c, backend, block_size)
    return 100.0 * float((pred == qy).mean())
