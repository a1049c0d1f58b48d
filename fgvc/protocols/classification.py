"""Classification: top-1, top-5 and mean per-class accuracy of the headline prediction, top-1 of every other
head (WS-DAN ``raw``, RA-CNN ``scale1..3``), a per-class table and the confusion matrix."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar, Sequence

import pandas as pd
from torch import Tensor

from fgvc.errors import ConfigError
from fgvc.metrics.accuracy import classification_metrics, confusion_matrix, per_class_table
from fgvc.protocols.base import Protocol, ProtocolResult
from fgvc.registry import PROTOCOLS

if TYPE_CHECKING:
    from fgvc.engine.inference import TrainedRun

__all__ = ["Classification", "classification_tables"]


def classification_tables(logits: Tensor, targets: Tensor, class_names: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``per_class`` (one row per class) and ``confusion`` (rows: true class, columns: predicted class)."""
    cm = confusion_matrix(logits.argmax(1).numpy(), targets.numpy(), len(class_names))
    return {"per_class": per_class_table(logits, targets, class_names),
            "confusion": pd.DataFrame(cm, index=list(class_names), columns=list(class_names))}


@PROTOCOLS.register("classification")
class Classification(Protocol):
    name: ClassVar[str] = "classification"

    def evaluate(self, run: "TrainedRun", splits: dict[str, str], tta: bool = False) -> ProtocolResult:
        t0 = time.time()
        split = splits["test"]
        if run.label_free and list(run.dataset(split, same_classes=False).classes) != run.class_names:
            raise ConfigError(f"{run.run_dir or 'this run'} was trained without labels (data.name: unlabeled), so it "
                              "has no classifier to score: use --protocol knn or linear (or retrieval) on its "
                              "embedding")
        got = run.collect(split, ["logits"], tta=tta)
        metrics = classification_metrics(got.logits, got.headline, got.targets)
        metrics["seconds"] = round(time.time() - t0, 3)
        heads = [k for k in got.logits if len(got.logits) > 1]
        lines = [f"  top-1 {metrics['top1']:.2f}   top-5 {metrics['top5']:.2f}   "
                 f"mean per-class {metrics['mean_class_acc']:.2f}"]
        if heads:
            lines.append("  " + "   ".join(f"{k} {metrics[f'{k}_top1']:.2f}" for k in heads))
        return ProtocolResult(metrics, classification_tables(got.prediction, got.targets, run.class_names), lines)
