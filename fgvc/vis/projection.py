"""Two-dimensional projections of embeddings, for maps of a run's feature space.

* ``tsne``: t-SNE (van der Maaten & Hinton 2008, "Visualizing Data using t-SNE", JMLR 9) from scikit-learn, with
  perplexity ``min(30, (N - 1) / 3)``, PCA initialisation and a fixed seed.
* ``umap``: UMAP (McInnes, Healy & Melville 2018, "UMAP: Uniform Manifold Approximation and Projection",
  arXiv:1802.03426) from umap-learn, when installed (it is optional: ``pip install umap-learn``).
* ``pca``: the first two principal components (numpy SVD, signs fixed so that the output is deterministic);
  needs no optional package.

The embeddings are projected as given (no normalisation); scikit-learn and umap-learn are imported only here,
inside :func:`project_embeddings`, so that nothing else in fgvc imports them.
"""
from __future__ import annotations

import contextlib

import numpy as np

from fgvc.errors import EmbeddingError
from fgvc.extras import require

__all__ = ["PROJECTIONS", "project_embeddings", "tsne_perplexity"]

PROJECTIONS = ("tsne", "umap", "pca")
SERIAL_TSNE_BELOW = 5000  # t-SNE of fewer points runs on one OpenMP thread


def tsne_perplexity(n: int) -> float:
    """``min(30, (n - 1) / 3)``: the usual 30, lowered for small sets (sklearn needs perplexity < n)."""
    return float(min(30.0, (n - 1) / 3.0))


def _pca(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(0, keepdims=True)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]  # 2, D
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])  # largest loading positive
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    out = centred @ comps.T  # N, <=2
    if out.shape[1] < 2:  # one-dimensional data: pad with zeros
        out = np.concatenate([out, np.zeros((len(out), 2 - out.shape[1]))], 1)
    return out


def project_embeddings(emb: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """``emb: N, D`` -> ``N, 2`` float32 coordinates by ``method`` (``tsne`` | ``umap`` | ``pca``), seeded."""
    if method not in PROJECTIONS:
        raise EmbeddingError(f"unknown projection '{method}'; choose one of {', '.join(PROJECTIONS)}")
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise EmbeddingError(f"embeddings must be an N x D matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise EmbeddingError(f"{int((~np.isfinite(x)).any(1).sum())} embeddings hold NaN or Inf; re-embed the run "
                             "(python -m fgvc.embed) or check its training")
    n = len(x)
    if n < (2 if method == "pca" else 4):
        raise EmbeddingError(f"{method} needs at least {2 if method == 'pca' else 4} embeddings, got {n}")
    if method == "pca":
        return _pca(x).astype(np.float32)
    if method == "tsne":
        manifold = require("sklearn.manifold", "scikit-learn", "--method tsne")
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        tsne = manifold.TSNE(n_components=2, perplexity=tsne_perplexity(n), init="pca", random_state=seed,
                             learning_rate="auto")
        # small sets: one OpenMP thread (sklearn's parallel gradient loop, spinning on a busy CPU, took 35 s for
        # 30 points on 2 shared cores, against 0.1 s on one thread)
        with threadpool_limits(limits=1, user_api="openmp") if n < SERIAL_TSNE_BELOW \
                else contextlib.nullcontext():
            return tsne.fit_transform(x).astype(np.float32)
    umap = require("umap", "umap-learn", "--method umap", extra=None)
    reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, n - 1)), random_state=seed, n_jobs=1)
    return np.asarray(reducer.fit_transform(x), dtype=np.float32)
