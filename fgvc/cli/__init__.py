"""Shared command-line plumbing: user errors print one clear line (no traceback) and exit 2."""
from __future__ import annotations

import argparse
import errno
import functools
import re
import sys
from pathlib import Path
from typing import Callable

from fgvc.errors import UserError

_WORKER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")
_LAST = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*): (.*)$")


def _subclass_names(types: tuple[type[BaseException], ...]) -> set[str]:
    names, todo = set(), list(types)
    while todo:
        t = todo.pop()
        if t.__name__ not in names:
            names.add(t.__name__)
            todo += t.__subclasses__()
    return names


def worker_error(exc: BaseException) -> str | None:
    """The one-line message of a user error raised inside a DataLoader worker.

    torch re-raises it in the main process as ``RuntimeError`` (or as its own type when it takes one
    argument) with the worker's whole traceback as the message; the last line is the original error."""
    text = str(exc).strip()
    if not _WORKER.match(text):
        return None
    m = _LAST.match(text.splitlines()[-1].strip())
    if m is None or m.group(1) not in _subclass_names((UserError,)):
        return None
    return m.group(2)


_DISK_ERRNOS = {errno.ENOSPC: "free disk space", errno.EDQUOT: "free disk space (the disk quota is full)",
                errno.EROFS: "give a writable folder (e.g. --output/--out elsewhere)",
                errno.EACCES: "fix the file's permissions or give another path",
                errno.EPERM: "fix the file's permissions or give another path"}


def disk_error(exc: OSError) -> str | None:
    """One line for an ``OSError`` a user fixes on the machine (disk full, read-only, no permission), naming the
    file; None for any other."""
    fix = _DISK_ERRNOS.get(exc.errno or 0)
    if fix is None:
        return None
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; {fix}, then run the command again"


def friendly(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a CLI main: known user errors -> 'error: ...' on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:  # type: ignore[no-untyped-def]
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {worker_error(exc) or exc}", file=sys.stderr)
            return 2
        except RuntimeError as exc:  # a user error from a DataLoader worker, re-wrapped by torch
            msg = worker_error(exc)
            if msg is None:
                raise
            print(f"error: {msg}", file=sys.stderr)
            return 2
        except OSError as exc:  # a full disk, a read-only folder, a file without permission: not a bug of fgvc
            msg = disk_error(exc)
            if msg is None:
                raise
            print(f"error: {msg}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def add_run_arguments(ap: argparse.ArgumentParser, split_help: str) -> None:
    """The arguments of every command that reads a trained run (or a recipe): target, --split, --checkpoint,
    --weights, --set."""
    ap.add_argument("target", help="run directory, checkpoint file, or recipe (.yaml: its pretrained backbone with "
                                   "an untrained head, the frozen-features baseline)")
    ap.add_argument("--split", default=None, help=f"{split_help} (default: the recipe's data.test_split)")
    ap.add_argument("--checkpoint", default="last", choices=["last", "best"], help="with a run directory")
    ap.add_argument("--weights", default="auto", choices=["auto", "ema", "model"],
                    help="auto: EMA weights when the run kept an EMA (as final.json did), else the model's")
    ap.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="override recipe keys, e.g. data.root=/data/CUB train.device=cpu")


def add_new_run_arguments(ap: argparse.ArgumentParser, lr_example: str) -> None:
    """``--set`` and ``--output NEW_RUN`` of the commands that derive a new run from a trained one (extend, prune)."""
    ap.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help=f"override recipe keys of the run and the new run, e.g. train.device=cpu train.lr={lr_example}")
    ap.add_argument("--output", required=True, metavar="NEW_RUN", help="the new run directory (must not exist)")


def run_logged(fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)`` with fgvc's console logging set up and every log file closed afterwards (also on an error)."""
    from fgvc.engine.rundir import close_file_logging, setup_logging

    setup_logging(None)
    try:
        return fn(*args)
    finally:
        close_file_logging()


def trained_target(target: str, error: type[UserError]) -> Path:
    """``target`` as a Path when it can be a trained run (a run directory, a checkpoint or an exported file), else
    ``error`` saying why: a recipe (its classifier is untrained) or nothing at that path."""
    from fgvc.engine.inference import RECIPE_SUFFIXES

    path = Path(target)
    if path.suffix in RECIPE_SUFFIXES and not path.is_dir():
        raise error(f"{path} is a recipe, whose classifier is untrained: give a trained run directory")
    if not path.exists():
        raise error(f"no such run directory or checkpoint: {path}")
    return path
