"""CUB-200-2011 (Wah, Branson, Welinder, Perona and Belongie 2011, Caltech-UCSD Birds-200-2011, CNS-TR-2011-001).

Layout (``root`` is the folder that contains ``CUB_200_2011/``, or that folder itself)::

    CUB_200_2011/images.txt               image_id relative/path.jpg
    CUB_200_2011/image_class_labels.txt   image_id class_id
    CUB_200_2011/train_test_split.txt     image_id is_train (1 = train)
    CUB_200_2011/classes.txt              class_id NNN.Class_Name
    CUB_200_2011/bounding_boxes.txt       image_id x y w h            (optional)
    CUB_200_2011/parts/parts.txt          part_id name                (optional)
    CUB_200_2011/parts/part_locs.txt      image_id part_id x y visible (optional)
    CUB_200_2011/images/NNN.Class_Name/*.jpg

Class ids may be non-contiguous (subsets): labels are 0..K-1 in sorted id order. CUB has no official
validation split: ``val`` is a seeded, stratified ``val_fraction`` of the official train split.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from fgvc.data.annotations import Problems, check_unique, read_table
from fgvc.data.base import DataError, DatasetNotFoundError, Sample, SplitContents, check_split
from fgvc.data.readers import reader

__all__ = ["read_cub", "cub_split", "CUBAnnotations", "find_cub_dir", "parse_cub", "read_annotations", "read_parts",
           "stratified_holdout"]

_PREFIX = re.compile(r"^\d+\.")
_REQUIRED = ("image_class_labels.txt", "train_test_split.txt", "classes.txt")


def fetch_hint(root: str | Path) -> str:
    return f"download it with `python -m fgvc.datasets fetch cub200 --root {root}`"


def find_cub_dir(root: str | Path) -> Path:
    """``root/CUB_200_2011`` or ``root`` itself, whichever holds ``images.txt``."""
    root = Path(root)
    for d in (root / "CUB_200_2011", root):
        if (d / "images.txt").is_file():
            return d
    looked = root / "CUB_200_2011" / "images.txt"
    raise DatasetNotFoundError(
        f"CUB-200-2011 not found: {looked} does not exist (nor {root / 'images.txt'}); {fetch_hint(root)}, "
        f"or set data.root to the folder that contains CUB_200_2011/"
    )


@dataclass
class CUBAnnotations:
    """Everything the annotation files say, one row per image in image-id order."""

    dir: Path
    table: pd.DataFrame  # image_id, path, class_id, label, is_train, x, y, w, h, class_name
    class_ids: list[int]
    class_folders: list[str]
    parts: np.ndarray | None  # N, P, 3 (x, y, visible)
    part_names: list[str]
    all_paths: list[str]  # every image of images.txt, also those whose other annotations are bad


# ---- one parser per annotation file; each reports its problems with file and line ----


def _check_known(path: Path, ids: np.ndarray, lines: np.ndarray, known: np.ndarray, what: str, ref: str,
                 problems: Problems) -> np.ndarray:
    ok = np.isin(ids, known)
    for i in np.flatnonzero(~ok)[:1000]:
        problems.report(path, int(lines[i]), f"{what} {ids[i]} is not in {ref}")
    return ok


def _check_complete(path: Path, have: np.ndarray, image_ids: np.ndarray, problems: Problems) -> None:
    missing = np.setdiff1d(image_ids, have)
    if len(missing):
        first = ", ".join(str(i) for i in missing[:5])
        problems.report(path, None, f"{len(missing):,} image id(s) of images.txt have no line in this file (first: "
                                    f"{first}); add the missing lines, or remove those images from images.txt")


def _parse_images(d: Path, problems: Problems) -> tuple[np.ndarray, np.ndarray]:
    """``images.txt``: image ids (sorted) and their relative paths."""
    p = d / "images.txt"
    img = read_table(p, [("image_id", int), ("path", str)], "images.txt", problems)
    keep = check_unique(p, img["image_id"], img["_line"], "image id", problems)
    image_ids, paths = img["image_id"][keep], img["path"][keep]
    order = np.argsort(image_ids, kind="stable")
    if len(image_ids) == 0:
        problems.report(p, None, "lists no images; expected lines 'image_id relative/path.jpg'")
    return image_ids[order], paths[order]


def _parse_classes(d: Path, problems: Problems) -> dict[int, str]:
    """``classes.txt``: class id -> folder name (``NNN.Class_Name``)."""
    p = d / "classes.txt"
    cls = read_table(p, [("class_id", int), ("name", str)], "classes.txt", problems)
    keep = check_unique(p, cls["class_id"], cls["_line"], "class id", problems)
    return dict(zip(cls["class_id"][keep].tolist(), cls["name"][keep].tolist()))


def _parse_per_image(path: Path, fields: list[tuple[str, type]], image_ids: np.ndarray, problems: Problems
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The valid rows of a file with one ``image_id ...`` line per image, and each row's index in ``image_ids``."""
    t = read_table(path, [("image_id", int), *fields], path.name, problems)
    ok = _check_known(path, t["image_id"], t["_line"], image_ids, "image id", "images.txt", problems)
    ok &= check_unique(path, t["image_id"], t["_line"], "image id", problems)
    rows = {k: v[ok] for k, v in t.items()}
    _check_complete(path, rows["image_id"], image_ids, problems)
    return rows, np.searchsorted(image_ids, rows["image_id"])


