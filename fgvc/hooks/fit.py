"""The fit verdict of a finished run: :func:`fgvc.metrics.fit_verdict.analyse_run` on its ``metrics.jsonl``
(overfitting, underfitting, good fit or inconclusive, with the evidence), logged and kept in ``final.json`` under
``fit`` (null for a model that was not trained); ``curves.png`` titles itself with it."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fgvc.engine.hook import Hook
from fgvc.metrics.fit_verdict import analyse_run, describe

if TYPE_CHECKING:
    from fgvc.engine.trainer import Trainer

log = logging.getLogger("fgvc")

__all__ = ["FitVerdict"]


class FitVerdict(Hook):
    def final_metrics(self, trainer: "Trainer", results: dict[str, Any]) -> None:
        if not trainer.env.is_main:
            return
        results["fit"] = analyse_run(trainer.run_dir) if trainer.progress["global_step"] else None
        if results["fit"] is not None:
            log.info(describe(results["fit"]))
