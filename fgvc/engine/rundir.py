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
from fgvc.metrics.fit_verdict import read_history

__all__ = ["new_run_dir", "setup_logging", "buffered_log", "attach_run_log", "close_file_logging", "append_metrics", "read_metrics", "truncate_metrics", "write_json", "round_float", "curves_figure", "plot_curves"]


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


JSON_DIGITS = 6  # significant digits of the floats in a run's JSON files: 92.59999990463257 -> 92.6; a top-1 in
# percent keeps 4 decimals (91.234567 -> 91.2346), a loss or lr its 6 leading digits (float32 noise is below them);
# the integer part is never rounded (1234567.8 seconds -> 1234568.0)


def round_float(x: float) -> float:
    """``x`` to :data:`JSON_DIGITS` significant digits, or to a whole number when its integer part is longer."""
    if x == 0 or not math.isfinite(x):
        return x
    if abs(x) >= 1:
        return round(x, max(0, JSON_DIGITS - len(str(int(abs(x))))))
    return float(f"{x:.{JSON_DIGITS}g}")


def _clean(obj: Any) -> Any:
    """``obj`` for JSON: non-finite floats as null, finite ones through :func:`round_float`."""
    if isinstance(obj, float):
        return round_float(obj) if math.isfinite(obj) else None
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
    """The rows of metrics.jsonl ([] when absent; a line cut by a kill is skipped): :func:`fgvc.metrics.fit_verdict.read_history`."""
    return read_history(run_dir)


def truncate_metrics(run_dir: Path, keep_epochs_below: int) -> None:
    """On resume: drop rows of epochs the checkpoint does not include (written after it, before a kill)."""
    rows = [r for r in read_metrics(run_dir) if r.get("epoch", 0) < keep_epochs_below]
    atomic_write_bytes(run_dir / "metrics.jsonl", "".join(json.dumps(_clean(r)) + "\n" for r in rows).encode())


# metrics.jsonl keys of the training cross-entropy of the view the validation scores, first found wins: WS-DAN's raw
# view (its "loss" adds the crop and drop views and the center loss), the single-view methods' criterion
TRAIN_CE_KEYS = ("ce_raw", "ce")


def _fit_title(fit: dict[str, Any]) -> str:
    """The verdict for the curves' title; it names an epoch only when one is marked (``fit["epoch"]``)."""
    verdict, n = fit.get("verdict", ""), fit.get("val_images")
    if fit.get("epoch") is not None:
        return f"{verdict} after epoch {fit['epoch']} (marked)"
    if verdict == "overfitting":
        return "overfitting by the train-val gap alone (no onset epoch)"
    if verdict == "inconclusive":
        return f"inconclusive: the signs of overfitting are within the noise of {n or 'the'} val images"
    return str(verdict)


def curves_figure(rows: list[dict[str, Any]], title: str, fit: dict[str, Any] | None = None,
                  label_smoothing: float | None = None) -> Any:
    """Train / val cross-entropy and top-1 per epoch (matplotlib figure), whole-number epoch ticks; with ``fit``
    (fgvc.metrics.fit_verdict) its verdict in the title and, when the verdict names one, the epoch overfitting starts at
    marked by a dashed line.

    The left panel compares like with like: the validation cross-entropy (no label smoothing) against the training
    cross-entropy of the same view (``ce_raw`` for WS-DAN, ``ce`` for single-view methods; ``label_smoothing`` is
    named in its label when the recipe trained with it). A method that logs neither has its training objective on
    a separate right-hand axis instead, never on the val loss's scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [r["epoch"] + 1 for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    ce_key = next((k for k in TRAIN_CE_KEYS if any(r.get(k) is not None for r in rows)), None)
    handles: list[Any] = []
    if ce_key is not None:
        notes = (["raw view"] if ce_key == "ce_raw" else []) + ([f"label smoothing {label_smoothing:g}"]
                                                               if label_smoothing else [])
        label = "train CE" + (f" ({', '.join(notes)})" if notes else "")
        handles += a.plot(ep, [r.get(ce_key) for r in rows], "o-", label=label)
        a.set_ylabel("cross-entropy (nats)")
    else:
        a.set_ylabel("val cross-entropy (nats)")
        twin = a.twinx()
        handles += twin.plot(ep, [r.get("loss") for r in rows], "o--", color="#777777",
                             label="train objective (right axis)")
        twin.set_ylabel("train objective")
    if any(r.get("val_loss") is not None for r in rows):
        handles += a.plot(ep, [r.get("val_loss") for r in rows], "s-", color="#ff7f0e", label="val CE")
    a.set_xlabel("epoch"), a.grid(alpha=0.3)
    b.plot(ep, [r.get("train_top1") for r in rows], "o-", label="train top-1")
    if any(r.get("val_top1") is not None for r in rows):
        b.plot(ep, [r.get("val_top1") for r in rows], "s-", label="val top-1")
    b.set_xlabel("epoch"), b.set_ylabel("top-1 (%)"), b.grid(alpha=0.3)
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if fit and fit.get("epoch") is not None:
        for ax in (a, b):
            line = ax.axvline(fit["epoch"], color="#c62828", ls="--", lw=1,
                              label=f"overfitting after epoch {fit['epoch']}")
        handles.append(line)
    if fit:
        title += f" | {_fit_title(fit)}"
    a.legend(handles=handles, labels=[h.get_label() for h in handles], fontsize=8), b.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _label_smoothing(run_dir: Path) -> float | None:
    """``loss.args.label_smoothing`` of the run's config.yaml (None when absent or unreadable)."""
    import yaml

    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        value = ((cfg.get("loss") or {}).get("args") or {}).get("label_smoothing")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def plot_curves(run_dir: Path, fit: dict[str, Any] | None = None) -> Path | None:
    """curves.png: train / val cross-entropy and top-1 per epoch (:func:`curves_figure`)."""
    rows = read_metrics(run_dir)
    if not rows:
        return None
    import matplotlib.pyplot as plt

    fig = curves_figure(rows, run_dir.name, fit, _label_smoothing(run_dir))
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
