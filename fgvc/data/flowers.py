"""Oxford Flowers 102 (Nilsback and Zisserman 2008, Automated flower classification over a large number of
classes, ICVGIP).

Official layout under ``root``::

    jpg/image_00001.jpg ... image_08189.jpg
    imagelabels.mat    key ``labels``: 1 x N, 1-based class ids of all N images
    setid.mat          keys ``trnid``, ``valid``, ``tstid``: 1 x n, 1-based image indices
    cat_to_name.json   optional {"<class id>": "name"}

Only images listed in ``setid.mat`` are used (subsets may ship fewer files); the class ids present there
map to contiguous labels 0..K-1 in id order, shared by every split.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fgvc.data.annotations import Problems
from fgvc.data.base import AnnotationError, DatasetNotFoundError, Sample, SplitContents, check_split
from fgvc.data.readers import reader

__all__ = ["read_flowers", "FlowersAnnotations", "parse_flowers", "image_path", "SET_KEYS"]

SET_KEYS = {"train": "trnid", "val": "valid", "test": "tstid"}


def fetch_hint(root: str | Path) -> str:
    return f"download it with `python -m fgvc.datasets fetch flowers102 --root {root}`"


def _vector(path: Path, mat: dict[str, Any], key: str, problems: Problems) -> np.ndarray | None:
    """The 1 x n (or n x 1) integer vector ``mat[key]``; AnnotationError naming file, key and shapes."""
    if key not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        problems.report(path, None, f"key '{key}' not found (keys found: {found}); expected '{key}' of shape 1 x n")
        return None
    arr = np.asarray(mat[key])
    if arr.ndim != 2 or 1 not in arr.shape or arr.size == 0:
        problems.report(path, None, f"key '{key}' has shape {' x '.join(map(str, arr.shape)) or 'scalar'}, "
                                    "expected 1 x n")
        return None
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0)):
        problems.report(path, None, f"key '{key}' must hold integers, found dtype {arr.dtype}")
        return None
    return arr.reshape(-1).astype(np.int64)


def _loadmat(path: Path, root: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    if not path.is_file():
        raise DatasetNotFoundError(f"Oxford Flowers 102 not found: {path} does not exist; {fetch_hint(root)}, "
                                   "or set data.root to the folder that holds jpg/, imagelabels.mat and setid.mat")
    try:
        return loadmat(str(path))
    except Exception as e:
        raise AnnotationError(path, None, f"not a readable MATLAB file ({type(e).__name__}: {e}); "
                                          f"re-download it ({fetch_hint(root)})") from None


@dataclass
class FlowersAnnotations:
    """What ``imagelabels.mat``, ``setid.mat`` and the class names say."""

    labels: np.ndarray  # N, 1-based class ids of all images
    sets: dict[str, np.ndarray]  # split -> 1-based image indices
    class_ids: list[int]
    names: list[str]


def parse_flowers(root: str | Path, names_file: str | Path | None = None,
                  problems: Problems | None = None) -> FlowersAnnotations:
    """Read and cross-check ``imagelabels.mat``, ``setid.mat`` and the class names (no image opened).

    ``problems``: raise the first problem (default, :meth:`Problems.raising`) or collect them all."""
    problems = Problems.raising() if problems is None else problems
    root = Path(root)
    lab_path, set_path = root / "imagelabels.mat", root / "setid.mat"
    labels = _vector(lab_path, _loadmat(lab_path, root), "labels", problems)
    setmat = _loadmat(set_path, root)
    sets: dict[str, np.ndarray] = {}
    for split, key in SET_KEYS.items():
        v = _vector(set_path, setmat, key, problems)
        sets[split] = v if v is not None else np.zeros(0, dtype=np.int64)
    if labels is None:
        return FlowersAnnotations(np.zeros(0, dtype=np.int64), sets, [], [])
    _check_sets(set_path, sets, len(labels), problems)
    used = sorted(set(labels[np.concatenate(list(sets.values())) - 1].tolist()))
    return FlowersAnnotations(labels, sets, used, _names(root, names_file, used))


def _check_sets(set_path: Path, sets: dict[str, np.ndarray], num_images: int, problems: Problems) -> None:
    """Image indices in 1..``num_images``, listed once, in one split only (bad indices are dropped in place)."""
    def fail(problem: str) -> None:
        problems.report(set_path, None, problem)

    seen: dict[int, str] = {}
    for split, key in SET_KEYS.items():
        idx = sets[split]
        bad = idx[(idx < 1) | (idx > num_images)]
        if len(bad):
            fail(f"key '{key}' holds image indices outside 1..{num_images} (imagelabels.mat has {num_images} "
                 f"labels): {bad[:5].tolist()}")
            sets[split] = idx = idx[(idx >= 1) & (idx <= num_images)]
        uniq, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            fail(f"key '{key}' lists image indices more than once: {uniq[counts > 1][:5].tolist()}")
        for i in uniq.tolist():
            if i in seen:
                fail(f"image {i} is in both '{seen[i]}' and '{key}'; the splits must not overlap")
                break
            seen[i] = key


def _names(root: Path, names_file: str | Path | None, class_ids: list[int]) -> list[str]:
    path = Path(names_file) if names_file is not None else root / "cat_to_name.json"
    if names_file is not None and not path.is_absolute() and not path.is_file() and (root / path).is_file():
        path = root / path  # relative to the data root
    if not path.is_file():
        if names_file is not None:
            raise DatasetNotFoundError(f"data.args.names_file {path} does not exist")
        return [f"class_{c}" for c in class_ids]
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise AnnotationError(path, getattr(e, "lineno", None), f"not valid JSON ({e})") from None
    if not isinstance(table, dict):
        raise AnnotationError(path, None, 'expected a JSON object {"<class id>": "name", ...}')
    return [str(table.get(str(c), f"class_{c}")) for c in class_ids]


def image_path(root: Path, index: int) -> Path:
    """``root/jpg/image_NNNNN.jpg`` of 1-based image ``index``."""
    return root / "jpg" / f"image_{index:05d}.jpg"


@reader("flowers102")
def read_flowers(root: str | Path, split: str, /, *, names_file: str | None = None) -> SplitContents:
    """Oxford Flowers 102; ``split`` in train (trnid) / val (valid) / test (tstid) / trainval.

    ``names_file``: a JSON ``{"<class id>": "name"}`` (default ``root/cat_to_name.json`` where present).
    ``info``: ``class_ids`` (the original 1-based ids)."""
    check_split("flowers102", split)
    root = Path(root)
    ann = parse_flowers(root, names_file)
    label_of = {c: i for i, c in enumerate(ann.class_ids)}
    indices = np.concatenate([ann.sets["train"], ann.sets["val"]]) if split == "trainval" else ann.sets[split]
    samples = [Sample(image_path(root, int(i)), label_of[int(ann.labels[i - 1])], int(i)) for i in indices]
    return SplitContents(samples, ann.names, f"{root / 'setid.mat'} for split '{split}'",
                         f"the .mat files are there but not these images: {fetch_hint(root)}",
                         info={"class_ids": ann.class_ids})
