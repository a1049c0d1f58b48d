"""A pre-resized image cache: each image's first transform step (shorter side to ``data.resize``) done once and
stored losslessly, so that every epoch reads a small array instead of decoding and resizing the original.

``python -m fgvc.datasets cache ROOT --max-side N`` writes ``ROOT/.fgvc_cache/N/`` (or ``--output DIR``: ``DIR/N/``):
for every image under ROOT whose shorter side exceeds ``N`` px, the full-size RGB decode
(:func:`fgvc.data.base.load_image`: any mode, transparency composited on white) resized by the transforms' own
:func:`~fgvc.data.transforms.resize_shorter` to a shorter side of ``N``, saved as an uncompressed ``.npy`` (``H, W, 3``
uint8; ~3 x the pixel count in bytes: 140 kB at N = 184, ~1 MB at 512). The transform's resize is then the identity,
so training and evaluation see bit-identical pixels with and without the cache: it changes speed, never accuracy.
Images already that small are not copied (readers keep the original). ``manifest.json`` lists each source file
relative to ROOT with its md5, size and mtime, and its copy with the copy's md5 and shorter side.

Readers use it transparently (recipe key ``data.cache``: ``auto`` looks in ``data.root/.fgvc_cache``, a path names
another cache folder, ``off`` disables it): an image is served from the cache only when

* the transform's first step resizes the shorter side to exactly ``N`` (``Transform.first_resize``: the resize-crop
  and eval pipelines at ``data.resize = N``; never a RandomResizedCrop, which needs the original);
* its source file is unchanged: same size and mtime as recorded, or, when those differ, the same md5; a changed or
  added file is read from the source and the reader warns once, naming how many and how to rebuild; never a stale
  copy (``--check`` md5-verifies every source and copy; running ``cache`` again rebuilds what is stale and drops
  the copies of removed files).
"""
from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from fgvc.data.base import BadImageError, DataError, load_image
from fgvc.data.transforms import resize_shorter

__all__ = ["CACHE_DIR", "IMAGE_SUFFIXES", "build_cache", "check_cache", "open_cache", "DataCache", "CacheReport"]

CACHE_DIR = ".fgvc_cache"
MANIFEST = "manifest.json"
VERSION = 2  # 2: exact .npy copies (1 held JPEG re-encodes)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _md5(path: Path) -> str:
    from torchvision.datasets.utils import calculate_md5  # the archives' check (fgvc.data.download) uses it too

    return calculate_md5(str(path))


