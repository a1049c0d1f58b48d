"""Scan a whole data set at once: every annotation problem and every image decoded.

Works for every layout (CUB-200-2011, Wah et al. 2011; Oxford Flowers 102, Nilsback and Zisserman 2008;
image folders; CSV manifests). Errors make loading fail; warnings (tiny images) and notes (images in
modes that are converted to RGB, e.g. grayscale, CMYK, RGBA, 16-bit) do not.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from fgvc.data.annotations import Problems
from fgvc.data.base import AnnotationError, BadImageError, DataError, map_with_progress, open_image
from fgvc.data.cub import parse_cub
from fgvc.data.flowers import image_path, parse_flowers
from fgvc.data.folder import IMAGE_EXTENSIONS, manifest_path, read_manifest, scan_folder

__all__ = ["Problem", "check_dataset", "inspect_image", "detect_layout", "summarize", "TINY"]

TINY = 32
_MODE_NOTES = {
    "L": "grayscale", "LA": "grayscale with alpha", "1": "1-bit", "P": "palette", "PA": "palette with alpha",
    "CMYK": "CMYK", "RGBA": "RGBA (composited on white)", "I;16": "16-bit grayscale", "I;16B": "16-bit grayscale",
    "I;16L": "16-bit grayscale", "I": "32-bit integer", "F": "32-bit float", "YCbCr": "YCbCr", "LAB": "Lab",
}


@dataclass
class Problem:
    """One finding: ``severity`` is 'error', 'warning' or 'note'; ``kind`` a short category."""

    path: str
    line: int | None
    severity: str
    message: str
    kind: str = "annotation"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{self.severity.upper():7s} [{self.kind}] {where}: {self.message}"


def detect_layout(root: str | Path) -> str:
    """'cub200' (CUB_200_2011/ or images.txt), 'flowers102' (imagelabels.mat), 'csv' (a .csv file), else 'folder'."""
    root = Path(root)
    if (root / "CUB_200_2011").is_dir() or (root / "images.txt").is_file():
        return "cub200"
    if (root / "imagelabels.mat").is_file():
        return "flowers102"
    if root.suffix.lower() == ".csv" and root.is_file():
        return "csv"
    return "folder"


def inspect_image(path: str | Path) -> list[Problem]:
    """Open and fully decode one image; its problems (empty list when it is a plain RGB image >= 32 px)."""
    try:
        img = open_image(path)
    except BadImageError as e:
        return [Problem(str(path), None, "error", e.problem, e.kind)]
    out = []
    if img.mode != "RGB":
        what = _MODE_NOTES.get(img.mode, img.mode)
        out.append(Problem(str(path), None, "note", f"mode {img.mode} ({what}); converted to RGB when loaded", "mode"))
    w, h = img.size
    if min(w, h) < TINY:
        out.append(Problem(str(path), None, "warning", f"tiny image ({w}x{h} px, < {TINY} px on a side)", "tiny"))
    return out


def _annotation_problem(e: AnnotationError) -> Problem:
    msg, where = str(e), f"{e.path}, line {e.line}: " if e.line is not None else f"{e.path}: "
    return Problem(str(e.path), e.line, "error", msg[len(where):] if msg.startswith(where) else msg, "annotation")


def _image_paths(name: str, root: Path, errors: list[Any], kwargs: dict[str, Any]) -> list[str]:
    """Parse the annotations of ``name`` (collecting every problem in ``errors``) and list its images."""
    problems = Problems.collecting(errors)
    if name in ("cub200", "synthetic"):
        return parse_cub(root, problems, load_parts=kwargs.get("load_parts", True)).all_paths
    if name == "flowers102":
        ann = parse_flowers(root, kwargs.get("names_file"), problems)
        return [str(image_path(root, int(i))) for idx in ann.sets.values() for i in idx]
    if name == "folder":
        _, splits = scan_folder(root, kwargs.get("extensions", IMAGE_EXTENSIONS), problems)
        return [str(s.path) for samples in splits.values() for s in samples]
    if name == "csv":
        cols = {k: kwargs[k] for k in ("path_column", "label_column", "split_column") if k in kwargs}
        _, splits = read_manifest(manifest_path(root, kwargs.get("manifest", "manifest.csv")), problems=problems,
                                  **cols)
        return [str(s.path) for samples in splits.values() for s in samples]
    raise DataError(f"check does not know data set '{name}'; use cub200, flowers102, folder, csv, synthetic or auto")


def check_dataset(name: str, root: str | Path, progress: bool = True, workers: int = 2,
                  **kwargs: Any) -> list[Problem]:
    """Every problem of data set ``name`` (or ``'auto'``) at ``root``: annotations first, then images."""
    root = Path(root)
    if name == "auto":
        name = detect_layout(root)
    errors: list[Any] = []
    try:
        paths = _image_paths(name, root, errors, kwargs)
    except AnnotationError as e:  # fatal (e.g. unreadable file): nothing more can be listed
        return [*(_annotation_problem(x) for x in errors), _annotation_problem(e)]
    except DataError as e:  # not found and the like
        return [*(_annotation_problem(x) for x in errors), Problem(str(root), None, "error", str(e), "dataset")]
    problems = [_annotation_problem(x) for x in errors]
    unique = list(dict.fromkeys(paths))
    if not unique and not problems:
        problems.append(Problem(str(root), None, "error", f"no images listed for {name} at {root}", "dataset"))
    for found in map_with_progress(inspect_image, unique, "check images", workers, progress):
        problems.extend(found)
    missing = sum(p.kind == "missing" for p in problems)
    if unique and missing == len(unique):
        fix = (f"`python -m fgvc.datasets fetch {name} --root {root}`" if name in ("cub200", "flowers102")
               else "put the images where the annotations say")
        problems.insert(0, Problem(str(root), None, "error", f"none of the {missing:,} images exist: the annotations "
                                   f"are there but the images are not; {fix}", "dataset"))
    return problems


def summarize(problems: Iterable[Problem]) -> str:
    """A small table: one row per (severity, kind) with its count."""
    counts = Counter((p.severity, p.kind) for p in problems)
    if not counts:
        return "no problems found"
    order = {"error": 0, "warning": 1, "note": 2}
    rows = sorted(counts.items(), key=lambda kv: (order.get(kv[0][0], 3), kv[0][1]))
    width = max(len(k) for (_, k), _ in rows)
    lines = [f"{'severity':8s}  {'kind':{width}s}  count", f"{'-' * 8}  {'-' * width}  -----"]
    lines += [f"{sev:8s}  {kind:{width}s}  {n:5d}" for (sev, kind), n in rows]
    return "\n".join(lines)
