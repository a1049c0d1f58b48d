"""The files of a data audit (:mod:`fgvc.data.audit`): ``findings.csv``, ``summary.json`` and ``audit.html``.

``findings.csv`` has one row per finding, leakage first; its ``path`` column is the image to drop from training
(``data.exclude`` reads it directly). ``summary.json`` is small and stable for other reports::

    {"n_images": 11788, "splits": {"train": 5394, ...}, "counts": {"exact_duplicate": 0, ...},
     "leakage_pairs": 2, "leakage": {"exact_duplicate": 0, "near_duplicate": 2}, ...}

``audit.html`` is one self-contained page (thumbnails inlined as base64 JPEG, no network): a count per kind and a
table per kind with the image (and its pair) as ~96 px thumbnails.
"""
from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path
from typing import Any, Sequence

from fgvc.data.audit import KINDS, Audit, Finding
from fgvc.data.base import load_image
from fgvc.vis.report_html import jpeg_uri

__all__ = ["write_findings_csv", "summary", "write_summary", "write_html", "summary_paragraph", "write_all",
           "CSV_COLUMNS", "THUMB", "MAX_ROWS"]

CSV_COLUMNS = ("kind", "leakage", "split", "path", "other_split", "other_path", "score", "detail", "label",
               "other_label", "predicted")
THUMB = 96
MAX_ROWS = 200  # rows per table of the HTML page (findings.csv holds them all)
_TITLES = {
    "leakage": "Leakage: the same image in two splits",
    "exact_duplicate": "Exact duplicates within a split",
    "near_duplicate": "Near duplicates within a split",
    "unreadable": "Unreadable images",
    "size_outlier": "Size and aspect outliers",
    "mislabelled": "Likely mislabelled",
}


def _rel(path: Path | None, root: Path) -> str:
    """``path`` relative to the data root when it lies under it (POSIX separators), else absolute."""
    if path is None:
        return ""
    a, r = os.path.abspath(path), os.path.abspath(root)
    if a == r or a.startswith(r.rstrip(os.sep) + os.sep):
        return Path(os.path.relpath(a, r)).as_posix()
    return Path(a).as_posix()


def _row(f: Finding, root: Path) -> dict[str, str]:
    return {"kind": f.kind, "leakage": "yes" if f.leakage else "", "split": f.split, "path": _rel(f.path, root),
            "other_split": f.other_split, "other_path": _rel(f.other_path, root),
            "score": "" if f.score is None else f"{f.score:g}", "detail": f.detail, "label": f.label,
            "other_label": f.other_label, "predicted": f.predicted}


