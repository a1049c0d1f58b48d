"""The flags that several commands share, each declared once: one name, one default, one help text everywhere.

========================  ==========================================================================================
``--set KEY=VALUE ...``   recipe overrides (dest ``sets``, default ``[]``)
``--checkpoint``          ``last`` (default) or ``best`` checkpoint of a run directory
``--weights``             ``auto`` (default: the EMA weights when the run kept an EMA), ``ema`` or ``model``
``--split``               the data split (default ``None``: the recipe's ``data.test_split``)
``--batch-size``          images per forward pass / step (``--batch`` is the old spelling)
``--device``              ``auto`` (default: cuda when available, else cpu), ``cpu`` or ``cuda``
``--threads N``           CPU threads (default ``None``: torch's thread count; ``0`` means the same)
``--output PATH``         what the command writes (``--out`` is the old spelling of commands that used it)
``--backend``             the inference path of a run's logits (:mod:`fgvc.deploy.fast_infer`)
========================  ==========================================================================================

Each ``add_*`` function adds one flag to a parser; :func:`add_run_arguments` and friends add the groups that
commands reading a trained run share. ``SHARED`` maps each flag to its ``(dest, default)`` for the tests.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fgvc.deploy.fast_infer import BACKENDS
from fgvc.errors import FlagError

__all__ = ["SHARED", "add_set", "add_checkpoint", "add_weights", "add_split", "add_batch_size", "add_device",
           "add_threads", "add_output", "add_backend", "add_run_arguments", "add_new_run_arguments",
           "add_model_source_arguments", "ONNX_FLAGS", "threads_count", "require_at_least"]

CHECKPOINTS = ("last", "best")
WEIGHTS = ("auto", "ema", "model")
DEVICES = ("auto", "cpu", "cuda")
ONNX_FLAGS = ("img_size", "mean", "std", "crop_pct", "classes")  # the flags of an .onnx file without metadata

# flag -> (dest, default): what every command that takes the flag parses it into
SHARED: dict[str, tuple[str, Any]] = {
    "--set": ("sets", []), "--checkpoint": ("checkpoint", "last"), "--weights": ("weights", "auto"),
    "--split": ("split", None), "--device": ("device", "auto"), "--threads": ("threads", None),
    "--backend": ("backend", "auto"), "--batch-size": ("batch_size", None), "--output": ("output", None),
}


def add_set(ap: Any) -> None:
    """``--set KEY=VALUE ...`` (repeatable), into ``sets``."""
    ap.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="override recipe keys (repeatable), e.g. --set data.root=/data/CUB train.device=cpu")


def add_checkpoint(ap: Any) -> None:
    """``--checkpoint last|best`` of a run directory."""
    ap.add_argument("--checkpoint", default="last", choices=CHECKPOINTS,
                    help="the run directory's checkpoint: last (default) or best")


def add_weights(ap: Any) -> None:
    """``--weights auto|ema|model``."""
    ap.add_argument("--weights", default="auto", choices=WEIGHTS,
                    help="auto (default): the EMA weights when the run kept an EMA (as final.json did), else the "
                         "model's")


def add_split(ap: Any) -> None:
    """``--split NAME``; None means the recipe's ``data.test_split`` (:func:`fgvc.cli.runs.split_of`)."""
    ap.add_argument("--split", default=None, metavar="SPLIT",
                    help="the data split to use (default: the recipe's data.test_split)")


def add_batch_size(ap: Any, default: int | list[int] | None = None, what: str = "images per forward pass",
                   many: bool = False, old: str = "--batch") -> None:
    """``--batch-size N`` (``old``: the old spelling, ``--batch``); ``default`` None means the recipe's batch size;
    ``many``: one or more sizes (``--batch-size 1 32``)."""
    shown = "the recipe's" if default is None else " ".join(map(str, default)) if many else str(default)
    ap.add_argument("--batch-size", old, dest="batch_size", type=int, default=default, metavar="N",
                    nargs="+" if many else None,
                    help=f"batch size: {what} (default {shown}; {old} is the old spelling)")


