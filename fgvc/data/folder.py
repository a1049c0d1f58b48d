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
from typing import Any, Callable, Sequence

import numpy as np

from fgvc.data.base import AnnotationError, DataError, DatasetNotFoundError, FGVCDataset, Sample
from fgvc.registry import DATASETS

__all__ = ["ImageFolder", "CSVManifest", "scan_folder", "read_manifest", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_INT = re.compile(r"^[+-]?\d+$")


def _visible_dirs(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _images_under(path: Path, extensions: Sequence[str]) -> list[Path]:
    exts = {e.lower() for e in extensions}
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in exts and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def scan_folder(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                problems: list | None = None) -> tuple[list[str], dict[str, list[Sample]]]:
    """Classes (from ``root/train``) and the samples of every split folder under ``root``."""
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
                err = AnnotationError(class_dir, None, f"class folder '{class_dir.name}' of split "
                                      f"'{split_dir.name}' is not a class of the train split ({train}); rename "
                                      f"it to one of the train classes or add it to train")
                if problems is None:
                    raise err
                problems.append(err)
                continue
            label = label_of[class_dir.name]
            samples += [Sample(p, label) for p in _images_under(class_dir, extensions)]
        splits[split_dir.name] = samples
    return classes, splits


def _finish(ds: FGVCDataset, where: str, fix: str) -> None:
    if not ds.samples:
        raise DataError(f"split '{ds.split}' of {where} has no images; {fix}")
    ds.check_images_exist(where, fix)


@DATASETS.register("folder")
class ImageFolder(FGVCDataset):
    """``root/<split>/<class_name>/*.jpg``; ``trainval`` = train + val folders."""

    name = "folder"

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable[[np.ndarray], Any] | None = None,
        on_bad_image: str = "error",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        classes, splits = scan_folder(root, extensions)
        want = ["train", "val"] if split == "trainval" else [split]
        for s in want:
            if s not in splits:
                raise DatasetNotFoundError(f"split folder {Path(root) / s} does not exist (split folders found: "
                                           f"{', '.join(sorted(splits))})")
        samples = [x for s in want for x in splits[s]]
        super().__init__(root, split, samples, classes, transform, on_bad_image)
        _finish(self, f"{Path(root) / split}", f"put images in {Path(root)}/{split}/<class_name>/")


def read_manifest(manifest: Path, path_column: str = "path", label_column: str = "label",
                  split_column: str = "split", problems: list | None = None
                  ) -> tuple[list[str], dict[str, list[Sample]]]:
    """Classes and per-split samples of a CSV manifest (rows with errors are reported and left out)."""
    import pandas as pd

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

    def fail(line: int, problem: str, text: str) -> None:
        err = AnnotationError(manifest, line, problem, text)
        if problems is None:
            raise err
        problems.append(err)

    blank = (df.astype(str).apply(lambda c: c.str.strip()) == "").all(axis=1).to_numpy()
    rows: list[tuple[int, str, str, str]] = []
    for i, (p, lab, spl) in enumerate(zip(df[path_column], df[label_column], df[split_column])):
        line = i + 2  # header is line 1; blank lines are kept as empty rows, so rows map to lines
        values = [str(p).strip(), str(lab).strip(), str(spl).strip()]
        if blank[i]:
            continue
        empty = [c for c, v in zip(cols.values(), values) if not v]
        if empty:
            fail(line, f"empty {', '.join(repr(c) for c in empty)}", ",".join(df.iloc[i].astype(str)))
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


@DATASETS.register("csv")
class CSVManifest(FGVCDataset):
    """A CSV manifest (``path,label,split``); ``trainval`` = the train + val rows. ``Sample.image_id`` is the
    manifest line number."""

    name = "csv"

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable[[np.ndarray], Any] | None = None,
        on_bad_image: str = "error",
        manifest: str = "manifest.csv",
        path_column: str = "path",
        label_column: str = "label",
        split_column: str = "split",
    ) -> None:
        root = Path(root)
        path = root if root.suffix.lower() == ".csv" and root.is_file() else Path(manifest)
        if not path.is_absolute() and path != root:
            path = root / path
        self.manifest = path
        classes, splits = read_manifest(path, path_column, label_column, split_column)
        want = ["train", "val"] if split == "trainval" else [split]
        if not any(s in splits for s in want):
            raise DataError(f"{path} has no rows with {split_column}='{split}' (values found: "
                            f"{', '.join(sorted(splits)) or 'none'})")
        samples = [x for s in want for x in splits.get(s, [])]
        super().__init__(root, split, samples, classes, transform, on_bad_image)
        _finish(self, f"{path} ({split_column}={split})", f"fix the paths in {path} (relative to {path.parent})")
