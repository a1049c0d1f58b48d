"""The one way a data set is built: a registered reader says what a split holds, :func:`build_dataset` makes it.

A reader is a function ``read(root, split, /, *, <its own data.args>) -> SplitContents`` registered with
:func:`reader`; only its keyword arguments are the recipe's ``data.args``, so a typo there gets the
registry's did-you-mean error. :func:`build_dataset` checks ``data.args``, calls the reader and builds the
:class:`~fgvc.data.base.FGVCDataset` with the transform and the ``on_bad_image`` policy::

    ds = build_dataset("cub200", "datasets", "val", val_fraction=0.25)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from fgvc.data.base import FGVCDataset, SplitContents
from fgvc.registry import DATASETS, RegistryError

__all__ = ["reader", "check_args", "build_dataset", "Reader"]

Reader = Callable[..., SplitContents]
R = TypeVar("R", bound=Reader)

# data set name -> {old data.args key: (new key, why it was renamed)}
_RENAMED: dict[str, dict[str, tuple[str, str]]] = {}


def reader(name: str, renamed: Mapping[str, tuple[str, str]] | None = None) -> Callable[[R], R]:
    """Register a reader as data set ``name`` in :data:`fgvc.registry.DATASETS`.

    ``renamed`` maps a ``data.args`` key the reader no longer takes to ``(new key, why)``; giving the old
    key fails with a message that names the new one instead of a did-you-mean guess."""
    def deco(read: R) -> R:
        DATASETS.register(name)(read)
        _RENAMED[name] = dict(renamed or {})
        return read

    return deco


def check_args(name: str, args: Mapping[str, Any]) -> None:
    """A :class:`~fgvc.registry.RegistryError` for a renamed or unknown ``data.args`` key of data set ``name``."""
    for key in args:
        if key in _RENAMED.get(str(name).lower(), {}):
            new, why = _RENAMED[str(name).lower()][key]
            raise RegistryError(f"data.args.{key} of dataset '{name}' was renamed to data.args.{new}: {why}; "
                                f"set data.args.{new} instead")
    DATASETS.check_kwargs(name, dict(args), where="data.args")


def build_dataset(
    name: str,
    root: str | Path,
    split: str,
    /,
    transform: Callable[[np.ndarray], Any] | None = None,
    on_bad_image: str = "error",
    **args: Any,
) -> FGVCDataset:
    """Split ``split`` of the registered data set ``name`` (e.g. ``cub200``) at ``root``; ``args`` are the
    recipe's ``data.args`` (the reader's own keyword arguments)."""
    check_args(name, args)
    contents = DATASETS.get(name)(root, split, **args)
    return FGVCDataset(str(name).lower(), root, split, contents, transform, on_bad_image)
