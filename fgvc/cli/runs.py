"""Loading what a command works on: a trained run (or checkpoint, or recipe) with its default split, a model source
(a run or an .onnx file), and running a library call with fgvc's console logging."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from fgvc.cli.flags import ONNX_FLAGS
from fgvc.config import scored_split
from fgvc.engine.inference import RECIPE_SUFFIXES, TrainedRun
from fgvc.engine.rundir import close_file_logging, setup_logging
from fgvc.errors import UserError

__all__ = ["load_run", "split_of", "trained_target", "model_source", "run_logged"]


def load_run(args: argparse.Namespace, target: str | Path | None = None) -> TrainedRun:
    """The :class:`TrainedRun` of :func:`fgvc.cli.flags.add_run_arguments`' flags (``target`` instead of
    ``args.target`` where the command checked it first)."""
    return TrainedRun.load(args.target if target is None else target, args.checkpoint, args.sets, args.weights)


def split_of(run: TrainedRun, split: str | None) -> str:
    """``--split``, or the recipe's ``data.test_split`` when it was not given."""
    return scored_split(run.cfg, split)


def trained_target(target: str | Path, error: type[UserError]) -> Path:
    """``target`` as a Path when it can be a trained run (a run directory, a checkpoint or an exported file), else
    ``error`` saying why: a recipe (its classifier is untrained) or nothing at that path."""
    path = Path(target)
    if path.suffix in RECIPE_SUFFIXES and not path.is_dir():
        raise error(f"{path} is a recipe, whose classifier is untrained: give a trained run directory")
    if not path.exists():
        raise error(f"no such run directory or checkpoint: {path}")
    return path


def model_source(args: argparse.Namespace, error: type[UserError]) -> tuple[Path, bool]:
    """The model file or run of :func:`fgvc.cli.flags.add_model_source_arguments`' flags and whether it is an .onnx
    file; flags that do not apply to it are refused with ``error``."""
    target = trained_target(args.target, error)
    is_onnx = target.suffix.lower() == ".onnx" and target.is_file()
    given = [f"--{f.replace('_', '-')}" for f in ONNX_FLAGS if getattr(args, f) is not None]
    if given and not is_onnx:
        raise error(f"{' '.join(given)} apply to an .onnx file only; a run carries its own preprocessing")
    if is_onnx and args.backend != "auto":
        raise error(f"--backend {args.backend} applies to a run; an .onnx file runs on ONNX Runtime")
    return target, is_onnx


def run_logged(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with fgvc's console logging set up and every log file closed afterwards (also on an error)."""
    setup_logging(None)
    try:
        return fn(*args)
    finally:
        close_file_logging()
