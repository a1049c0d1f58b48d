"""Data audit: duplicates and train/test leakage, unreadable images, size outliers, likely mislabelled samples.

``python -m fgvc.datasets audit NAME_OR_AUTO ROOT [--run RUN_DIR] --output DIR`` runs :func:`audit_dataset` and,
given a run, :func:`mislabel_findings`; :mod:`fgvc.vis.audit_report` writes ``findings.csv``, ``summary.json``
and ``audit.html``.

* **exact duplicates**: files with the same bytes (BLAKE2b of the file); an image listed in two splits is one too.
* **near duplicates**: 64-bit DCT perceptual hashes (pHash, Zauner 2010; :mod:`fgvc.data.phash`) at most
  ``max_distance`` bits apart (default :data:`~fgvc.data.phash.DEFAULT_MAX_DISTANCE` = 6): resized, re-encoded,
  colour-shifted or slightly cropped copies (1 % a side: ~99 % caught; 3 %: ~40 %, see the phash module). A pair in two different splits is **leakage**
  (``leakage=True``, listed first); its ``path`` is the copy in the earlier split (train < val < test), the one to
  drop from training, and ``other_path`` the protected one. Within a split, ``path`` is the later-listed copy.
* **unreadable**: files that are missing, empty, truncated or not an image (:func:`fgvc.data.base.open_image`).
* **size outliers**: area below ``1/AREA_FACTOR`` or above ``AREA_FACTOR`` x the median area (4: half or twice
  the median side), aspect ratio beyond ``MAX_ASPECT`` : 1 (3), or a side under ``TINY`` (32) px.
* **mislabelled** (with a trained run): the model predicts another class with max softmax probability
  >= ``confidence`` (0.8) *and* at least ``min_agree`` (3) of the ``k`` (5) nearest training images (cosine
  similarity of the run's embeddings, the image itself excluded) carry the predicted class: a confident model
  and a kNN vote in feature space (the idea of kNN label-noise filtering, and of confident learning, Northcutt
  et al. 2021, simplified). Score = probability x fraction of neighbours that agree with the model, highest first.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fgvc.data.base import BadImageError, DataError, map_with_progress, open_image, to_rgb
from fgvc.data.check import TINY, detect_layout
from fgvc.data.phash import DEFAULT_MAX_DISTANCE, near_pairs, phash
from fgvc.data.readers import build_dataset

__all__ = ["Item", "ImageInfo", "Finding", "Audit", "audit_dataset", "list_items", "scan_images", "duplicate_findings",
           "size_findings", "mislabel_findings", "KINDS", "AUDIT_SPLITS", "AREA_FACTOR", "MAX_ASPECT"]

EXACT, NEAR, UNREADABLE = "exact_duplicate", "near_duplicate", "unreadable"
SIZE, MISLABEL = "size_outlier", "mislabelled"
KINDS = (EXACT, NEAR, UNREADABLE, SIZE, MISLABEL)
AUDIT_SPLITS = ("train", "val", "test")  # disjoint in every reader; trainval is train + val
AREA_FACTOR = 4.0
MAX_ASPECT = 3.0


@dataclass(frozen=True)
class Item:
    """One listed image: its split, path, label and class name."""

    split: str
    path: Path
    label: int
    class_name: str


@dataclass
class ImageInfo:
    """What hashing one file found: byte digest, pHash and size (w, h), or the reason it is unreadable."""

    digest: str | None = None
    phash: np.uint64 | None = None
    size: tuple[int, int] | None = None
    error: str | None = None


@dataclass
class Finding:
    """One row of ``findings.csv``. ``score``: Hamming distance (duplicates; 0 = exact), the size factor (size
    outliers) or probability x neighbour agreement (mislabelled)."""

    kind: str
    split: str
    path: Path
    detail: str
    score: float | None = None
    other_path: Path | None = None
    other_split: str = ""
    leakage: bool = False
    label: str = ""
    other_label: str = ""
    predicted: str = ""


@dataclass
class Audit:
    """The audit of one data set: the images it listed, what hashing found, and the findings in report order."""

    name: str
    root: Path
    items: list[Item]
    infos: list[ImageInfo]
    findings: list[Finding]
    max_distance: int
    skipped_splits: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def split_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for it in self.items:
            out[it.split] = out.get(it.split, 0) + 1
        return out


def _key(path: Path | str) -> str:
    return os.path.normpath(os.path.abspath(path))


def list_items(name: str, root: str | Path, args: Mapping[str, Any] | None = None,
               splits: Sequence[str] = AUDIT_SPLITS) -> tuple[str, list[Item], dict[str, str]]:
    """``(name, items, skipped)``: the images of every split of data set ``name`` (``auto``: detected as by
    ``fgvc.datasets check``) that its registered reader provides; ``skipped`` says why a split is unavailable."""
    root = Path(root)
    name = detect_layout(root) if name == "auto" else name
    items: list[Item] = []
    skipped: dict[str, str] = {}
    for split in splits:
        try:
            with warnings.catch_warnings():  # missing files: reported as unreadable by the audit itself
                warnings.simplefilter("ignore")
                ds = build_dataset(name, root, split, on_bad_image="skip", **dict(args or {}))
        except DataError as e:
            skipped[split] = str(e)
            continue
        items += [Item(split, s.path, s.label, ds.classes[s.label]) for s in ds.samples]
    if not items:
        first = next(iter(skipped.values()), f"no images listed for {name} at {root}")
        raise DataError(f"nothing to audit in {name} at {root}: {first}")
    return name, items, skipped


def _inspect(path: Path) -> ImageInfo:
    try:
        img = open_image(path)
        digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
        rgb = to_rgb(img)
    except BadImageError as e:
        return ImageInfo(error=e.problem)
    except Exception as e:  # a mode that cannot become RGB, or a file that vanished in between
        return ImageInfo(error=f"{type(e).__name__}: {e}")
    return ImageInfo(digest, phash(rgb), (img.width, img.height))


def scan_images(paths: Sequence[Path], progress: bool = True, workers: int = 2) -> list[ImageInfo]:
    """Decode and hash every file (a thread pool; a tqdm bar on a terminal)."""
    return list(map_with_progress(_inspect, paths, "hash images", workers, progress))


def _split_rank(split: str) -> tuple[int, str]:
    return (AUDIT_SPLITS.index(split) if split in AUDIT_SPLITS else len(AUDIT_SPLITS), split)


def _pair(kind: str, a: Item, b: Item, distance: int, detail: str,
          sizes: tuple[tuple[int, int], tuple[int, int]] | None = None) -> Finding:
    """Orient a pair: across splits the earlier split's copy is ``path``; within one, the later-listed copy.
    ``sizes`` (of a and b) are appended to ``detail`` in the pair's order."""
    swap = _split_rank(a.split) > _split_rank(b.split) if a.split != b.split else True  # a listed before b
    first, second = (b, a) if swap else (a, b)
    if sizes is not None:
        (w1, h1), (w2, h2) = sizes[::-1] if swap else sizes
        detail += f"; {w1}x{h1} vs {w2}x{h2} px"
    leak = a.split != b.split
    if leak:
        detail = f"leakage: {first.split} image also in {second.split}; {detail}"
    return Finding(kind, first.split, first.path, detail, float(distance), second.path, second.split, leak,
                   first.class_name, second.class_name)


