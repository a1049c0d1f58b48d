"""Generic readers for your own fine-grained data (any data set, e.g. re-packed CUB-200-2011, Wah et al. 2011,
or Flowers 102, Nilsback and Zisserman 2008).

``folder``: ``root/<split>/<class_name>/**/*.jpg``. Classes are the sorted folder names of the train split,
so every split shares one mapping; a class folder in another split that train lacks is an error.

``csv``: a manifest with columns ``path,label,split`` (names overridable); paths are relative to the
manifest's folder (or absolute); labels are class names, or integers (then classes are the sorted ids).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from fgvc.data.annotations import Problems
from fgvc.data.base import AnnotationError, DataError, DatasetNotFoundError, Sample, SplitContents
from fgvc.data.readers import reader

__all__ = ["read_folder", "read_csv", "scan_folder", "read_manifest", "manifest_path", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_INT = re.compile(r"^[+-]?\d+$")


def _visible_dirs(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _images_under(path: Path, extensions: Sequence[str]) -> list[Path]:
    exts = {e.lower() for e in extensions}
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in exts and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def scan_folder(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                problems: Problems | None = None) -> tuple[list[str], dict[str, list[Sample]]]:
    """Classes (from ``root/train``) and the samples of every split folder under ``root``; ``problems``:
    raise the first problem (default, :meth:`Problems.raising`) or collect them all."""
    problems = Problems.raising() if problems is None else problems
    root = Path(root)
    train = root / "train"
    if not train.is_dir():
        raise DatasetNotFoundError(
            f"image-folder data set not found: {train} does not exist; the 'folder' layout is "
            f"ROOT/<split>/<class_name>/*.jpg with at least a train split (set data.root, or use data.name=csv "
            f"with a manifest)")
    classes = [d.name for d in _visible_dirs(train)]
    if not classes:
        raise DatasetNotFoundError(f"{train} has no class folders; expected {train}/<class_name>/*.jpg")
    label_of = {c: i for i, c in enumerate(classes)}
    splits: dict[str, list[Sample]] = {}
    for split_dir in _visible_dirs(root):
        samples: list[Sample] = []
        for class_dir in _visible_dirs(split_dir):
            if class_dir.name not in label_of:
                problems.report(class_dir, None, f"class folder '{class_dir.name}' of split '{split_dir.name}' is "
                                                 f"not a class of the train split ({train}); rename it to one of the "
                                                 "train classes or add it to train")
                continue
            label = label_of[class_dir.name]
            samples += [Sample(p, label) for p in _images_under(class_dir, extensions)]
        splits[split_dir.name] = samples
    return classes, splits


def _splits_of(split: str) -> list[str]:
    """The split folders (or manifest values) that make ``split``: ``trainval`` is train + val."""
    return ["train", "val"] if split == "trainval" else [split]


@reader("folder")
def read_folder(root: str | Path, split: str, /, *, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> SplitContents:
    """``root/<split>/<class_name>/*.jpg``; ``trainval`` = train + val folders."""
    root = Path(root)
    classes, splits = scan_folder(root, extensions)
    want = _splits_of(split)
    for s in want:
        if s not in splits:
            raise DatasetNotFoundError(f"split folder {root / s} does not exist (split folders found: "
                                       f"{', '.join(sorted(splits))})")
    return SplitContents([x for s in want for x in splits[s]], classes, f"{root / split}",
                         f"put images in {root}/{split}/<class_name>/", empty_is_error=True)


def manifest_path(root: str | Path, manifest: str | Path = "manifest.csv") -> Path:
    """The manifest: ``root`` itself when it names a .csv file, else ``manifest`` (relative to ``root``, or
    absolute)."""
    root = Path(root)
    if root.suffix.lower() == ".csv" and not root.is_dir():
        return root
    path = Path(manifest)
    return path if path.is_absolute() else root / path


def read_manifest(manifest: Path, path_column: str = "path", label_column: str = "label",
                  split_column: str = "split", problems: Problems | None = None
                  ) -> tuple[list[str], dict[str, list[Sample]]]:
    """Classes and per-split samples of a CSV manifest; ``problems``: raise the first bad row (default,
    :meth:`Problems.raising`) or collect them all (the bad rows are left out)."""
    import pandas as pd

    problems = Problems.raising() if problems is None else problems
    if not manifest.is_file():
        raise DatasetNotFoundError(f"CSV manifest {manifest} does not exist; set data.args.manifest (relative "
                                   f"to data.root, or absolute)")
    try:
        df = pd.read_csv(manifest, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except Exception as e:  # ParserError names the line
        raise AnnotationError(manifest, None, f"not a readable CSV file ({type(e).__name__}: {e})") from None
    cols = {"path": path_column, "label": label_column, "split": split_column}
    absent = [f"'{c}' (data.args.{k}_column)" for k, c in cols.items() if c not in df.columns]
    if absent:
        raise AnnotationError(manifest, 1, f"missing column(s) {', '.join(absent)}; the header has "
                                           f"{', '.join(map(str, df.columns)) or 'no columns'}")

    blank = (df.astype(str).apply(lambda c: c.str.strip()) == "").all(axis=1).to_numpy()
    rows: list[tuple[int, str, str, str]] = []
    for i, (p, lab, spl) in enumerate(zip(df[path_column], df[label_column], df[split_column])):
        line = i + 2  # header is line 1; blank lines are kept as empty rows, so rows map to lines
        values = [str(p).strip(), str(lab).strip(), str(spl).strip()]
        if blank[i]:
            continue
        empty = [c for c, v in zip(cols.values(), values) if not v]
        if empty:
            problems.report(manifest, line, f"empty {', '.join(repr(c) for c in empty)}")
            continue
        rows.append((line, values[0], values[1], values[2]))
    labels = [r[2] for r in rows]
    numeric = bool(labels) and all(_INT.match(v) for v in labels)
    keys = sorted({int(v) for v in labels}) if numeric else sorted(set(labels))
    label_of = {k: i for i, k in enumerate(keys)}
    splits: dict[str, list[Sample]] = {}
    for line, p, lab, spl in rows:
        path = Path(p) if Path(p).is_absolute() else manifest.parent / p
        splits.setdefault(spl, []).append(Sample(path, label_of[int(lab) if numeric else lab], line))
    return [str(k) for k in keys], splits


@reader("csv")
def read_csv(root: str | Path, split: str, /, *, manifest: str = "manifest.csv", path_column: str = "path",
             label_column: str = "label", split_column: str = "split") -> SplitContents:
    """A CSV manifest (``path,label,split``); ``trainval`` = the train + val rows. ``Sample.image_id`` is the
    manifest line number; ``info``: ``manifest`` (its path)."""
    path = manifest_path(root, manifest)
    classes, splits = read_manifest(path, path_column, label_column, split_column)
    want = _splits_of(split)
    if not any(s in splits for s in want):
        raise DataError(f"{path} has no rows with {split_column}='{split}' (values found: "
                        f"{', '.join(sorted(splits)) or 'none'})")
    return SplitContents([x for s in want for x in splits.get(s, [])], classes, f"{path} ({split_column}={split})",
                         f"fix the paths in {path} (relative to {path.parent})", empty_is_error=True,
                         info={"manifest": path})
