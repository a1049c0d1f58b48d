"""The protocol seam: which splits a protocol is fed, what it returns, and how its result file is named."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from fgvc.config import scored_split
from fgvc.engine.rundir import write_json
from fgvc.registry import PROTOCOLS

if TYPE_CHECKING:
    from fgvc.engine.inference import TrainedRun

__all__ = ["Protocol", "ProtocolResult", "build_protocol", "split_roles"]


@dataclass
class ProtocolResult:
    """Metrics (a flat JSON-able mapping; accuracies in percent), tables written as CSV beside the JSON, and the
    lines a command prints."""

    metrics: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def write_tables(self, out_dir: Path, prefix: str = "") -> list[Path]:
        """``<out_dir>/<prefix><name>.csv`` for every table; returns the paths."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, table in self.tables.items():
            path = out_dir / f"{prefix}{name}.csv"
            table.to_csv(path, index=table.index.name is not None or not isinstance(table.index, pd.RangeIndex))
            paths.append(path)
        return paths

    def save(self, out_dir: Path, stem: str, metrics: dict[str, Any] | None = None) -> str:
        """``<out_dir>/<stem>.json`` (``metrics``, by default this result's) and the tables as
        ``<stem>-<name>.csv``; returns the line that says so (``wrote DIR/STEM.json, STEM-per_class.csv ...``)."""
        write_json(out_dir / f"{stem}.json", self.metrics if metrics is None else metrics)
        tables = self.write_tables(out_dir, prefix=f"{stem}-")
        return f"wrote {out_dir}/{stem}.json" + "".join(f", {p.name}" for p in tables)


class Protocol:
    """Base class: ``roles`` are the splits :meth:`evaluate` receives (``{"test": "test", ...}``);
    ``needs_run_classes``: the data must have the classes the model was trained on (false for retrieval, which
    takes species the model never saw)."""

    name: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]] = ("test",)
    needs_run_classes: ClassVar[bool] = True

    def evaluate(self, run: "TrainedRun", splits: dict[str, str], tta: bool = False) -> ProtocolResult:
        raise NotImplementedError

    def file_stem(self, split: str, checkpoint: str, tta: bool = False) -> str:
        """Name of the result file under ``eval/``, one scheme for every protocol: ``<protocol>-<split>-<checkpoint>
        [-tta]`` (e.g. ``classification-test-last``, ``retrieval-test-best-tta``)."""
        return f"{self.name}-{split}-{checkpoint}" + ("-tta" if tta else "")


def build_protocol(name: str) -> Protocol:
    """The registered protocol ``name`` (an unknown name gets the closest registered one)."""
    return PROTOCOLS.build(name)


def split_roles(cfg: dict[str, Any], test_split: str | None = None) -> dict[str, str]:
    """The recipe's splits by role; ``test_split`` (e.g. ``--split val``) replaces the scored one."""
    d = cfg["data"]
    roles = {"train": d["train_split"], "test": scored_split(cfg, test_split)}
    if d["val_split"]:
        roles["val"] = d["val_split"]
    return roles
