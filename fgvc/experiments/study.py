"""An ablation study's own records beside its runs: ``DIR/study.json`` (the command and its settings) and the tables
refreshed from the runs finished so far (``ablation.md``, ``ablation.csv``, ``ablation.png`` under a header naming the
command and the machine; :mod:`fgvc.experiments.table`)."""
from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any, Sequence

from fgvc.experiments.plan import Row
from fgvc.experiments.table import collect, write_tables

__all__ = ["write_study_json", "refresh_tables"]


def write_study_json(out: Path, command: str, settings: dict[str, Any]) -> Path:
    """``out/study.json``: ``command`` and ``settings`` (the study's flags), written before any run starts."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study.json"
    path.write_text(json.dumps({"command": command, **settings}, indent=1) + "\n")
    return path


def refresh_tables(rows: Sequence[Row], seeds: Sequence[int], out: Path, cumulative: bool, command: str) -> None:
    """Rewrite the study's tables from the runs of ``rows`` x ``seeds`` finished under ``out/runs``."""
    header = (f"# Ablation study\n\n- command: `{command}`\n- machine: {platform.platform()}\n- tables written "
              f"{dt.datetime.now():%Y-%m-%d %H:%M} from the finished runs under {out}/runs\n")
    write_tables(collect(rows, seeds, out), out, cumulative, header)