def _sources(root: Path) -> list[Path]:
    """Every image file under ``root``, outside hidden folders (the cache itself is one)."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _level_dir(root: Path, max_side: int, output: str | Path | None) -> Path:
    return (Path(output) if output is not None else root / CACHE_DIR) / str(int(max_side))


def _read_manifest(level: Path) -> dict[str, Any]:
    try:
        return json.loads((level / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _shrink_one(job: tuple[str, str, str, int]) -> dict[str, Any]:
    """Worker: one source file -> its manifest entry (``error`` set for an unreadable source)."""
    from PIL import Image


    src, level, rel, max_side = Path(job[0]), Path(job[1]), job[2], job[3]
    size, mtime = _stat(src)
    entry: dict[str, Any] = {"md5": _md5(src), "size": size, "mtime_ns": mtime, "file": None, "copy_md5": None}
    try:
        with Image.open(src) as im:  # the header only
            short = min(im.size)
        if short <= max_side:
            return {**entry, "short": short}  # already small enough: readers keep the source
        image = resize_shorter(max_side)(image=load_image(src))["image"]  # H, W, 3 uint8, shorter side max_side
    except BadImageError as e:
        return {**entry, "error": e.problem}
    except Exception as e:  # an unreadable header: readers meet the source and its BadImageError
        return {**entry, "error": f"{type(e).__name__}: {e}"}
    name = rel + ".npy"
    out = level / "files" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.ascontiguousarray(image), allow_pickle=False)
    return {**entry, "file": name, "copy_md5": _md5(out), "short": int(min(image.shape[:2]))}


@dataclass
class CacheReport:
    """What ``cache`` (or ``--check``) found and did."""

    level: Path
    copied: int = 0  # copies written now
    reused: int = 0  # entries still valid
    small: int = 0  # sources already small enough (not copied)
    removed: int = 0  # entries of deleted sources dropped
    stale: list[str] = field(default_factory=list)  # changed sources (rebuilt, or found by --check)
    added: list[str] = field(default_factory=list)  # sources without an entry
    bad: list[str] = field(default_factory=list)  # unreadable sources (left out; readers raise as before)
    bad_copies: list[str] = field(default_factory=list)  # copies whose md5 differs from the manifest (--check)

    def lines(self) -> list[str]:
        out = [f"{self.level}: {self.copied} copied, {self.reused} up to date, {self.small} already small enough, "
               f"{self.removed} removed"]
        for what, items in (("changed", self.stale), ("new", self.added), ("unreadable (not cached)", self.bad),
                            ("corrupt copies", self.bad_copies)):
            if items:
                out.append(f"  {len(items)} {what}: " + ", ".join(items[:5]) + (" ..." if len(items) > 5 else ""))
        return out


def _valid(entry: dict[str, Any] | None, src: Path, deep: bool) -> bool:
    """Whether a manifest entry still describes ``src`` (size+mtime, else md5; ``deep``: always md5)."""
    if not entry or entry.get("error"):
        return False
    if not deep and tuple(entry.get(k) for k in ("size", "mtime_ns")) == _stat(src):
        return True
    return _md5(src) == entry.get("md5")


def build_cache(root: str | Path, max_side: int, output: str | Path | None = None, workers: int = 0,
                progress: bool = False) -> CacheReport:
    """Create or bring up to date the cache of ``root`` at ``max_side`` (see the module docstring)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"cache: {root} is not a folder; give the data set's root (data.root)")
    if max_side < 16:
        raise DataError(f"cache: --max-side {max_side} is too small; give the shorter side your recipes resize to "
                        "(data.resize, e.g. 184 for the CPU recipes, 512 for 448-px ones)")
    level = _level_dir(root, max_side, output)
    try:
        level.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cache: cannot write {level} ({e.strerror or e}); give a writable folder with --output DIR "
                        "and set data.cache to it in the recipe") from None
    previous = _read_manifest(level)
    old = previous.get("files", {}) if previous.get("version") == VERSION else {}
    report = CacheReport(level)
    files: dict[str, Any] = {}
    jobs = []
    sources = _sources(root)
    for src in sources:
        rel = src.relative_to(root).as_posix()
        entry = old.get(rel)
        if _valid(entry, src, deep=False) and (entry["file"] is None or (level / "files" / entry["file"]).is_file()):
            size, mtime = _stat(src)
            files[rel] = {**entry, "size": size, "mtime_ns": mtime}
            report.reused += 1
            continue
        if entry or old:  # a first build lists nothing as new
            (report.stale if entry else report.added).append(rel)
        jobs.append((str(src), str(level), rel, int(max_side)))
    results: Iterable[dict[str, Any]]
    if workers > 1 and len(jobs) > 1:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_shrink_one, jobs, chunksize=16)
    else:
        pool, results = None, map(_shrink_one, jobs)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(jobs), desc=f"cache {max_side}", dynamic_ncols=True)
    for job, entry in zip(jobs, results):
        rel = job[2]
        if entry.get("error"):
            report.bad.append(f"{rel} ({entry['error']})")
            continue
        files[rel] = entry
        report.copied += entry["file"] is not None
        report.small += entry["file"] is None
    if pool is not None:
        pool.shutdown()
    for rel, entry in old.items():  # copies of deleted (or now unreadable/rebuilt elsewhere) sources
        if rel not in files or (entry.get("file") and entry["file"] != files[rel].get("file")):
            report.removed += rel not in files
            if entry.get("file"):
                (level / "files" / entry["file"]).unlink(missing_ok=True)
    manifest = {"version": VERSION, "max_side": int(max_side), "source_root": str(root), "format": "npy",
                "files": files}
    tmp = level / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=0, sort_keys=True))
    os.replace(tmp, level / MANIFEST)
    return report