def _parse_labels(d: Path, image_ids: np.ndarray, class_ids: Iterable[int], problems: Problems) -> np.ndarray:
    """``image_class_labels.txt``: each image's class id (-1 where the image has no valid line)."""
    p = d / "image_class_labels.txt"
    lab, pos = _parse_per_image(p, [("class_id", int)], image_ids, problems)
    ok = _check_known(p, lab["class_id"], lab["_line"], np.array(sorted(class_ids)), "class id", "classes.txt",
                      problems)
    class_id = np.full(len(image_ids), -1, dtype=np.int64)
    class_id[pos[ok]] = lab["class_id"][ok]
    return class_id


def _parse_split(d: Path, image_ids: np.ndarray, problems: Problems) -> np.ndarray:
    """``train_test_split.txt``: each image's is_train, 1 or 0 (-1 where the image has no valid line)."""
    p = d / "train_test_split.txt"
    spl, pos = _parse_per_image(p, [("is_train", int)], image_ids, problems)
    bad = ~np.isin(spl["is_train"], [0, 1])
    for i in np.flatnonzero(bad)[:1000]:
        problems.report(p, int(spl["_line"][i]), f"is_train must be 0 or 1, found {spl['is_train'][i]}")
    is_train = np.full(len(image_ids), -1, dtype=np.int64)
    is_train[pos[~bad]] = spl["is_train"][~bad]
    return is_train


def _parse_boxes(d: Path, image_ids: np.ndarray, problems: Problems) -> np.ndarray:
    """``bounding_boxes.txt`` (optional): ``N, 4`` boxes (x, y, w, h), NaN where there is none."""
    box = np.full((len(image_ids), 4), np.nan)
    p = d / "bounding_boxes.txt"
    if not p.is_file():
        return box
    bb, pos = _parse_per_image(p, [("x", float), ("y", float), ("w", float), ("h", float)], image_ids, problems)
    bad = (bb["w"] <= 0) | (bb["h"] <= 0)
    for i in np.flatnonzero(bad)[:1000]:
        problems.report(p, int(bb["_line"][i]), "box width and height must be positive")
    for j, k in enumerate("xywh"):
        box[pos[~bad], j] = bb[k][~bad]
    return box


def _parse_part_names(d: Path, problems: Problems) -> dict[int, str]:
    """``parts/parts.txt`` (optional): part id -> name."""
    p = d / "parts" / "parts.txt"
    if not p.is_file():
        return {}
    t = read_table(p, [("part_id", int), ("name", str)], "parts/parts.txt", problems)
    keep = check_unique(p, t["part_id"], t["_line"], "part id", problems)
    return dict(zip(t["part_id"][keep].tolist(), t["name"][keep].tolist()))


