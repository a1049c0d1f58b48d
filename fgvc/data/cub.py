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
from typing import Any, Callable

import numpy as np
import pandas as pd

from fgvc.data.base import (
    DataError, DatasetNotFoundError, FGVCDataset, Problems, Sample, check_unique, read_table,
)
from fgvc.registry import DATASETS

__all__ = ["CUB200", "CUBAnnotations", "find_cub_dir", "parse_cub", "stratified_holdout", "SPLITS"]

SPLITS = ("train", "val", "test", "trainval")
_PREFIX = re.compile(r"^\d+\.")


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


def _check_known(path: Path, ids: np.ndarray, lines: np.ndarray, known: np.ndarray, what: str, ref: str,
                 col: Problems) -> np.ndarray:
    ok = np.isin(ids, known)
    for i in np.flatnonzero(~ok)[:1000]:
        col.error(path, int(lines[i]), f"{what} {ids[i]} is not in {ref}")
    return ok


def _check_complete(path: Path, have: np.ndarray, image_ids: np.ndarray, col: Problems) -> None:
    missing = np.setdiff1d(image_ids, have)
    if len(missing):
        first = ", ".join(str(i) for i in missing[:5])
        col.error(path, None, f"{len(missing):,} image id(s) of images.txt have no line in this file (first: "
                              f"{first}); add the missing lines, or remove those images from images.txt")


