"""The ablation table: per row, the mean and sample standard deviation over seeds of the final-epoch test top-1
(``final.json``) and of the final epoch's validation top-1 (the last line of ``metrics.jsonl``; test must never pick a
setting, so val stands beside it), the change against row 0 and against the previous row as the mean of differences
paired by seed, and with three or more paired seeds a paired t-test (Student 1908; ``scipy.stats.ttest_rel``):
p >= 0.05 is reported as inside the noise. Rows whose runs are not all finished are marked incomplete, never
dropped. Written as ``ablation.md`` and ``ablation.csv`` (a header line, then one line per row).
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fgvc.engine.rundir import read_metrics
from fgvc.experiments.plan import Row, describe_changes
from fgvc.engine.run_state import read_final
from fgvc.experiments.plot import bar_chart
from fgvc.experiments.stats import mean_std

__all__ = ["RowResult", "collect", "mean_std", "paired", "verdict", "csv_text", "markdown", "write_tables"]

ALPHA = 0.05
CSV_COLUMNS = ["row", "name", "change", "seeds_done", "seeds_total", "test_top1_mean", "test_top1_std", "val_top1_mean",
               "val_top1_std", "delta_vs_row0", "p_vs_row0", "delta_vs_prev", "p_vs_prev", "note", "train_seconds_mean"]


@dataclass
class RowResult:
    """One row's finished runs: seed -> test top-1, val top-1 (None when the run had no val split), train seconds."""

    row: Row
    seeds: list[int]
    test: dict[int, float] = field(default_factory=dict)
    val: dict[int, float | None] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.test) == len(self.seeds)


def read_run(run_dir: Path) -> tuple[float, float | None, float] | None:
    """(test top-1, final-epoch val top-1, train seconds) of a finished run, else None."""
    final, _ = read_final(run_dir)  # absent, or damaged (the study resumes that run, which writes it again)
    if final is None or not isinstance(final.get("top1"), (int, float)):
        return None
    rows = read_metrics(run_dir)
    val = rows[-1].get("val_top1") if rows else None
    return float(final["top1"]), (float(val) if val is not None else None), float(final.get("train_seconds") or 0.0)


def collect(rows: Sequence[Row], seeds: Sequence[int], out: Path) -> list[RowResult]:
    results = []
    for row in rows:
        res = RowResult(row, list(seeds))
        for s in seeds:
            got = read_run(Path(out) / "runs" / row.slug / f"seed{s}")
            if got is not None:
                res.test[s], res.val[s], res.seconds[s] = got
        results.append(res)
    return results


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[float | None, float | None, int]:
    """``a - b`` over the seeds both have: (mean difference, two-sided paired t-test p-value or None below three
    pairs, number of pairs). Identical differences give p = 0 (or 1 when they are all zero)."""
    common = sorted(set(a) & set(b))
    d = [a[s] - b[s] for s in common]
    if not d:
        return None, None, 0
    mean = statistics.fmean(d)
    if len(d) < 3:
        return mean, None, len(d)
    if statistics.pstdev(d) == 0:
        return mean, (1.0 if mean == 0 else 0.0), len(d)
    from scipy.stats import ttest_rel

    return mean, float(ttest_rel([a[s] for s in common], [b[s] for s in common]).pvalue), len(d)


def verdict(delta: float | None, p: float | None, n: int) -> str:
    """One phrase: ``significant (p=0.012)``, ``inside the noise (p=0.41)`` or why there is no test."""
    if delta is None:
        return "no paired seeds yet"
    if p is None:
        return f"{n} paired seed(s): no test (needs 3)"
    return f"significant (p={p:.3f})" if p < ALPHA else f"inside the noise (p={p:.2f})"


def _comparisons(results: Sequence[RowResult], i: int) -> dict[str, Any]:
    res = results[i]
    out: dict[str, Any] = {}
    for tag, j in (("row0", 0), ("prev", i - 1)):
        if i == 0:
            out[tag] = (None, None, 0)
        else:
            out[tag] = paired(res.test, results[j].test)
    return out


