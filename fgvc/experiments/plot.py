"""``ablation.png``: the ablation table as a bar chart, test top-1 mean per row with the sample standard deviation
over seeds as error bars and each seed as a dot, the final-epoch val top-1 beside it; incomplete rows hatched."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from fgvc.experiments.stats import mean_std

if TYPE_CHECKING:
    from fgvc.experiments.table import RowResult

__all__ = ["bar_chart"]


def bar_chart(results: Sequence["RowResult"], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, width = len(results), 0.38
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * n + 2), 3.8))
    lows: list[float] = []
    labelled: set[str] = set()
    for i, res in enumerate(results):
        for j, (values, color, label) in enumerate(((list(res.test.values()), "#1565c0", "test top-1"),
                                                    ([v for v in res.val.values() if v is not None], "#90a4ae",
                                                     "val top-1 (final epoch)"))):
            mean, std = mean_std(values)
            if mean is None:
                continue
            x = i + (j - 0.5) * width
            ax.bar(x, mean, width, yerr=std or 0.0, capsize=3, color=color, hatch=None if res.complete else "//",
                   edgecolor="black" if not res.complete else color, label=None if label in labelled else label)
            labelled.add(label)
            ax.plot([x] * len(values), values, "k.", ms=3)
            lows.append(min(values))
    ax.set_xticks(range(n), [f"{r.row.index}: {r.row.name}" + ("" if r.complete else "\n(incomplete)")
                             for r in results], rotation=20, ha="right", fontsize=8)
    if lows:
        ax.set_ylim(max(0.0, min(lows) - 5.0), 100.0)
    ax.set_ylabel("top-1 (%)")
    ax.grid(axis="y", alpha=0.3)
    if labelled:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("ablation: mean ± std over seeds (dots: seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