def write_findings_csv(audit: Audit, path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(_row(f, audit.root) for f in audit.findings)
    return path


def summary(audit: Audit) -> dict[str, Any]:
    """The contents of ``summary.json``."""
    counts = {k: sum(f.kind == k for f in audit.findings) for k in KINDS}
    leak = {k: sum(f.kind == k and f.leakage for f in audit.findings) for k in ("exact_duplicate", "near_duplicate")}
    return {
        "dataset": audit.name, "root": str(audit.root), "n_images": len({os.path.abspath(i.path) for i in audit.items}),
        "splits": audit.split_counts(), "counts": counts, "leakage_pairs": sum(leak.values()), "leakage": leak,
        "max_distance": audit.max_distance, "skipped_splits": audit.skipped_splits, "settings": audit.settings,
    }


def write_summary(audit: Audit, path: Path) -> Path:
    path.write_text(json.dumps(summary(audit), indent=2) + "\n", encoding="utf-8")
    return path


class _Html(str):
    """Markup that goes into the page as is (every other cell is escaped)."""


def _thumb(path: Path | None, cache: dict[str, str]) -> _Html:
    """An ``<img>`` of ``path`` at most THUMB px a side, as an inline base64 JPEG (a note when unreadable)."""
    if path is None:
        return _Html("")
    key = os.path.abspath(path)
    if key not in cache:
        try:
            cache[key] = f'<img src="{jpeg_uri(load_image(path), THUMB, quality=80)}" alt="{html.escape(path.name)}">'
        except Exception:
            cache[key] = '<span class="bad">unreadable</span>'
    return _Html(cache[key])


def _path_cell(path: Path | None, root: Path) -> _Html:
    return _Html(f'<span class="p">{html.escape(_rel(path, root))}</span>')


def _table(rows: Sequence[Finding], audit: Audit, cache: dict[str, str]) -> str:
    pairs = any(f.other_path is not None for f in rows)
    model = any(f.predicted for f in rows)
    head = ["image", "split", "path", "label"] + (["pair", "split", "path"] if pairs else []) \
        + (["predicted"] if model else []) + ["score", "detail"]
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for f in rows[:MAX_ROWS]:
        cells: list[str] = [_thumb(f.path, cache), f.split, _path_cell(f.path, audit.root), f.label]
        if pairs:
            cells += [_thumb(f.other_path, cache), f.other_split, _path_cell(f.other_path, audit.root)]
        if model:
            cells.append(f.predicted)
        cells += ["" if f.score is None else f"{f.score:g}", f.detail]
        tds = "".join(f"<td>{c if isinstance(c, _Html) else html.escape(c)}</td>" for c in cells)
        out.append(f"<tr>{tds}</tr>")
    out.append("</table>")
    if len(rows) > MAX_ROWS:
        out.append(f"<p>... and {len(rows) - MAX_ROWS} more in findings.csv</p>")
    return "\n".join(out)


def write_html(audit: Audit, path: Path) -> Path:
    """The self-contained page: summary counts, then one table per kind (leakage first)."""
    s = summary(audit)
    groups: dict[str, list[Finding]] = {"leakage": [f for f in audit.findings if f.leakage]}
    for k in KINDS:
        groups[k] = [f for f in audit.findings if f.kind == k and not f.leakage]
    splits = ", ".join(f"{k} {v:,}" for k, v in s["splits"].items())
    checked = {k: "mislabel" in audit.settings or k != "mislabelled" for k in groups}
    counts = "".join(f"<tr><td>{html.escape(_TITLES[k])}</td><td>{len(v) if checked[k] else 'not checked (give --run)'}"
                     "</td></tr>" for k, v in groups.items())
    cache: dict[str, str] = {}
    body = [f"<h1>Data audit: {html.escape(audit.name)} at {html.escape(str(audit.root))}</h1>",
            f"<p>{s['n_images']:,} images ({html.escape(splits)}); near duplicates: pHash Hamming distance &le; "
            f"{audit.max_distance} of 64 bits.</p>", f"<table>{counts}</table>"]
    for k, rows in groups.items():
        if not checked[k]:
            continue
        body.append(f"<h2>{html.escape(_TITLES[k])} ({len(rows)})</h2>")
        body.append(_table(rows, audit, cache) if rows else "<p>none found</p>")
    style = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left;vertical-align:middle;"
             "max-width:260px}.p{word-break:break-all;font-size:12px}"
             "img{display:block}.bad{color:#b00}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>data audit: {html.escape(audit.name)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path


def summary_paragraph(audit: Audit, output: Path) -> str:
    """The one-paragraph summary the command prints."""
    s, c = summary(audit), summary(audit)["counts"]
    splits = ", ".join(f"{k} {v:,}" for k, v in s["splits"].items())
    within = {k: c[k] - s["leakage"][k] for k in s["leakage"]}
    parts = [f"audited {s['n_images']:,} images of {audit.name} at {audit.root} ({splits}):",
             f"{s['leakage_pairs']} leakage pair(s), i.e. one image in two splits ({s['leakage']['exact_duplicate']} "
             f"exact, {s['leakage']['near_duplicate']} near; pHash distance <= {audit.max_distance}),",
             f"{within['exact_duplicate']} exact and {within['near_duplicate']} near duplicate pair(s) within a split,",
             f"{c['unreadable']} unreadable image(s), {c['size_outlier']} size/aspect outlier(s)"]
    if "mislabel" in audit.settings:
        parts[-1] += f", {c['mislabelled']} likely mislabelled image(s)"
    parts[-1] += "."
    parts.append(f"Wrote {output / 'findings.csv'}, {output / 'summary.json'} and {output / 'audit.html'}.")
    if s["leakage_pairs"]:
        parts.append("Leakage pairs come first in findings.csv; their path column is the copy in the earlier split "
                     "(train, then val, then test), so data.exclude=findings.csv drops the training copies (edit the "
                     "file to keep rows you disagree with).")
    return " ".join(parts)


def write_all(audit: Audit, output: str | Path) -> Path:
    """Write findings.csv, summary.json and audit.html into ``output`` (created)."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    write_findings_csv(audit, out / "findings.csv")
    write_summary(audit, out / "summary.json")
    write_html(audit, out / "audit.html")
    return out
