"""The run directory: everything a run leaves behind, and what evaluate/visualize/bench read.

::

    RUN/config.yaml         fully resolved recipe
    RUN/metrics.jsonl       one line per epoch: loss, lr, train/val top-1, epoch time, images/s
    RUN/final.json          final-epoch test metrics (top1, top5, mean per-class accuracy, n_images, seconds)
    RUN/curves.png          loss and accuracy curves
    RUN/train.log           the log
    RUN/checkpoints/last.pt, best.pt (best on the validation split, never on test)
    RUN/eval/per_class.csv, confusion.csv
"""
from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from fgvc.engine.checkpoint import atomic_write_bytes

__all__ = ["new_run_dir", "setup_logging", "buffered_log", "attach_run_log", "close_file_logging", "append_metrics", "read_metrics", "truncate_metrics", "write_json", "curves_figure", "plot_curves"]


def new_run_dir(root: str | Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{name}-{stamp}"
    i = 1
    while path.exists():
        path = Path(root) / f"{name}-{stamp}-{i}"
        i += 1
    return path


def setup_logging(run_dir: Path | None, is_main: bool = True) -> logging.Logger:
    log = logging.getLogger("fgvc")
    log.setLevel(logging.INFO if is_main else logging.WARNING)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if run_dir is not None and is_main:
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(fh)
    return log


@contextlib.contextmanager
def buffered_log() -> Iterator[logging.handlers.MemoryHandler]:
    """Hold the records the ``fgvc`` logger emits inside the block, for :func:`attach_run_log` to write into the run's
    train.log once the run directory exists (they still reach the console as they happen)."""
    held = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1, flushOnClose=False)
    log = logging.getLogger("fgvc")
    log.addHandler(held)
    try:
        yield held
    finally:
        log.removeHandler(held)
        held.close()


def attach_run_log(run_dir: Path, held: logging.handlers.MemoryHandler, is_main: bool = True) -> None:
    """Add the run's train.log to the ``fgvc`` logger, starting with the records ``held`` since building began."""
    if not is_main:
        return
    fh = logging.FileHandler(run_dir / "train.log")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    held.setTarget(fh)
    held.flush()
    held.setTarget(None)
    logging.getLogger("fgvc").addHandler(fh)


def close_file_logging() -> None:
    """Detach and close the run's log file (the run is over, or its directory is being removed)."""
    log = logging.getLogger("fgvc")
    for h in list(log.handlers):
        if isinstance(h, logging.FileHandler):
            log.removeHandler(h)
            h.close()


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(_clean(data), indent=2) + "\n").encode())


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(_clean(row)) + "\n")
        f.flush()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl ([] when absent; a line cut by a kill is skipped): :func:`fgvc.engine.fit.read_history`."""
    from fgvc.engine.fit import read_history

    return read_history(run_dir)


def truncate_metrics(run_dir: Path, keep_epochs_below: int) -> None:
    """On resume: drop rows of epochs the checkpoint does not include (written after it, before a kill)."""
    rows = [r for r in read_metrics(run_dir) if r.get("epoch", 0) < keep_epochs_below]
    atomic_write_bytes(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())


def curves_figure(rows: list[dict[str, Any]], title: str, fit: dict[str, Any] | None = None) -> Any:
    """Train / val loss and top-1 per epoch (matplotlib figure); with ``fit`` (fgvc.engine.fit) its verdict in the
    title and the epoch overfitting starts at marked by a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] + 1 for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(ep, [r.get("loss") for r in rows], "o-", label="train loss")
    if any(r.get("val_loss") is not None for r in rows):
        a.plot(ep, [r.get("val_loss") for r in rows], "s-", label="val loss")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.grid(alpha=0.3)
    b.plot(ep, [r.get("train_top1") for r in rows], "o-", label="train top-1")
    if any(r.get("val_top1") is not None for r in rows):
        b.plot(ep, [r.get("val_top1") for r in rows], "s-", label="val top-1")
    b.set_xlabel("epoch"), b.set_ylabel("top-1 (%)"), b.grid(alpha=0.3)
    if fit and fit.get("epoch") is not None:
        for ax in (a, b):
            ax.axvline(fit["epoch"], color="#c62828", ls="--", lw=1, label=f"overfitting after epoch {fit['epoch']}")
        title += f" | {fit['verdict']}"
    elif fit:
        title += f" | {fit['verdict']}"
    a.legend(fontsize=8), b.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves(run_dir: Path, fit: dict[str, Any] | None = None) -> Path | None:
    """curves.png: train / val loss and top-1 per epoch (:func:`curves_figure`)."""
    rows = read_metrics(run_dir)
    if not rows:
        return None
    import matplotlib.pyplot as plt

    fig = curves_figure(rows, run_dir.name, fit)
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
