"""Protocols on embeddings (``Method.infer(...).embedding``): ``retrieval``, ``knn`` and ``linear``.

* ``retrieval`` (roles: test): every image of the split queries all the others by cosine similarity:
  ``recall@1,2,4,8``, ``map@r``, ``ndcg`` and ``n_queries`` (:mod:`fgvc.metrics.retrieval`). Takes any species:
  ``--set data.root=... data.name=...`` may name a data set whose classes the model never saw.
* ``knn`` (roles: train, test): the train split is the gallery, the test split the queries; ``top1`` of the
  similarity-weighted vote of the ``k`` nearest (cosine), and ``k``.
* ``linear`` (roles: train, val, test): multinomial logistic regression on frozen train embeddings, C chosen on
  val when there is one (:mod:`fgvc.metrics.linear_probe`); ``top1`` on test and ``c``.

All scores are percentages. kNN and the linear probe need the run's own classes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from fgvc.metrics.linear_probe import C_GRID, DEFAULT_C, linear_probe
from fgvc.metrics.retrieval import RECALL_KS, knn_top1, retrieval_metrics
from fgvc.errors import ConfigError
from fgvc.protocols.base import Protocol, ProtocolResult
from fgvc.registry import PROTOCOLS

if TYPE_CHECKING:
    from fgvc.engine.inference import TrainedRun

__all__ = ["Retrieval", "Knn", "Linear", "split_embeddings"]


def split_embeddings(run: "TrainedRun", split: str, tta: bool = False, same_classes: bool = True,
                     desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings N, D float32, labels N int64)`` of one pass over ``split``."""
    got = run.collect(split, ["embedding"], tta=tta, desc=desc or f"embed {split}", same_classes=same_classes)
    emb = got.embedding.numpy() if got.embedding is not None else np.zeros((0, 0), np.float32)
    return emb.astype(np.float32, copy=False), got.targets.numpy().astype(np.int64)


def _distinct(protocol: str, splits: dict[str, str], role: str) -> None:
    """Refuse scoring the split that the protocol fits on (``--split train``): every image would find itself."""
    if splits[role] == splits["test"]:
        raise ConfigError(f"--protocol {protocol} uses the '{splits[role]}' split as its {role} set and cannot also "
                          f"score it (--split {splits['test']}): choose another --split, or use --protocol retrieval, "
                          "which leaves each query out of its own gallery")


@PROTOCOLS.register("retrieval")
class Retrieval(Protocol):
    """Each image of the scored split against all the others (itself left out), cosine similarity."""

    name: ClassVar[str] = "retrieval"
    needs_run_classes: ClassVar[bool] = False

    def evaluate(self, run: "TrainedRun", splits: dict[str, str], tta: bool = False) -> ProtocolResult:
        emb, labels = split_embeddings(run, splits["test"], tta, same_classes=False)
        m = retrieval_metrics(emb, labels, RECALL_KS)
        line = "  " + "   ".join(f"{k} {m[k]:.2f}" for k in (*(f"recall@{k}" for k in RECALL_KS), "map@r", "ndcg"))
        return ProtocolResult(m, lines=[f"{line}   ({m['n_queries']} queries)"])


@PROTOCOLS.register("knn")
class Knn(Protocol):
    """Train split as gallery, test split as queries; similarity-weighted vote of the ``k`` nearest."""

    name: ClassVar[str] = "knn"
    roles: ClassVar[tuple[str, ...]] = ("train", "test")

    def __init__(self, k: int = 5, backend: str = "auto") -> None:
        self.k, self.backend = k, backend

    def evaluate(self, run: "TrainedRun", splits: dict[str, str], tta: bool = False) -> ProtocolResult:
        _distinct(self.name, splits, "train")
        gallery, gallery_labels = split_embeddings(run, splits["train"], tta)
        queries, query_labels = split_embeddings(run, splits["test"], tta)
        top1 = knn_top1(gallery, gallery_labels, queries, query_labels, self.k, self.backend)
        return ProtocolResult({"top1": top1, "k": self.k},
                              lines=[f"  top-1 {top1:.2f}   (k={self.k}, {len(query_labels)} queries against "
                                     f"{len(gallery_labels)} {splits['train']} images)"])


@PROTOCOLS.register("linear")
class Linear(Protocol):
    """Logistic regression on frozen train embeddings, C chosen on val (when there is one), top-1 on test."""

    name: ClassVar[str] = "linear"
    roles: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def __init__(self, c_grid: tuple[float, ...] = C_GRID, default_c: float = DEFAULT_C, max_iter: int = 200) -> None:
        self.c_grid, self.default_c, self.max_iter = tuple(c_grid), default_c, max_iter

    def evaluate(self, run: "TrainedRun", splits: dict[str, str], tta: bool = False) -> ProtocolResult:
        _distinct(self.name, splits, "train")
        train = split_embeddings(run, splits["train"], tta)
        use_val = "val" in splits and splits["val"] != splits["test"]  # never choose C on the split it scores
        val = split_embeddings(run, splits["val"], tta) if use_val else None
        test = split_embeddings(run, splits["test"], tta)
        n_classes = len(run.dataset(splits["test"]).classes)  # the run's, or the data's for a label-free run
        res = linear_probe(train, test, n_classes, val, self.c_grid, self.default_c, self.max_iter)
        how = (f"chosen on {splits['val']}: " + ", ".join(f"C={c:g} {t:.1f}" for c, t in res.val_top1.items())
               if res.val_top1 else "no validation split: the default")
        return ProtocolResult({"top1": res.top1, "c": res.c}, lines=[f"  top-1 {res.top1:.2f}   C={res.c:g} ({how})"])
