"""Hand-made training curves for the fit-verdict tests: ``metrics.jsonl`` rows as the trainer logs them."""
from __future__ import annotations


def metric_rows(train, val=None, n=None, loss=None, val_loss=None, val_loss_se=None) -> list[dict]:
    """Rows (0-based ``epoch``) from per-epoch lists: ``train_top1``, ``loss`` (default ``1 / (epoch + 1)``) and, when
    given, ``val_top1`` (None: an epoch not validated), ``val_n`` (the validation split's size, on every row),
    ``val_loss`` and ``val_loss_se``."""
    out = []
    for i, t in enumerate(train):
        row = {"epoch": i, "train_top1": t, "loss": loss[i] if loss else 1.0 / (i + 1)}
        if val is not None:
            row["val_top1"] = val[i]
        if n is not None:
            row["val_n"] = n
        if val_loss is not None:
            row["val_loss"] = val_loss[i]
        if val_loss_se is not None:
            row["val_loss_se"] = val_loss_se[i]
        out.append(row)
    return out