def duplicate_findings(items: Sequence[Item], infos: Sequence[ImageInfo], max_distance: int = DEFAULT_MAX_DISTANCE
                       ) -> list[Finding]:
    """Exact (same bytes, or one file listed twice) and near (pHash) duplicate pairs; leakage first."""
    found: list[Finding] = []
    by_path: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_path.setdefault(_key(it.path), []).append(i)
    for idx in by_path.values():  # the same file in two splits (or twice in one)
        for x, a in enumerate(idx):
            for b in idx[x + 1:]:
                found.append(_pair(EXACT, items[a], items[b], 0, "the same file is listed twice"))
    first = [idx[0] for idx in by_path.values()]  # one entry per file
    by_digest: dict[str, list[int]] = {}
    for i in first:
        if infos[i].digest is not None:
            by_digest.setdefault(infos[i].digest, []).append(i)  # type: ignore[arg-type]
    for idx in by_digest.values():
        for x, a in enumerate(idx):
            for b in idx[x + 1:]:
                found.append(_pair(EXACT, items[a], items[b], 0, "identical bytes"))
    hashed = [i for i in first if infos[i].phash is not None]
    if hashed:
        hashes = np.array([infos[i].phash for i in hashed], dtype=np.uint64)
        ii, jj, dd = near_pairs(hashes, max_distance)
        for a, b, d in zip(ii.tolist(), jj.tolist(), dd.tolist()):
            a, b = hashed[a], hashed[b]
            if infos[a].digest == infos[b].digest:
                continue  # already an exact duplicate
            found.append(_pair(NEAR, items[a], items[b], d, f"pHash Hamming distance {d} (<= {max_distance})",
                               (infos[a].size, infos[b].size)))  # type: ignore[arg-type]
    return sorted(found, key=lambda f: (not f.leakage, f.kind != EXACT, f.score or 0.0))