def check_cache(root: str | Path, max_side: int, output: str | Path | None = None) -> CacheReport:
    """md5-verify every source and copy of a cache against its manifest; writes nothing."""
    root = Path(root).resolve()
    level = _level_dir(root, max_side, output)
    files = _read_manifest(level).get("files", {})
    report = CacheReport(level)
    present = set()
    for src in _sources(root):
        rel = src.relative_to(root).as_posix()
        present.add(rel)
        entry = files.get(rel)
        if entry is None:
            report.added.append(rel)
        elif not _valid(entry, src, deep=True):
            report.stale.append(rel)
        elif entry["file"] is not None:
            copy = level / "files" / entry["file"]
            ok = copy.is_file() and _md5(copy) == entry["copy_md5"]
            report.reused += ok
            if not ok:
                report.bad_copies.append(entry["file"])
        else:
            report.small += 1
    report.removed = len(set(files) - present)
    return report


class DataCache:
    """The valid copies of one data set's cache levels (source path -> copy), checked once when opened."""

    def __init__(self, levels: Sequence[tuple[int, Path, dict[str, str]]], root: Path) -> None:
        self.levels = {max_side: (level, files) for max_side, level, files in levels}  # N -> (dir, {source: copy})
        self.root = root

    def lookup(self, path: Path, first_resize: int | None) -> Path | None:
        """The copy standing in for source ``path`` when the transform's first step resizes the shorter side to
        ``first_resize`` px (a cache level made at exactly that size), else None: read the source."""
        hit = self.levels.get(first_resize) if first_resize else None
        copy = hit[1].get(str(path)) if hit is not None else None
        return None if copy is None else hit[0] / "files" / copy

    @staticmethod
    def read(copy: Path) -> np.ndarray:
        """The ``H, W, 3`` uint8 array of a copy; a damaged copy is a BadImageError naming it and the fix."""
        try:
            image = np.load(copy, allow_pickle=False)
        except Exception as e:
            raise BadImageError(copy, f"unreadable cached copy ({type(e).__name__}: {e})",
                                "rebuild the cache with `python -m fgvc.datasets cache ROOT --max-side N`, or set "
                                "data.cache=off") from None
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise BadImageError(copy, f"cached copy holds {image.dtype} {image.shape}, not H x W x 3 uint8",
                                "rebuild the cache, or set data.cache=off")
        return image

    def __repr__(self) -> str:
        return f"DataCache({', '.join(f'{d} ({len(f)} copies)' for d, f in self.levels.values())})"


def open_cache(setting: str, root: str | Path, paths: Sequence[Path]) -> DataCache | None:
    """The cache a dataset reads through for recipe key ``data.cache`` (``auto``: ``root/.fgvc_cache``; ``off``; or a
    folder made with ``--output``), holding only the entries of ``paths`` whose source is unchanged; None without
    one. Warns once per level when sources changed or were added since the cache was built."""
    if setting == "off" or not paths:
        return None
    base = Path(root) / CACHE_DIR if setting == "auto" else Path(setting)
    if not base.is_dir():
        if setting != "auto":
            warnings.warn(f"data.cache={setting}: no such folder; reading the original images", stacklevel=3)
        return None
    levels = []
    for manifest_path in sorted(base.glob(f"*/{MANIFEST}")):
        manifest = _read_manifest(manifest_path.parent)
        if manifest.get("version") != VERSION:
            continue
        source_root, files = Path(manifest["source_root"]), manifest.get("files", {})
        entries: dict[str, str] = {}
        changed: list[str] = []
        for p in paths:
            try:
                rel = Path(p).resolve().relative_to(source_root).as_posix()
            except ValueError:
                continue  # not under this cache's root
            entry = files.get(rel)
            if entry is not None and Path(p).is_file() and _valid(entry, Path(p), deep=False):
                if entry["file"] is not None:
                    entries[str(p)] = entry["file"]
            elif Path(p).is_file():
                changed.append(rel)
        if changed:
            warnings.warn(
                f"data cache {manifest_path.parent}: {len(changed)} of {len(paths)} images changed or were added since "
                f"it was built (first: {', '.join(changed[:3])}); they are read from the original files. Rebuild "
                f"with `python -m fgvc.datasets cache {source_root} --max-side {manifest['max_side']}`", stacklevel=3)
        if entries:
            levels.append((int(manifest["max_side"]), manifest_path.parent, entries))
    return DataCache(levels, Path(root)) if levels else None