def _parse_part_locs(d: Path, image_ids: np.ndarray, names: dict[int, str], problems: Problems
                     ) -> tuple[np.ndarray, list[str]]:
    """``parts/part_locs.txt``: ``N, P, 3`` part locations (x, y, visible) and the P part names."""
    p = d / "parts" / "part_locs.txt"
    t = read_table(p, [("image_id", int), ("part_id", int), ("x", float), ("y", float), ("visible", int)],
                   "parts/part_locs.txt", problems)
    num_parts = max(names) if names else int(t["part_id"].max(initial=0))
    ok = _check_known(p, t["image_id"], t["_line"], image_ids, "image id", "images.txt", problems)
    bad_part = (t["part_id"] < 1) | (t["part_id"] > num_parts)
    for i in np.flatnonzero(ok & bad_part)[:1000]:
        problems.report(p, int(t["_line"][i]), f"part id {t['part_id'][i]} is not in 1..{num_parts} (parts/parts.txt)")
    bad_vis = ~np.isin(t["visible"], [0, 1])
    for i in np.flatnonzero(ok & ~bad_part & bad_vis)[:1000]:
        problems.report(p, int(t["_line"][i]), f"visible must be 0 or 1, found {t['visible'][i]}")
    ok &= ~bad_part & ~bad_vis
    key = t["image_id"] * (num_parts + 1) + t["part_id"]
    idx = np.flatnonzero(ok)
    _, first = np.unique(key[idx], return_index=True)
    dup = np.ones(len(idx), dtype=bool)
    dup[first] = False
    if dup.any():
        first_line = dict(zip(key[idx[first]].tolist(), t["_line"][idx[first]].tolist()))
        for i in idx[dup][:1000]:
            problems.report(p, int(t["_line"][i]), f"duplicate (image id, part id) = ({t['image_id'][i]}, "
                                                   f"{t['part_id'][i]}) (first on line {first_line[int(key[i])]})")
        ok[idx[dup]] = False
    parts = np.zeros((len(image_ids), num_parts, 3), dtype=np.float32)
    rows = np.searchsorted(image_ids, t["image_id"][ok])
    parts[rows, t["part_id"][ok] - 1] = np.stack([t["x"][ok], t["y"][ok], t["visible"][ok]], axis=1)
    return parts, [names.get(i, f"part_{i}") for i in range(1, num_parts + 1)]


# ---- joining them ----


def parse_cub(root: str | Path, problems: Problems | None = None, load_parts: bool = True) -> CUBAnnotations:
    """Parse and cross-check all annotation files (no image is opened).

    ``problems`` decides what a problem does (see :class:`~fgvc.data.annotations.Problems`): by default
    (:meth:`Problems.raising`) the first one is raised; with :meth:`Problems.collecting` every problem is
    recorded and the images whose annotations are bad are left out of the table."""
    problems = Problems.raising() if problems is None else problems
    d = find_cub_dir(root)
    for name in _REQUIRED:
        if not (d / name).is_file():
            raise DatasetNotFoundError(f"CUB-200-2011 at {d} is incomplete: {d / name} is missing; "
                                       f"{fetch_hint(Path(root))}")
    image_ids, paths = _parse_images(d, problems)
    folders = _parse_classes(d, problems)
    class_id = _parse_labels(d, image_ids, folders, problems)
    is_train = _parse_split(d, image_ids, problems)
    box = _parse_boxes(d, image_ids, problems)
    parts, part_names = None, []
    if load_parts and (d / "parts" / "part_locs.txt").is_file():
        parts, part_names = _parse_part_locs(d, image_ids, _parse_part_names(d, problems), problems)
    return _join(d, [str(d / "images" / s) for s in paths], image_ids, folders, class_id, is_train, box, parts,
                 part_names)


def _join(d: Path, paths: list[str], image_ids: np.ndarray, folders: dict[int, str], class_id: np.ndarray,
          is_train: np.ndarray, box: np.ndarray, parts: np.ndarray | None, part_names: list[str]) -> CUBAnnotations:
    """One table of the images whose label and split are valid; labels 0..K-1 follow the sorted class ids."""
    valid = (class_id >= 0) & (is_train >= 0)
    used = sorted(set(class_id[valid].tolist()))  # classes with images, in id order -> labels 0..K-1
    label_of = {c: i for i, c in enumerate(used)}
    label = np.array([label_of.get(c, -1) for c in class_id.tolist()], dtype=np.int64)
    table = pd.DataFrame({
        "image_id": image_ids, "path": paths, "class_id": class_id,
        "label": label, "is_train": is_train, "x": box[:, 0], "y": box[:, 1], "w": box[:, 2], "h": box[:, 3],
        "class_name": [folders.get(c, "") for c in class_id.tolist()],
    })
    if not valid.all():  # only when collecting: the problems are already recorded
        table = table[valid].reset_index(drop=True)
        parts = parts[valid] if parts is not None else None
    return CUBAnnotations(d, table, used, [folders[c] for c in used], parts, part_names, paths)


