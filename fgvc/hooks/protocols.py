"""The end-of-training evaluation: every protocol of ``eval.protocols`` on the final-epoch model (never a
checkpoint chosen on test). Classification gives ``final.json``'s test metrics and ``eval/per_class.csv``,
``eval/confusion.csv``; any other protocol (retrieval, kNN, linear probe) writes
``eval/<protocol>-<split>-last.json`` and its tables."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fgvc.engine.hook import Hook
from fgvc.protocols import ProtocolResult, build_protocol, split_roles

if TYPE_CHECKING:
    from fgvc.engine.trainer import Trainer

__all__ = ["EvaluationProtocols"]


class EvaluationProtocols(Hook):
    """Runs ``eval.protocols`` (built, so an unknown name fails, when the hook is made) at the end of training."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.protocols = [build_protocol(name) for name in cfg["eval"]["protocols"]]
        self.results: dict[str, ProtocolResult] = {}

    def final_metrics(self, trainer: "Trainer", results: dict[str, Any]) -> None:
        roles, tta = split_roles(trainer.cfg), trainer.cfg["eval"]["tta_flip"]
        self.results = {proto.name: proto.evaluate(trainer.inference, roles, tta) for proto in self.protocols}
        results.update(self.results["classification"].metrics)

    def after_final(self, trainer: "Trainer", results: dict[str, Any]) -> None:
        eval_dir, tta = trainer.run_dir / "eval", trainer.cfg["eval"]["tta_flip"]
        for proto in self.protocols:
            result = self.results[proto.name]
            if proto.name == "classification":
                result.write_tables(eval_dir)
            else:
                result.save(eval_dir, proto.file_stem(trainer.test_split, "last", tta))