def parse_cub(root: str | Path, problems: list | None = None, load_parts: bool = True) -> CUBAnnotations:
    """Parse and cross-check all annotation files (no image is opened).

    With ``problems=None`` the first :class:`~fgvc.data.base.AnnotationError` is raised; with a list,
    every problem found is appended and the valid rows are kept."""
    d = find_cub_dir(root)
    col = Problems(problems)
    for name in ("image_class_labels.txt", "train_test_split.txt", "classes.txt"):
        if not (d / name).is_file():
            raise DatasetNotFoundError(f"CUB-200-2011 at {d} is incomplete: {d / name} is missing; "
                                       f"{fetch_hint(Path(root))}")
    p = d / "images.txt"
    img = read_table(p, [("image_id", int), ("path", str)], "images.txt", col)
    keep = check_unique(p, img["image_id"], img["_line"], "image id", col)
    image_ids, paths = img["image_id"][keep], img["path"][keep]
    order = np.argsort(image_ids, kind="stable")
    image_ids, paths = image_ids[order], paths[order]
    n = len(image_ids)
    if n == 0:
        col.error(p, None, "lists no images; expected lines 'image_id relative/path.jpg'")

    p = d / "classes.txt"
    cls = read_table(p, [("class_id", int), ("name", str)], "classes.txt", col)
    keep = check_unique(p, cls["class_id"], cls["_line"], "class id", col)
    folders = dict(zip(cls["class_id"][keep].tolist(), cls["name"][keep].tolist()))

    def per_image(name: str, fields: list[tuple[str, type]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Rows of ``name`` aligned to ``image_ids`` (``found`` marks images that have a valid row)."""
        path = d / name
        t = read_table(path, [("image_id", int), *fields], name, col)
        ok = _check_known(path, t["image_id"], t["_line"], image_ids, "image id", "images.txt", col)
        ok &= check_unique(path, t["image_id"], t["_line"], "image id", col)
        t = {k: v[ok] for k, v in t.items()}
        _check_complete(path, t["image_id"], image_ids, col)
        pos = np.searchsorted(image_ids, t["image_id"])
        found = np.zeros(n, dtype=bool)
        found[pos] = True
        return t | {"_pos": pos}, found

    p = d / "image_class_labels.txt"
    lab, has_label = per_image("image_class_labels.txt", [("class_id", int)])
    class_id = np.full(n, -1, dtype=np.int64)
    ok = _check_known(p, lab["class_id"], lab["_line"], np.array(sorted(folders)), "class id", "classes.txt", col)
    class_id[lab["_pos"][ok]] = lab["class_id"][ok]
    has_label[lab["_pos"][~ok]] = False

    p = d / "train_test_split.txt"
    spl, has_split = per_image("train_test_split.txt", [("is_train", int)])
    bad = ~np.isin(spl["is_train"], [0, 1])
    for i in np.flatnonzero(bad)[:1000]:
        col.error(p, int(spl["_line"][i]), f"is_train must be 0 or 1, found {spl['is_train'][i]}")
    is_train = np.zeros(n, dtype=np.int64)
    is_train[spl["_pos"][~bad]] = spl["is_train"][~bad]
    has_split[spl["_pos"][bad]] = False

    box = np.full((n, 4), np.nan)
    if (d / "bounding_boxes.txt").is_file():
        p = d / "bounding_boxes.txt"
        bb, _ = per_image("bounding_boxes.txt", [("x", float), ("y", float), ("w", float), ("h", float)])
        bad = (bb["w"] <= 0) | (bb["h"] <= 0)
        for i in np.flatnonzero(bad)[:1000]:
            col.error(p, int(bb["_line"][i]), "box width and height must be positive")
        for j, k in enumerate("xywh"):
            box[bb["_pos"][~bad], j] = bb[k][~bad]

    parts: np.ndarray | None = None
    part_names: list[str] = []
    if load_parts and (d / "parts" / "part_locs.txt").is_file():
        parts, part_names = _parse_parts(d, image_ids, col)

    valid = has_label & has_split & (class_id >= 0)
    used = sorted(set(class_id[valid].tolist()))  # classes with images, in id order -> labels 0..K-1
    label_of = {c: i for i, c in enumerate(used)}
    label = np.array([label_of.get(c, -1) for c in class_id.tolist()], dtype=np.int64)
    all_paths = [str(d / "images" / s) for s in paths]
    table = pd.DataFrame({
        "image_id": image_ids, "path": all_paths, "class_id": class_id,
        "label": label, "is_train": is_train, "x": box[:, 0], "y": box[:, 1], "w": box[:, 2], "h": box[:, 3],
        "class_name": [folders.get(c, "") for c in class_id.tolist()],
    })
    if not valid.all():  # only in collect mode: the errors are already recorded
        table = table[valid & (label >= 0)].reset_index(drop=True)
        parts = parts[valid & (label >= 0)] if parts is not None else None
    return CUBAnnotations(d, table, used, [folders[c] for c in used], parts, part_names, all_paths)


def _parse_parts(d: Path, image_ids: np.ndarray, col: Problems) -> tuple[np.ndarray, list[str]]:
    names: dict[int, str] = {}
    if (d / "parts" / "parts.txt").is_file():
        p = d / "parts" / "parts.txt"
        t = read_table(p, [("part_id", int), ("name", str)], "parts/parts.txt", col)
        keep = check_unique(p, t["part_id"], t["_line"], "part id", col)
        names = dict(zip(t["part_id"][keep].tolist(), t["name"][keep].tolist()))
    p = d / "parts" / "part_locs.txt"
    t = read_table(p, [("image_id", int), ("part_id", int), ("x", float), ("y", float), ("visible", int)],
                   "parts/part_locs.txt", col)
    num_parts = max(names) if names else int(t["part_id"].max(initial=0))
    ok = _check_known(p, t["image_id"], t["_line"], image_ids, "image id", "images.txt", col)
    bad_part = (t["part_id"] < 1) | (t["part_id"] > num_parts)
    for i in np.flatnonzero(ok & bad_part)[:1000]:
        col.error(p, int(t["_line"][i]), f"part id {t['part_id'][i]} is not in 1..{num_parts} (parts/parts.txt)")
    bad_vis = ~np.isin(t["visible"], [0, 1])
    for i in np.flatnonzero(ok & ~bad_part & bad_vis)[:1000]:
        col.error(p, int(t["_line"][i]), f"visible must be 0 or 1, found {t['visible'][i]}")
    ok &= ~bad_part & ~bad_vis
    key = t["image_id"] * (num_parts + 1) + t["part_id"]
    idx = np.flatnonzero(ok)
    _, first = np.unique(key[idx], return_index=True)
    dup = np.ones(len(idx), dtype=bool)
    dup[first] = False
    if dup.any():
        first_line = dict(zip(key[idx[first]].tolist(), t["_line"][idx[first]].tolist()))
        for i in idx[dup][:1000]:
            col.error(p, int(t["_line"][i]), f"duplicate (image id, part id) = ({t['image_id'][i]}, "
                                             f"{t['part_id'][i]}) (first on line {first_line[int(key[i])]})")
        ok[idx[dup]] = False
    parts = np.zeros((len(image_ids), num_parts, 3), dtype=np.float32)
    rows = np.searchsorted(image_ids, t["image_id"][ok])
    parts[rows, t["part_id"][ok] - 1] = np.stack([t["x"][ok], t["y"][ok], t["visible"][ok]], axis=1)
    return parts, [names.get(i, f"part_{i}") for i in range(1, num_parts + 1)]


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


@DATASETS.register("cub200")
class CUB200(FGVCDataset):
    """CUB-200-2011 birds; ``split`` in train / val / test / trainval (see the module docstring)."""

    name = "cub200"

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable[[np.ndarray], Any] | None = None,
        on_bad_image: str = "error",
        crop_to_bbox: bool = False,
        val_fraction: float = 0.1,
        seed: int = 0,
        load_parts: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown split '{split}' for {self.name}; choose one of {', '.join(SPLITS)}")
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"data.args.val_fraction must be in [0, 1), got {val_fraction}")
        if split == "val" and val_fraction == 0:
            raise DataError(f"{self.name} has no official validation split and data.args.val_fraction=0 holds "
                            "none out: set data.args.val_fraction (e.g. 0.1) or use data.val_split=test")
        ann = parse_cub(root, load_parts=load_parts)
        t = ann.table
        train = t["is_train"].to_numpy() == 1
        held = np.zeros(len(t), dtype=bool)
        held[np.flatnonzero(train)[stratified_holdout(t["class_id"].to_numpy()[train], val_fraction, seed)]] = True
        select = {"train": train & ~held, "val": held, "trainval": train, "test": ~train}[split]
        self.class_ids, self.class_folders = ann.class_ids, ann.class_folders
        self.part_names, self.annotations_dir = ann.part_names, ann.dir
        boxes = t[["x", "y", "w", "h"]].to_numpy(dtype=np.float64)
        paths, labels, ids = t["path"].tolist(), t["label"].tolist(), t["image_id"].tolist()
        samples = [
            Sample(Path(paths[i]), int(labels[i]), int(ids[i]),
                   None if np.isnan(boxes[i, 0]) else (float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]),
                                                        float(boxes[i, 3])),
                   None if ann.parts is None else ann.parts[i])
            for i in np.flatnonzero(select).tolist()
        ]
        classes = [_PREFIX.sub("", f) for f in ann.class_folders]
        super().__init__(root, split, samples, classes, transform, on_bad_image, crop_to_bbox)
        self._check_images_exist(root)

    def _check_images_exist(self, root: str | Path) -> None:
        fix = (f"the annotation files are there but not the images: {fetch_hint(root)}, or set data.root to a "
               f"complete copy (expected the images under {self.annotations_dir / 'images'})")
        self.check_images_exist(f"{self.annotations_dir} for split '{self.split}'", fix)

    @property
    def parts(self) -> np.ndarray | None:
        """``N, P, 3`` part locations (x, y, visible) of this split's images, or None."""
        if not self.samples or self.samples[0].parts is None:
            return None
        return np.stack([s.parts for s in self.samples])  # type: ignore[misc]

    @staticmethod
    def read_annotations(root: str | Path) -> pd.DataFrame:
        """All images as a table (image_id, path, class_id, label, is_train, x, y, w, h, class_name);
        needs no image files."""
        return parse_cub(root, load_parts=False).table

    @staticmethod
    def read_parts(root: str | Path) -> np.ndarray:
        """``N, P, 3`` (x, y, visible) part locations in image-id order (P = 15 for CUB); no image files needed."""
        ann = parse_cub(root, load_parts=True)
        if ann.parts is None:
            raise DatasetNotFoundError(f"no part annotations: {ann.dir / 'parts' / 'part_locs.txt'} is missing; "
                                       f"{fetch_hint(root)}")
        return ann.parts
