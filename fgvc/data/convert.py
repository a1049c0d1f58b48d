"""Convert a data set from any layout fgvc reads to class folders or to CUB-200-2011's text files.

``python -m fgvc.datasets convert NAME_OR_AUTO ROOT --to folder|cub200 --output OUT [--copy]``:

- ``folder``: ``OUT/<split>/<class>/<file>`` for each split the layout has (train, test, val where it has one);
- ``cub200``: ``OUT/CUB_200_2011/`` in the official layout (``images/NNN.Class_Name/<file>``, ``images.txt``,
  ``image_class_labels.txt``, ``train_test_split.txt`` with 1 = train, ``classes.txt``); CUB has two splits, so a
  val split goes to train (with a note).

Images are symbolic links to the originals (absolute paths) unless ``copy``. Class and file names are made
filesystem-safe (runs of characters other than letters, digits, ``.``, ``-`` and ``_`` become ``_``). A CUB or
synthetic set's ``val`` is a seeded holdout of its train split, not a split of the layout, so it is not written.
Boxes and part locations are not converted. Everything is checked before anything is written: a non-empty ``OUT``,
an unknown layout, two classes (or files) with the same safe name are a :class:`~fgvc.data.base.DataError`.
"""
from __future__ import annotations

import inspect
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fgvc.data.base import DataError, DatasetNotFoundError, Sample
from fgvc.data.check import detect_layout
from fgvc.data.readers import build_dataset
from fgvc.registry import DATASETS

__all__ = ["TARGETS", "Converted", "convert", "read_splits", "safe_name"]

TARGETS = ("folder", "cub200")
_SPLITS = ("train", "val", "test")


@dataclass
class Converted:
    """What :func:`convert` wrote: where, how many images per written split, and notes for the user."""

    output: Path
    layout: str  # the layout read
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        per = ", ".join(f"{s} {n:,}" for s, n in self.counts.items())
        return [*(f"note: {n}" for n in self.notes), f"{self.layout} -> {self.output} ({per} images)"]


def safe_name(name: str) -> str:
    """``name`` with each run of characters other than letters, digits, ``.``, ``-``, ``_`` as one ``_`` (and no
    leading or trailing ``.``/``_``, so no hidden folders); ``_`` when nothing is left."""
    return re.sub(r"[^\w.-]+", "_", name.strip(), flags=re.ASCII).strip("._") or "_"


def read_splits(name: str, root: str | Path) -> tuple[str, list[str], dict[str, list[Sample]]]:
    """The layout's name (``auto`` detected), its class names and the samples of each split it has."""
    name = detect_layout(Path(root)) if name == "auto" else str(name).lower()
    kwargs = {"val_fraction": 0.0} if "val_fraction" in inspect.signature(DATASETS.get(name)).parameters else {}
    classes: list[str] = []
    splits: dict[str, list[Sample]] = {}
    for split in _SPLITS:
        try:
            ds = build_dataset(name, root, split, **kwargs)
        except DataError as e:  # an absent val or test split is skipped; any other problem is the user's
            if split == "train" or type(e) not in (DataError, DatasetNotFoundError):
                raise
            continue
        classes = classes or list(ds.classes)
        splits[split] = list(ds.samples)
    return name, classes, splits


def _class_names(classes: list[str]) -> list[str]:
    """Safe class names; a :class:`DataError` when two classes become the same name."""
    seen: dict[str, str] = {}
    for c in classes:
        s = safe_name(c)
        if s in seen:
            raise DataError(f"classes '{seen[s]}' and '{c}' both become '{s}' once made filesystem-safe; rename one "
                            "of them in the source data set")
        seen[s] = c
    return list(seen)


def _file_name(sample: Sample, taken: set[str], where: str, prefix: str = "") -> str:
    """A safe file name for ``sample`` not in ``taken`` (added to it): its own name, else ``prefix`` + it, else its
    parent folder's name + it; a :class:`DataError` when all are taken."""
    base = safe_name(sample.path.name)
    for cand in (base, f"{prefix}{base}", f"{safe_name(sample.path.parent.name)}_{base}"):
        if cand not in taken:
            taken.add(cand)
            return cand
    raise DataError(f"{sample.path} and another image of {where} both become '{base}'; rename one of them")


def _check_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"--output {out} already exists and is not empty; name a new folder or remove it first")


def _place(src: Path, dst: Path, copy: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copy2(src, dst)
    else:
        os.symlink(src.resolve(), dst)


def convert(name: str, root: str | Path, to: str, output: str | Path, copy: bool = False) -> Converted:
    """Write data set ``name`` (a registered layout, or ``auto``) at ``root`` to ``output`` in layout ``to``
    (``folder`` or ``cub200``), as links to the images (``copy``: as copies). See the module docstring."""
    if to not in TARGETS:
        raise DataError(f"--to {to}: unknown target layout; choose one of {', '.join(TARGETS)}")
    out = Path(output)
    _check_output(out)
    layout, classes, splits = read_splits(name, root)
    names = _class_names(classes)
    done = Converted(out / "CUB_200_2011" if to == "cub200" else out, layout)
    plan: list[tuple[Path, Path]] = []  # (source, destination)
    if to == "folder":
        for split, samples in splits.items():
            taken: dict[int, set[str]] = {}
            for s in samples:
                file = _file_name(s, taken.setdefault(s.label, set()), f"{split}/{names[s.label]}")
                plan.append((s.path, out / split / names[s.label] / file))
            done.counts[split] = len(samples)
        dirs = [out / split / c for split in splits for c in names]  # every class in every split, even if empty
    else:
        width = max(3, len(str(len(names))))
        folders = [f"{k + 1:0{width}d}.{c}" for k, c in enumerate(names)]
        if "val" in splits:
            done.notes.append(f"the val split ({len(splits['val']):,} images) goes to train: CUB-200-2011 has only "
                              "train and test")
        taken = {}
        images, labels, is_train = [], [], []
        for split, samples in splits.items():
            for s in samples:
                file = _file_name(s, taken.setdefault(s.label, set()), f"class '{names[s.label]}'", f"{split}_")
                rel = f"{folders[s.label]}/{file}"
                plan.append((s.path, done.output / "images" / rel))
                images.append(rel)
                labels.append(s.label + 1)
                is_train.append(int(split != "test"))
        done.counts = {"train": sum(is_train), "test": len(is_train) - sum(is_train)}
        dirs = [done.output / "images" / f for f in folders]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for src, dst in plan:
        _place(src, dst, copy)
    if to == "cub200":
        def write(file: str, rows: list[str]) -> None:
            (done.output / file).write_text("".join(f"{i} {r}\n" for i, r in enumerate(rows, 1)), encoding="utf-8")

        write("images.txt", images)
        write("image_class_labels.txt", [str(c) for c in labels])
        write("train_test_split.txt", [str(t) for t in is_train])
        write("classes.txt", folders)
    return done
