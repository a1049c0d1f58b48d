"""Which recipe changes ``python -m fgvc.train [RECIPE] --resume RUN [--set ...]`` accepts.

A resume continues the same training from ``checkpoints/last.pt``: its model, data, loss and optimizer state are
the checkpoint's. The config it continues with (the RECIPE given, else the run's ``config.yaml``, plus ``--set``)
is compared key by key with the config saved in the checkpoint. Keys that only say how or how long to go on may
change (:data:`RESUMABLE`: more epochs or steps, the device and threads, checkpointing, evaluation and output
settings, where the same data or pretrained weights now live); any other difference (``model.*``, ``data.*`` that
change the images or classes, ``loss.*``, the optimizer, the seed, ...) is refused in one line naming the keys,
before anything is loaded into a model (torch would otherwise stop with a raw ``size mismatch for fc.weight``, or
silently ignore the change, as the optimizer and scheduler state restore the old learning rate).

``train.stages`` may change only the ``epochs`` of its stages, and add stages after the last one.
"""
from __future__ import annotations

import copy
from typing import Any

from fgvc import config
from fgvc.errors import ConfigError

__all__ = ["RESUMABLE", "resume_changes", "check_resume", "schedule_changed"]

# keys (or sections, ending in '.') a resume may change
RESUMABLE = (
    "train.epochs", "train.max_steps", "train.device", "train.threads", "train.checkpoint_every_steps",
    "train.eval_every", "train.on_nan", "train.deterministic", "train.tensorboard", "train.compile",
    "train.channels_last", "data.root", "data.num_workers", "data.cache", "data.on_bad_image", "data.test_split",
    "model.pretrained", "model.pretrained_file", "eval.", "output.",
)


def _resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def _stages_ok(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """Only stage epochs changed, or stages were added after the existing ones."""
    if len(new) < len(old):
        return False
    strip = [{k: v for k, v in s.items() if k != "epochs"} for s in old]
    return strip == [{k: v for k, v in s.items() if k != "epochs"} for s in new[: len(old)]]


def resume_changes(saved: dict[str, Any], new: dict[str, Any]) -> tuple[list[tuple[str, Any, Any]], list[str]]:
    """``(refused, allowed)``: the differing keys between the checkpoint's config ``saved`` and ``new`` (both full,
    validated configs), as ``(key, saved value, new value)`` for the refused ones and key names for the others."""
    a, b = config.leaves(copy.deepcopy(saved)), config.leaves(copy.deepcopy(new))
    refused, allowed = [], []
    for key in sorted(set(a) | set(b), key=lambda k: (k.count("."), k)):
        old_v, new_v = a.get(key), b.get(key)
        if old_v == new_v or repr(old_v) == repr(new_v) or (old_v in ({}, None) and new_v in ({}, None)):
            continue  # equal (NaN included), or an empty section whose keys differ below
        if _resumable(key) or (key == "train.stages" and _stages_ok(old_v or [], new_v or [])):
            allowed.append(key)
        else:
            refused.append((key, old_v, new_v))
    return refused, allowed


def _show(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_resume(run_dir: Any, saved: dict[str, Any], new: dict[str, Any], source: str) -> list[str]:
    """Raise :class:`ConfigError` when ``new`` (from ``source``: the recipe and --set items) changes a key a resume
    cannot change; returns the changed keys it accepts."""
    refused, allowed = resume_changes(saved, new)
    if refused:
        shown = "; ".join(f"{k}: {_show(o)} -> {_show(n)}" for k, o, n in refused[:4])
        more = f" (and {len(refused) - 4} more)" if len(refused) > 4 else ""
        raise ConfigError(
            f"cannot resume {run_dir} with {source}: it changes {shown}{more}, which the checkpoint's training "
            f"depends on (a resume continues the same model, data, loss and optimizer); drop the change to resume, "
            f"or train a new run with it (--output NEW_DIR). A resume may change train.epochs, train.max_steps, the "
            f"stages' epochs, eval.*, output.*, train.device/threads and where data.root or the weights live")
    return allowed


def schedule_changed(saved: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the epochs of the schedule differ (the learning-rate schedule is then rebuilt for the new length)."""
    def plan(cfg: dict[str, Any]) -> list[int]:
        tr = cfg["train"]
        return [s["epochs"] for s in tr["stages"]] or [tr["epochs"]]

    return plan(saved) != plan(new)
