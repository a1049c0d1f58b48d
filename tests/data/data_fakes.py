"""Tiny fake data sets for the data-layer tests (CUB-200-2011 and Flowers 102 layouts, images, tar files).

Imported by tests/data/conftest.py and the tests in tests/data (pytest puts this folder on sys.path).
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"


def write_image(path: Path, size: tuple[int, int] = (24, 20), color: Sequence[int] = (200, 30, 60),
                mode: str = "RGB", fmt: str | None = None) -> Path:
    """A solid-colour image of ``size`` (w, h)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, tuple(color)).convert(mode)
    img.save(path, format=fmt)
    return path


def class_color(label: int) -> tuple[int, int, int]:
    return (40 + 50 * label % 200, 100, 200 - 30 * label % 150)


def make_cub(root: Path, class_ids: Sequence[int] = (3, 7, 12), n_train: int = 4, n_test: int = 2,
             size: tuple[int, int] = (40, 30), boxes: bool = True, parts: bool = True, images: bool = True) -> Path:
    """``root/CUB_200_2011`` with ``len(class_ids)`` classes; image ids run class by class, train images
    first; each image's box is (5, 4, 20, 10) and part p of image i sits at (i, p) with visible = p odd."""
    d = root / "CUB_200_2011"
    (d / "parts").mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {k: [] for k in ("images", "labels", "split", "boxes", "locs")}
    i = 0
    for k, cid in enumerate(class_ids):
        folder = f"{cid:03d}.Bird_{cid}"
        for j in range(n_train + n_test):
            i += 1
            rel = f"{folder}/Bird_{cid}_{j:04d}.jpg"
            lines["images"].append(f"{i} {rel}")
            lines["labels"].append(f"{i} {cid}")
            lines["split"].append(f"{i} {1 if j < n_train else 0}")
            lines["boxes"].append(f"{i} 5.0 4.0 20.0 10.0")
            lines["locs"] += [f"{i} {p} {float(i)} {float(p)} {p % 2}" for p in range(1, 16)]
            if images:
                write_image(d / "images" / rel, size, class_color(k), fmt="JPEG")
    write_lines(d / "images.txt", lines["images"])
    write_lines(d / "image_class_labels.txt", lines["labels"])
    write_lines(d / "train_test_split.txt", lines["split"])
    write_lines(d / "classes.txt", [f"{cid} {cid:03d}.Bird_{cid}" for cid in class_ids])
    if boxes:
        write_lines(d / "bounding_boxes.txt", lines["boxes"])
    if parts:
        write_lines(d / "parts" / "parts.txt", [f"{p} part{p}" for p in range(1, 16)])
        write_lines(d / "parts" / "part_locs.txt", lines["locs"])
    return root


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")


def edit_line(path: Path, line: int, text: str | None) -> None:
    """Replace 1-based ``line`` of ``path`` (None deletes it); append when ``line`` is past the end."""
    rows = path.read_text(encoding="utf-8").splitlines()
    if line > len(rows):
        rows.append(text or "")
    elif text is None:
        del rows[line - 1]
    else:
        rows[line - 1] = text
    write_lines(path, rows)


def make_flowers(root: Path, labels: Sequence[int] = (5, 5, 5, 9, 9, 9, 2, 2, 2, 7, 7, 7),
                 trnid: Sequence[int] = (1, 4, 7), valid: Sequence[int] = (2, 5, 8), tstid: Sequence[int] = (3, 6, 9),
                 names: dict[str, str] | None = None, images: bool = True, mats: dict[str, Any] | None = None) -> Path:
    """Flowers 102 layout; only images listed in the setid keys are written (like the mini set)."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    lab = {"labels": np.asarray(labels, dtype=np.uint8)[None, :]}
    sets = {k: np.asarray(v, dtype=np.uint16)[None, :]
            for k, v in (("trnid", trnid), ("valid", valid), ("tstid", tstid))}
    if mats:  # overrides for malformed files: {"labels": ..., "trnid": ...} or a key set to None to drop it
        for k, v in mats.items():
            target = lab if k == "labels" else sets
            if v is None:
                target.pop(k, None)
            else:
                target[k] = v
    savemat(root / "imagelabels.mat", lab)
    savemat(root / "setid.mat", sets)
    if names is not None:
        (root / "cat_to_name.json").write_text(json.dumps(names), encoding="utf-8")
    if images:
        for i in [*trnid, *valid, *tstid]:
            write_image(root / "jpg" / f"image_{i:05d}.jpg", (24, 20), class_color(int(labels[i - 1])), fmt="JPEG")
    return root


def make_tar(path: Path, members: Sequence[tuple[str, str, Any]], gz: bool = True) -> Path:
    """A tar with members (name, kind, payload): kind 'file' (bytes), 'dir', 'sym' / 'hard' (link target),
    'chr' (a character device)."""
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE}[kind]
            if kind == "dir":
                info.mode = 0o755
            if kind in ("sym", "hard"):
                info.linkname = payload
            tar.addfile(info)
    return path


def tar_tree(path: Path, src: Path, arcname: str) -> Path:
    """A .tgz of folder ``src`` stored under ``arcname`` (sorted, fixed mtimes: reproducible)."""
    def reset(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
        return ti

    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname=arcname, filter=reset)
    return path