def _change(res: RowResult, results: Sequence[RowResult], most: int | None = None) -> str:
    """Row 0: its recipe and ``--set``; another row: a recipe switch, then its changed keys (the first ``most``)."""
    row = res.row
    if row.index == 0:
        return f"{row.recipe}" + (f" --set {' '.join(row.overrides)}" if row.overrides else "")
    parent = next(r.row for r in results if r.row.index == row.parent)
    switch = f"recipe {row.recipe}: " if row.recipe != parent.recipe else ""
    shown = row.changes if most is None or len(row.changes) <= most else row.changes[:most]
    more = f"; and {len(row.changes) - len(shown)} more keys (ablation.csv)" if len(shown) < len(row.changes) else ""
    return switch + describe_changes(shown) + more


def _note(res: RowResult, comp: dict[str, Any]) -> str:
    parts = [] if res.complete else [f"incomplete: {len(res.test)}/{len(res.seeds)} seeds"]
    if res.row.index > 0:
        parts.append("vs prev: " + verdict(*comp["prev"]))
        if res.row.index > 1:
            parts.append("vs row 0: " + verdict(*comp["row0"]))
    return "; ".join(parts)


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _table_rows(results: Sequence[RowResult], most: int | None = None) -> list[dict[str, Any]]:
    out = []
    for i, res in enumerate(results):
        comp = _comparisons(results, i)
        vals = [v for v in res.val.values() if v is not None]
        (tm, ts), (vm, vs) = mean_std(list(res.test.values())), mean_std(vals)
        secs = mean_std(list(res.seconds.values()))[0]
        out.append({"row": res.row.index, "name": res.row.name, "change": _change(res, results, most), "seeds_done": len(res.test),
                    "seeds_total": len(res.seeds), "test_top1_mean": _num(tm), "test_top1_std": _num(ts),
                    "val_top1_mean": _num(vm), "val_top1_std": _num(vs), "delta_vs_row0": _num(comp["row0"][0], "+.2f"),
                    "p_vs_row0": _num(comp["row0"][1], ".3f"), "delta_vs_prev": _num(comp["prev"][0], "+.2f"),
                    "p_vs_prev": _num(comp["prev"][1], ".3f"), "note": _note(res, comp),
                    "train_seconds_mean": _num(secs, ".0f")})
    return out


def csv_text(results: Sequence[RowResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_table_rows(results))
    return buf.getvalue()


def _pm(mean: str, std: str) -> str:
    return "-" if not mean else f"{mean} ± {std}" if std else mean


def markdown(results: Sequence[RowResult], cumulative: bool) -> str:
    """The table, a per-seed table and a legend."""
    lines = ["| # | step | change (resolved recipe keys) | test top-1 | val top-1 | Δ vs row 0 | Δ vs prev | "
             "paired test | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for t in _table_rows(results, most=4):
        lines.append(f"| {t['row']} | {t['name']} | {t['change'].replace('|', '/')} | "
                     f"{_pm(t['test_top1_mean'], t['test_top1_std'])} | {_pm(t['val_top1_mean'], t['val_top1_std'])} | "
                     f"{t['delta_vs_row0'] or '-'} | {t['delta_vs_prev'] or '-'} | {t['note'] or '-'} | "
                     f"{t['train_seconds_mean'] or '-'} |")
    seeds = results[0].seeds if results else []
    lines += ["", "Per seed (test top-1 / final-epoch val top-1):", "",
              "| # | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for res in results:
        cells = [f"{res.test[s]:.2f} / {_num(res.val.get(s)) or '-'}" if s in res.test else "not done" for s in seeds]
        lines.append(f"| {res.row.index} | " + " | ".join(cells) + " |")
    how = "on top of the row before it (cumulative)" if cumulative else "alone, to row 0"
    lines += ["", f"Each row applies its change {how}; 'change' lists every resolved recipe key that differs from "
              f"{'the row before' if cumulative else 'row 0'}. Top-1 in %, mean ± sample std over seeds, final-epoch "
              "weights (never chosen on test); val top-1 is the final epoch's validation accuracy, the number to choose "
              "by. Δ is the mean of per-seed differences (paired by seed). Paired test: two-sided paired t-test over "
              f"seeds (3 or more), 'inside the noise' when p >= {ALPHA}. train s: training seconds per run (mean)."]
    return "\n".join(lines) + "\n"


def write_tables(results: Sequence[RowResult], out: Path, cumulative: bool, header: str = "") -> list[Path]:
    """``ablation.md``, ``ablation.csv`` and ``ablation.png`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.md").write_text((header + "\n" if header else "") + markdown(results, cumulative))
    (out / "ablation.csv").write_text(csv_text(results))
    return [out / "ablation.md", out / "ablation.csv", bar_chart(results, out / "ablation.png")]
