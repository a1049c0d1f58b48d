"""Evaluation protocols, registered by name in :data:`fgvc.registry.PROTOCOLS` like methods and losses.

A protocol names the splits it needs (its roles: ``test`` for the split it scores; ``train`` and ``val``
where it fits something first) and turns a :class:`~fgvc.engine.inference.TrainedRun` into metrics. The
trainer runs ``eval.protocols`` on the test split at the end of training; ``python -m fgvc.evaluate
--protocol NAME`` runs one on a finished run.

Registered: ``classification`` (top-1/top-5/mean per-class accuracy of every head, per-class table and
confusion matrix); on embeddings (:mod:`fgvc.protocols.embeddings`): ``retrieval`` (Recall@K, MAP@R, NDCG of
each image against the others, any species), ``knn`` (train gallery, test queries) and ``linear`` (logistic
regression probe on frozen train embeddings).
"""
from __future__ import annotations

from fgvc.registry import PROTOCOLS

from . import classification, embeddings  # noqa: F401  (registers the protocols)
from .base import Protocol, ProtocolResult, build_protocol, split_roles

__all__ = ["Protocol", "ProtocolResult", "build_protocol", "split_roles", "PROTOCOLS"]
