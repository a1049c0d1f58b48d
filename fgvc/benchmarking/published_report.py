"""The written form of ``python -m fgvc.bench report``: a :class:`~fgvc.benchmarking.published.Comparison` as
Markdown and as a bar chart PNG.

:func:`format_markdown` gives the table of our test top-1 / top-5 / mean per-class accuracy, training time and
throughput next to the matched published number and the gap, with the honesty notes (subset data, unfinished runs,
another image size) and the numbered published sources; :func:`draw_chart` draws ours against published per run;
:func:`write_report` compares run directories and writes both.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fgvc.benchmarking.published import Comparison, ComparedRun, compare_runs

__all__ = ["TABLE_HEAD", "format_markdown", "draw_chart", "write_report"]

TABLE_HEAD = ["run", "method", "backbone", "dataset (root)", "img", "epochs", "steps", "top-1", "top-5", "mean/class",
              "train s", "train img/s", "published", "gap"]


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None or v == "":
        return ""
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _cells(r: ComparedRun) -> list[str]:
    """One table row: our numbers, the published number with its citation, the gap."""
    marks = (" †" if r.subset else "") + ("" if r.finished else " ‡")
    pub_cell = ""
    if r.match in ("backbone", "other-backbone"):
        pub_cell = f"{r.published:.1f}" + ("" if r.match == "backbone" else f" ({r.published_row['backbone']})")
        pub_cell += f" [{r.cite}]"
    elif r.match == "no-number":
        pub_cell = f"n/a [{r.cite}]"  # the paper gives no number for this data set; the source list says why
    return [f"`{r.run}`{marks}", r.method, r.backbone, f"{r.dataset} ({r.root})", _fmt(r.img_size),
            _fmt(r.epochs), _fmt(r.steps), _fmt(r.top1), _fmt(r.top5), _fmt(r.mean_class_acc),
            _fmt(r.train_seconds, 0), _fmt(r.images_per_s, 1), pub_cell,
            f"{r.gap:+.1f}" if r.gap is not None else ""]


def format_markdown(report: Comparison, generated: dt.datetime | None = None) -> str:
    """The report's Markdown: the table, the honesty notes and the numbered published sources."""
    generated = generated or dt.datetime.now()
    lines = [
        "# fgvc benchmark report", "",
        f"Generated {generated.isoformat(timespec='seconds')} by `python -m fgvc.bench report` from "
        f"{len(report.rows)} run(s); published numbers from `{report.published_csv}`. Accuracies in %, test split, "
        "final-epoch model (final.json). `gap` = ours - published.", "",
        "| " + " | ".join(TABLE_HEAD) + " |", "|" + "|".join("---" for _ in TABLE_HEAD) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in _cells(r)) + " |" for r in report.rows]
    lines.append("")
    if report.any_subset:
        lines += ["**† Not a like-for-like comparison.** These runs use a subset, mini or synthetic data set "
                  "(`data.root` contains 'mini' or `data.name` is 'synthetic'): fewer classes and images, often "
                  "lower resolution and far shorter schedules than the papers. Their accuracy and the gap say "
                  "nothing about how the method compares with the published full-data-set number; they only show "
                  "that the pipeline runs end to end.", ""]
    if report.any_unfinished:
        lines += ["‡ No final.json: the run did not finish (or its final evaluation failed); accuracy cells are "
                  "empty.", ""]
    notes = [f"`{r.run}`: trained at {r.img_size} px, the published number at {r.published_row['img_size']} px."
             for r in report.rows if r.img_size_differs]
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    if report.sources:
        lines += ["Published numbers:", ""]
        for i, row in enumerate(report.sources, start=1):
            num = "no number" if row["top1"] is None else f"{row['top1']:.1f}"
            size = f" at {row['img_size']} px" if row.get("img_size") else ""
            venue = f", {row['venue']}" if row.get("venue") else ""
            lines.append(f"{i}. {row['method']} / {row['backbone']} / {row['dataset']}{size}: {num}. "
                         f"{row['source']}{venue}. {row['notes']}")
        lines.append("")
    return "\n".join(lines)


def draw_chart(report: Comparison, path: str | Path) -> Path:
    """Bar chart PNG of our test top-1 next to the published number, per run."""
    import matplotlib  # heavy third-party import, loaded only when a chart is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report.rows
    labels = [f"{r.run[:28]}{' †' if r.subset else ''}" for r in runs]
    xs = range(len(runs))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(runs) + 2), 3.6))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], [r.top1 or 0 for r in runs], w, label="ours (test top-1)")
    ax.bar([x + w / 2 for x in xs], [r.published or 0 for r in runs], w, label="published", color="grey")
    for x, r in zip(xs, runs):
        for dx, v in ((-w / 2, r.top1), (w / 2, r.published)):
            if v is None:
                ax.text(x + dx, 1, "n/a", ha="center", fontsize=7, rotation=90)
    ax.set_xticks(list(xs), labels, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 115)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2, frameon=False)
    if report.any_subset:
        ax.set_title("† subset/mini/synthetic data: not comparable with the published numbers", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dirs: list[str | Path], published_csv: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Markdown table + bar chart (``out`` with ``.png``); returns both paths."""
    report = compare_runs(run_dirs, published_csv)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(format_markdown(report))
    return out, draw_chart(report, out.with_suffix(".png"))
