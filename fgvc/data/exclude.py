"""``data.exclude``: leave listed images out of the *training* split (the one the trainer builds; evaluation splits,
kNN galleries and ``fgvc.evaluate`` are untouched).

The list is either the ``findings.csv`` of ``python -m fgvc.datasets audit`` (its ``path`` column: for leakage pairs
the training copy, so the test image stays; edit the file to keep rows you disagree with) or a plain text file with
one path per line (blank lines and ``#`` comments are skipped). A path is absolute or relative to ``data.root``;
a relative path that is not found there also matches a training image whose path *ends* with it (e.g. CUB's
``001.Black_footed_Albatross/x.jpg`` as in ``images.txt``). A listed path that matches no training image is a
warning naming it (rows of a findings.csv whose split is another one are skipped quietly); the number dropped is
logged.
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path, PurePath
from typing import Sequence

from fgvc.data.base import DataError, Sample

log = logging.getLogger("fgvc.data")

__all__ = ["read_exclude_list", "exclude_samples", "MAX_WARNINGS"]

MAX_WARNINGS = 20  # unmatched paths named one by one; the rest are counted


def _key(path: str | Path) -> str:
    return os.path.normpath(os.path.abspath(path))


def read_exclude_list(path: str | Path) -> list[tuple[str, str | None]]:
    """``(path, split)`` entries of a findings.csv (``split`` from its ``split`` column) or of a text list
    (``split`` None)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"data.exclude: cannot read {path} ({e.strerror or e}); give a findings.csv of "
                        "`python -m fgvc.datasets audit` or a text file with one image path per line") from None
    lines = text.splitlines()
    header = next((ln for ln in lines if ln.strip()), "")
    if path.suffix.lower() == ".csv" or "path" in [c.strip() for c in header.split(",")]:
        rows = list(csv.DictReader(lines))
        if rows and "path" not in rows[0]:
            raise DataError(f"data.exclude: {path} is a CSV file without a 'path' column (its columns: "
                            f"{', '.join(rows[0])}); give the audit's findings.csv or one path per line")
        return [(r["path"].strip(), (r.get("split") or "").strip() or None)
                for r in rows if (r.get("path") or "").strip()]
    return [(ln.strip(), None) for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def exclude_samples(samples: Sequence[Sample], exclude: str | Path, root: str | Path, split: str) -> list[Sample]:
    """``samples`` (of training split ``split``) without those listed in ``exclude``; warns about unmatched paths and
    logs how many images were dropped."""
    entries = read_exclude_list(exclude)
    index: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        index.setdefault(_key(s.path), []).append(i)
    parts = [PurePath(os.path.normpath(str(s.path))).parts for s in samples]
    tails: dict[int, dict[tuple[str, ...], list[int]]] = {}  # n -> {last n parts of a path: sample indices}
    drop: set[int] = set()
    unmatched: list[str] = []
    other_split = 0
    for entry, entry_split in entries:
        p = Path(entry)
        hits = index.get(_key(p if p.is_absolute() else Path(root) / p), [])
        if not hits and not p.is_absolute():  # a tail of the image paths, e.g. as images.txt lists them
            tail = PurePath(os.path.normpath(entry)).parts
            if len(tail) not in tails:
                tails[len(tail)] = {}
                for i, ps in enumerate(parts):
                    tails[len(tail)].setdefault(ps[-len(tail):], []).append(i)
            hits = tails[len(tail)].get(tail, [])
        if hits:
            drop.update(hits)
        elif entry_split is not None and entry_split != split:
            other_split += 1
        else:
            unmatched.append(entry)
    for entry in unmatched[:MAX_WARNINGS]:
        log.warning(f"data.exclude: {entry} (listed in {exclude}) matches no image of the training split "
                    f"'{split}' under {root}; check the path (absolute, or relative to data.root)")
    if len(unmatched) > MAX_WARNINGS:
        log.warning(f"data.exclude: {len(unmatched) - MAX_WARNINGS} more listed paths match no training image")
    kept = [s for i, s in enumerate(samples) if i not in drop]
    note = f"; {other_split} row(s) of other splits left alone (data.exclude applies to training only)" \
        if other_split else ""
    log.info(f"data.exclude: dropped {len(drop):,} of {len(samples):,} images of the training split '{split}' "
             f"listed in {exclude}{note}")
    return kept
