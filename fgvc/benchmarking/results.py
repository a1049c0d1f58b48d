"""The records of ``python -m fgvc.bench pipeline|steps|infer``: one table per command, one JSON line per row.

Every row names its ``kind`` (``pipeline``, ``steps`` or ``infer``), its ``batch`` (images per batch), the row's
name under the kind's key (``loader``, ``method`` or ``path``: :data:`NAME_KEY`), ``images_per_s`` and ``ratio``
against the table's reference row (torchvision for pipeline, the plain baseline for steps, eager fp32 for infer),
plus the ``table`` id shared by the rows of one command, the date, the command and the machine (platform, CPU
count, torch threads and version, device name). :func:`finish_table` stamps, prints and appends them;
:func:`write_speed_md` renders the latest table of each kind and device as ``benchmarks/results/speed.md``.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["RESULTS", "NAME_KEY", "REFERENCE", "finish_table", "format_rows", "append_rows", "read_rows",
           "latest_tables", "write_speed_md"]

RESULTS = "benchmarks/results/speed.jsonl"  # every bench command's --results default
NAME_KEY = {"pipeline": "loader", "steps": "method", "infer": "path"}
REFERENCE = {"pipeline": "the torchvision reference loader", "steps": "the plain baseline's step",
             "infer": "eager fp32"}
_META = ("kind", "table", "date", "command", "machine")


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != 0 and abs(v) < 0.01:
            return f"{v:.1e}"  # e.g. a logit difference
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}"
    return "" if v is None else str(v).replace("|", "/")


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of ``rows`` (one kind): the name first, then every other non-meta field in first-seen order."""
    if not rows:
        return "(no rows)"
    name = NAME_KEY[rows[0]["kind"]]
    cols = [name]
    for r in rows:
        cols += [k for k in r if k not in cols and k not in _META and not isinstance(r[k], (dict, list))]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def append_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def finish_table(kind: str, rows: list[dict[str, Any]], command: str, machine: dict[str, Any],
                 results: str | Path | None, echo: bool = True) -> list[dict[str, Any]]:
    """Stamp ``rows`` (each with the kind's name key, ``batch``, ``images_per_s`` and ``ratio``) with the kind, one
    table id, the date, ``command`` and ``machine``; print them as a table and append them to ``results`` (None:
    not written). Returns the stamped rows."""
    if kind not in NAME_KEY:
        raise ValueError(f"kind must be one of {', '.join(NAME_KEY)}, not {kind!r}")
    table = dt.datetime.now().strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
    date = dt.datetime.now().isoformat(timespec="seconds")
    out = []
    for r in rows:
        missing = [k for k in (NAME_KEY[kind], "batch", "images_per_s", "ratio") if k not in r]
        if missing:
            raise ValueError(f"a {kind} row needs {', '.join(missing)}: {r}")
        out.append({"kind": kind, **r, "table": table, "date": date, "command": command, "machine": machine})
    if echo:
        print(f"{kind} on {machine.get('device_name', '?')} ({machine.get('torch_threads', '?')} torch threads, "
              f"torch {machine.get('torch', '?')}); ratio against {REFERENCE[kind]}")
        print(format_rows(out))
    if results is not None:
        path = append_rows(results, out)
        if echo:
            print(path)
    return out


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The pipeline/steps/infer rows of a results file (other lines, e.g. ``fgvc.bench speed``'s, are skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("kind") in NAME_KEY and "table" in rec:
                rows.append(rec)
    return rows


def latest_tables(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """For each (kind, device, label) the rows of its most recent table; ordered pipeline, steps, infer."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        tables.setdefault(r["table"], []).append(r)
    latest: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for t in sorted(tables.values(), key=lambda t: t[0]["date"]):
        head = t[0]
        key = (head["kind"], head["machine"].get("device_name", "?"), str(head.get("label", "")))
        latest[key] = t
    order = list(NAME_KEY)
    return [latest[k] for k in sorted(latest, key=lambda k: (order.index(k[0]), k[1], k[2]))]


def write_speed_md(results: str | Path, out: str | Path) -> Path:
    """``speed.md``: the latest table of each kind, device and label in ``results``, each with its command."""
    lines = ["# fgvc speed tables", "",
             f"Generated {dt.datetime.now().isoformat(timespec='seconds')} by `python -m fgvc.bench tables` from "
             f"`{results}` (the most recent table of each kind, device and label). Rerun any table with its command.",
             ""]
    for t in latest_tables(read_rows(results)):
        head = t[0]
        m = head["machine"]
        title = {"pipeline": "Data pipeline", "steps": "Training step", "infer": "Inference"}[head["kind"]]
        lines += [f"## {title}: {m.get('device_name', '?')}" + (f" ({head['label']})" if head.get("label") else ""),
                  "", f"`{head['command']}`", "",
                  f"{head['date']}; {m.get('cpu_count', '?')} CPUs, {m.get('torch_threads', '?')} torch threads, "
                  f"torch {m.get('torch', '?')}; ratio against {REFERENCE[head['kind']]}.", "", format_rows(t), ""]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