def add_device(ap: Any) -> None:
    """``--device auto|cpu|cuda``; auto: cuda when available, else cpu."""
    ap.add_argument("--device", default="auto", choices=DEVICES,
                    help="auto (default): cuda when available, else cpu")


def add_threads(ap: Any, what: str = "") -> None:
    """``--threads N``: CPU threads; None (default, or 0) means torch's thread count."""
    ap.add_argument("--threads", type=threads_count, default=None, metavar="N",
                    help="CPU threads" + (f" ({what})" if what else "") + " (default: torch's thread count, the "
                         "machine's cores; 0 means the same)")


def add_output(ap: Any, what: str, *, required: bool = False, default: str | None = None, metavar: str = "PATH",
               old_out: bool = False) -> None:
    """``--output PATH``: what the command writes (``what`` says which); ``old_out`` keeps the spelling ``--out``
    of a command that had it."""
    names = ["--output", "--out"] if old_out else ["--output"]
    ap.add_argument(*names, dest="output", required=required, default=default, metavar=metavar,
                    help=what + ("; --out is the old spelling" if old_out else ""))


def add_backend(ap: Any) -> None:
    """``--backend``: how a run's logits are computed (:mod:`fgvc.deploy.fast_infer`)."""
    ap.add_argument("--backend", default="auto", choices=BACKENDS,
                    help="inference path for the logits: auto (default: onnx on the CPU in fp32 where it pays "
                         "back -- an export cached in RUN/cache/infer, or enough images to repay exporting one -- "
                         "checked against PyTorch on the first batch; else the run's PyTorch path), eager, "
                         "channels_last, compile, torchscript or onnx (exports and caches the file)")


def add_run_arguments(ap: Any, target_help: str | None = None) -> None:
    """The arguments of every command that reads a trained run (or a recipe): target, ``--split``,
    ``--checkpoint``, ``--weights``, ``--set``."""
    ap.add_argument("target", help=target_help or "run directory, checkpoint file, or recipe (.yaml: its pretrained "
                                                  "backbone with an untrained head, the frozen-features baseline)")
    add_split(ap)
    add_checkpoint(ap)
    add_weights(ap)
    add_set(ap)


def add_new_run_arguments(ap: Any) -> None:
    """The run to start from and ``--checkpoint``, ``--set``, ``--output NEW_RUN`` of the commands that derive a new
    run from a trained one (extend, prune)."""
    ap.add_argument("run", help="the trained run directory")
    add_checkpoint(ap)
    add_set(ap)
    add_output(ap, "the new run directory (must not exist)", required=True, metavar="NEW_RUN")


def add_model_source_arguments(ap: Any) -> None:
    """The target and the flags that pick the model from a run directory or an .onnx file (predict and serve)."""
    ap.add_argument("target", help="run directory (or a checkpoint file) of a trained run, or an .onnx file")
    add_checkpoint(ap)
    add_weights(ap)
    add_set(ap)
    add_backend(ap)
    onnx = ap.add_argument_group("an .onnx file without fgvc metadata (these override the file's metadata)")
    onnx.add_argument("--img-size", type=int, default=None, metavar="S", help="input side S (centre crop)")
    onnx.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="normalisation mean")
    onnx.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="normalisation std")
    onnx.add_argument("--crop-pct", type=float, default=None, help="crop share: resize to S / crop-pct (default 0.875)")
    onnx.add_argument("--classes", type=Path, default=None, metavar="FILE", help="class names, one per line")


def require_at_least(args: argparse.Namespace, minimum: int, *dests: str) -> None:
    """Refuse a parsed flag below ``minimum`` in one line (exit 2), e.g. ``--max-batch must be >= 1, got 0``; a flag
    left at None (not given) passes."""
    for dest in dests:
        value = getattr(args, dest)
        if value is not None and value < minimum:
            raise FlagError(f"--{dest.replace('_', '-')} must be >= {minimum}, got {value}")


def threads_count(text: str) -> int | None:
    """``--threads``' type: a count >= 1, or None for 0 (torch's thread count)."""
    n = _int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: torch's thread count), got {n}")
    return n or None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: '{text}'") from None
