"""Reading annotation files that users edit by hand, and saying exactly which line is wrong.

:class:`Problems` decides what happens to a problem found while parsing: raise it at once (loading a data
set) or collect it and go on (``python -m fgvc.datasets check``, which lists every problem).
:func:`read_table` parses a space-separated annotation file (CUB-200-2011, Wah et al. 2011) and
:func:`check_unique` reports repeated ids; both report through a :class:`Problems`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fgvc.data.base import AnnotationError

__all__ = ["Problems", "read_table", "check_unique"]


class Problems:
    """Where the annotation problems of a parse go; the mode is chosen by the constructor:

    * :meth:`Problems.raising` - :meth:`report` raises the :class:`AnnotationError` at once, so loading a data
      set stops at its first problem;
    * :meth:`Problems.collecting` - :meth:`report` appends it to a list and returns, so the parser leaves the
      bad row out and goes on to find every other problem.
    """

    def __init__(self, found: list[AnnotationError] | None) -> None:
        """Prefer :meth:`raising` and :meth:`collecting`, which say the mode."""
        self.found = found
        self._lines: dict[Path, list[str]] = {}

    @classmethod
    def raising(cls) -> Problems:
        """:meth:`report` raises the problem (the first one ends the parse)."""
        return cls(None)

    @classmethod
    def collecting(cls, found: list[AnnotationError]) -> Problems:
        """:meth:`report` appends each problem to ``found`` and the parse goes on without the bad rows."""
        return cls(found)

    @property
    def is_collecting(self) -> bool:
        return self.found is not None

    def text(self, path: Path, line: int | None) -> str | None:
        """The text of 1-based ``line`` of ``path`` (None for no line or a line past the end)."""
        if line is None:
            return None
        if path not in self._lines:
            self._lines[path] = path.read_text(encoding="utf-8", errors="replace").splitlines()
        lines = self._lines[path]
        return lines[line - 1] if 0 < line <= len(lines) else None

    def report(self, path: Path, line: int | None, problem: str, show_text: bool = True) -> None:
        """A problem at ``path`` (and ``line``, whose text the message quotes unless ``show_text`` is False):
        raised in raising mode, appended in collecting mode."""
        err = AnnotationError(path, line, problem, self.text(path, line) if show_text else None)
        if self.found is None:
            raise err
        self.found.append(err)


def read_table(path: Path, fields: Sequence[tuple[str, type]], what: str, problems: Problems
               ) -> dict[str, np.ndarray]:
    """Parse a space-separated annotation file with typed ``fields`` (a final ``str`` field takes the rest
    of the line). Returns one array per field plus ``"_line"`` (1-based line numbers). Valid files take
    the fast pandas path; anything odd is re-read line by line to name the bad line and its text."""
    import pandas as pd

    names = [n for n, _ in fields]
    try:
        df = pd.read_csv(path, sep=" ", header=None, skip_blank_lines=False, na_filter=False, quoting=3,
                         engine="c", dtype={i: str for i, (_, t) in enumerate(fields) if t is str})
        ok = df.shape[1] == len(fields) and all(
            (t is int and df[i].dtype.kind == "i") or (t is float and df[i].dtype.kind in "if")
            or (t is str and df[i].map(len).min() > 0) for i, (_, t) in enumerate(fields)) and len(df) > 0
    except Exception:  # ParserError, UnicodeDecodeError ...: the slow path says what and where
        ok = False
    if ok:
        out = {n: df[i].to_numpy(dtype=object if t is str else t) for i, (n, t) in enumerate(fields)}
        out["_line"] = np.arange(1, len(df) + 1)
        return out
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        problems.report(path, None, f"not UTF-8 text ({e})")
        return {n: np.array([]) for n in [*names, "_line"]}
    rows: list[list[Any]] = []
    lines: list[int] = []
    rest = fields[-1][1] is str
    expect = f"expected {len(fields)} space-separated fields ({' '.join(names)}) for {what}"
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(None, len(fields) - 1) if rest else line.split()
        if len(parts) != len(fields):
            problems.report(path, lineno, f"{expect}, found {len(parts)}")
            continue
        row: list[Any] = []
        for (name, typ), value in zip(fields, parts):
            try:
                row.append(typ(value.strip()) if typ is not int else int(value))
            except ValueError:
                kind = "an integer" if typ is int else "a number"
                problems.report(path, lineno, f"field '{name}' is not {kind} ({value!r})")
                break
        else:
            rows.append(row)
            lines.append(lineno)
    out = {n: np.array([r[i] for r in rows], dtype=object if t is str else t) for i, (n, t) in enumerate(fields)}
    out["_line"] = np.array(lines, dtype=np.int64)
    return out


def check_unique(path: Path, ids: np.ndarray, lines: np.ndarray, what: str, problems: Problems) -> np.ndarray:
    """Report repeated ``ids`` (each repeat at its own line); returns the mask of first occurrences."""
    _, first = np.unique(ids, return_index=True)
    keep = np.zeros(len(ids), dtype=bool)
    keep[first] = True
    if not keep.all():
        first_line = {ids[i]: lines[i] for i in first}
        for i in np.flatnonzero(~keep)[:1000]:
            problems.report(path, int(lines[i]), f"duplicate {what} {ids[i]} (first on line {first_line[ids[i]]})")
    return keep