def read_annotations(root: str | Path) -> pd.DataFrame:
    """All images as a table (image_id, path, class_id, label, is_train, x, y, w, h, class_name);
    needs no image files."""
    return parse_cub(root, load_parts=False).table


def read_parts(root: str | Path) -> np.ndarray:
    """``N, P, 3`` (x, y, visible) part locations in image-id order (P = 15 for CUB); no image files needed."""
    ann = parse_cub(root, load_parts=True)
    if ann.parts is None:
        raise DatasetNotFoundError(f"no part annotations: {ann.dir / 'parts' / 'part_locs.txt'} is missing; "
                                   f"{fetch_hint(root)}")
    return ann.parts


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a seeded, per-class ``fraction`` of ``labels`` (at least one per class of 2+,
    never a whole class). Each class draws from its own generator, so adding a class moves no other."""
    mask = np.zeros(len(labels), dtype=bool)
    if fraction <= 0:
        return mask
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        k = min(max(int(round(fraction * len(idx))), 1), len(idx) - 1)
        rng = np.random.default_rng([int(seed) % 2**32, int(c) % 2**32])
        mask[idx[rng.permutation(len(idx))[:k]]] = True
    return mask


def cub_split(name: str, root: str | Path, split: str, crop_to_bbox: bool, val_fraction: float, seed: int,
              load_parts: bool) -> SplitContents:
    """One split of a data set in the CUB-200-2011 layout; ``name`` is the data set named in errors."""
    check_split(name, split)
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"data.args.val_fraction must be in [0, 1), got {val_fraction}")
    if split == "val" and val_fraction == 0:
        raise DataError(f"{name} has no official validation split and data.args.val_fraction=0 holds "
                        "none out: set data.args.val_fraction (e.g. 0.1) or use data.val_split=test")
    ann = parse_cub(root, load_parts=load_parts)
    t = ann.table
    train = t["is_train"].to_numpy() == 1
    held = np.zeros(len(t), dtype=bool)
    held[np.flatnonzero(train)[stratified_holdout(t["class_id"].to_numpy()[train], val_fraction, seed)]] = True
    select = {"train": train & ~held, "val": held, "trainval": train, "test": ~train}[split]
    boxes = t[["x", "y", "w", "h"]].to_numpy(dtype=np.float64)
    paths, labels, ids = t["path"].tolist(), t["label"].tolist(), t["image_id"].tolist()
    samples = [
        Sample(Path(paths[i]), int(labels[i]), int(ids[i]),
               None if np.isnan(boxes[i, 0]) else (float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]),
                                                    float(boxes[i, 3])),
               None if ann.parts is None else ann.parts[i])
        for i in np.flatnonzero(select).tolist()
    ]
    fix = (f"the annotation files are there but not the images: {fetch_hint(root)}, or set data.root to a "
           f"complete copy (expected the images under {ann.dir / 'images'})")
    return SplitContents(
        samples, [_PREFIX.sub("", f) for f in ann.class_folders], f"{ann.dir} for split '{split}'", fix,
        crop_to_bbox=crop_to_bbox,
        info={"class_ids": ann.class_ids, "class_folders": ann.class_folders, "part_names": ann.part_names,
              "annotations_dir": ann.dir})


@reader("cub200")
def read_cub(root: str | Path, split: str, /, *, crop_to_bbox: bool = False, val_fraction: float = 0.1,
             seed: int = 0, load_parts: bool = True) -> SplitContents:
    """CUB-200-2011 birds; ``split`` in train / val / test / trainval (see the module docstring).

    ``info``: ``class_ids`` (the original ids), ``class_folders`` (``NNN.Class_Name``), ``part_names``,
    ``annotations_dir``."""
    return cub_split("cub200", root, split, crop_to_bbox, val_fraction, seed, load_parts)