def size_findings(items: Sequence[Item], infos: Sequence[ImageInfo], area_factor: float = AREA_FACTOR,
                  max_aspect: float = MAX_ASPECT, tiny: int = TINY) -> list[Finding]:
    """Images whose area is beyond ``area_factor`` x or 1/``area_factor`` x the median, whose aspect ratio exceeds
    ``max_aspect`` : 1, or with a side under ``tiny`` px; most extreme first."""
    ok = [i for i, inf in enumerate(infos) if inf.size is not None]
    if not ok:
        return []
    sizes = np.array([infos[i].size for i in ok], dtype=np.float64)  # n, 2 (w, h)
    area = sizes[:, 0] * sizes[:, 1]
    median = float(np.median(area))
    mw, mh = np.median(sizes, axis=0)
    found = []
    for row, i in enumerate(ok):
        w, h = (int(v) for v in sizes[row])
        ratio = area[row] / median
        aspect = max(w, h) / max(min(w, h), 1)
        why, factor = [], 1.0
        if ratio > area_factor or ratio < 1.0 / area_factor:
            why.append(f"area {ratio:.2g}x the median ({int(mw)}x{int(mh)} px)")
            factor = max(ratio, 1.0 / ratio)
        if aspect > max_aspect:
            why.append(f"aspect ratio {aspect:.1f}:1 (> {max_aspect:g}:1)")
            factor = max(factor, aspect)
        if min(w, h) < tiny:
            why.append(f"a side under {tiny} px")
            factor = max(factor, tiny / max(min(w, h), 1))
        if why:
            it = items[i]
            found.append(Finding(SIZE, it.split, it.path, f"{w}x{h} px: " + "; ".join(why), round(factor, 3),
                                 label=it.class_name))
    return sorted(found, key=lambda f: -(f.score or 0.0))


def _unreadable(items: Sequence[Item], infos: Sequence[ImageInfo]) -> list[Finding]:
    return [Finding(UNREADABLE, it.split, it.path, inf.error or "unreadable", label=it.class_name)
            for it, inf in zip(items, infos) if inf.error is not None]


def audit_dataset(name: str, root: str | Path, args: Mapping[str, Any] | None = None,
                  max_distance: int = DEFAULT_MAX_DISTANCE, progress: bool = True, workers: int = 2) -> Audit:
    """Audit data set ``name`` (or ``auto``) at ``root``: every image of its train, val and test splits hashed once;
    duplicate/leakage, unreadable and size findings (add mislabelled ones with :func:`mislabel_findings`)."""
    name, items, skipped = list_items(name, root, args)
    unique: dict[str, int] = {}
    for it in items:
        unique.setdefault(_key(it.path), len(unique))
    paths = [Path(p) for p in unique]
    scanned = scan_images(paths, progress, workers)
    infos = [scanned[unique[_key(it.path)]] for it in items]
    seen: set[str] = set()
    once = [i for i, it in enumerate(items) if not (_key(it.path) in seen or seen.add(_key(it.path)))]
    findings = (duplicate_findings(items, infos, max_distance)
                + _unreadable([items[i] for i in once], [infos[i] for i in once])
                + size_findings([items[i] for i in once], [infos[i] for i in once]))
    return Audit(name, Path(root), items, infos, findings, max_distance, skipped,
                 {"area_factor": AREA_FACTOR, "max_aspect": MAX_ASPECT, "tiny": TINY})


def mislabel_findings(items: Sequence[Item], probs: np.ndarray, embeddings: np.ndarray, valid: np.ndarray,
                      gallery: np.ndarray, class_names: Sequence[str], k: int = 5, confidence: float = 0.8,
                      min_agree: int = 3, block: int = 1024) -> list[Finding]:
    """Likely mislabelled images (see the module docstring). Row ``i`` of ``probs`` (``N, K`` softmax) and
    ``embeddings`` (``N, D``) belongs to ``items[i]``; ``valid`` (``N`` bool) marks rows with outputs, ``gallery``
    (``N`` bool) the training images searched for neighbours (an image is never its own neighbour)."""
    n = len(items)
    if not (len(probs) == len(embeddings) == len(valid) == len(gallery) == n):
        raise ValueError("items, probs, embeddings, valid and gallery must have one row per image")
    gal = np.flatnonzero(gallery & valid)
    if len(gal) == 0:
        return []
    k = min(k, max(len(gal) - 1, 1))
    emb = embeddings.astype(np.float32)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)  # cosine = dot of unit vectors
    g_emb = emb[gal]  # G, D
    g_labels = np.array([items[i].label for i in gal])
    pos_in_gallery = np.full(n, -1)
    pos_in_gallery[gal] = np.arange(len(gal))
    pred, conf = probs.argmax(1), probs.max(1)
    labels = np.array([it.label for it in items])
    cand = np.flatnonzero(valid & (pred != labels) & (conf >= confidence))
    found = []
    for start in range(0, len(cand), block):
        rows = cand[start:start + block]
        sims = emb[rows] @ g_emb.T  # B, G
        own = pos_in_gallery[rows]
        sims[np.flatnonzero(own >= 0), own[own >= 0]] = -np.inf  # not its own neighbour
        nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # B, k
        for r, i in enumerate(rows.tolist()):
            agree = int((g_labels[nn[r]] == pred[i]).sum())
            if agree < min_agree:
                continue
            it = items[i]
            score = float(conf[i]) * agree / k
            found.append(Finding(
                MISLABEL, it.split, it.path,
                f"model says {class_names[pred[i]]} (p={conf[i]:.2f}; p(label)={probs[i, it.label]:.2f}); "
                f"{agree}/{k} nearest training images are {class_names[pred[i]]}",
                round(score, 4), label=it.class_name, predicted=class_names[pred[i]]))
    return sorted(found, key=lambda f: -(f.score or 0.0))
