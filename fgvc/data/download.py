"""Download, verify (md5) and safely extract the official archives of CUB-200-2011 (Wah et al. 2011) and
Oxford Flowers 102 (Nilsback and Zisserman 2008).

``fetch("cub200", "datasets")`` gives ``datasets/CUB_200_2011/``; ``fetch("flowers102", "datasets/flowers102")``
gives ``jpg/``, ``imagelabels.mat`` and ``setid.mat`` in that folder. ``archive=`` installs from a local copy
(a file, or a folder holding the official file names). Extraction refuses absolute paths, ``..``, links
that leave the target and device files, uses ``tarfile``'s ``data`` filter where Python has it, and
goes through a temporary folder inside ``root`` so an interrupted run leaves no half data set behind.
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from fgvc.errors import UnsafeArchiveError
from fgvc.data.base import DataError, DatasetNotFoundError
from fgvc.data.cub import parse_cub
from fgvc.data.flowers import image_path, parse_flowers

__all__ = ["fetch", "safe_extract", "is_complete", "UnsafeArchiveError", "Resource", "RESOURCES", "DEFAULT_ROOTS"]


@dataclass(frozen=True)
class Resource:
    url: str
    filename: str
    md5: str
    extract: bool


RESOURCES: dict[str, list[Resource]] = {
    "cub200": [Resource("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz", "CUB_200_2011.tgz",
                        "97eceeb196236b17998738112f37df78", True)],
    "flowers102": [
        Resource("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz", "102flowers.tgz",
                 "52808999861908f626f3c1f4e79d11fa", True),
        Resource("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat", "imagelabels.mat",
                 "e0620be6f572b9609742df49c70aed4d", False),
        Resource("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat", "setid.mat",
                 "a5357ecc9cb78c4bef273ce3793fc85c", False),
    ],
}
DEFAULT_ROOTS = {"cub200": "datasets", "flowers102": "datasets/flowers102"}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _unsafe_reason(m: tarfile.TarInfo, dest: str) -> str | None:
    name = m.name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' path component"
    if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
        return "device or FIFO file"
    target = os.path.normpath(os.path.join(dest, name))
    if os.path.commonpath([dest, target]) != dest:
        return "path outside the target folder"
    if m.issym() or m.islnk():
        link = m.linkname.replace("\\", "/")
        if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
            return f"link to an absolute path ({m.linkname})"
        base = posixpath.dirname(name) if m.issym() else ""  # hard links are relative to the archive root
        resolved = os.path.normpath(os.path.join(dest, base, link))
        if os.path.commonpath([dest, resolved]) != dest:
            return f"link pointing outside the target folder ({m.linkname})"
    return None


def safe_extract(archive: str | Path, dest: str | Path, progress: bool = False) -> None:
    """Extract the tar ``archive`` into ``dest``, refusing (before writing anything) any unsafe member."""
    dest_s = os.path.abspath(dest)
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"cannot open {archive} as a tar archive ({e}); re-download it") from None
    with tar:
        members = tar.getmembers()
        for m in members:
            reason = _unsafe_reason(m, dest_s)
            if reason:
                raise UnsafeArchiveError(f"refusing to extract {archive}: member '{m.name}' is unsafe ({reason}); "
                                         "nothing was extracted. Use the official archive.")
        Path(dest_s).mkdir(parents=True, exist_ok=True)
        from tqdm import tqdm

        bar = tqdm(members, desc=f"extract {Path(archive).name}", unit="file",
                   disable=not (progress and sys.stderr.isatty()))
        for m in bar:
            if hasattr(tarfile, "data_filter"):
                tar.extract(m, dest_s, filter="data")
            else:  # pragma: no cover - Python < 3.11.4 / 3.12
                tar.extract(m, dest_s)


def is_complete(name: str, root: str | Path) -> bool:
    """Whether ``root`` holds the full data set ``name`` (annotations plus every listed image)."""
    if name not in RESOURCES:
        raise DataError(f"unknown data set '{name}' for fetch; choose one of {', '.join(RESOURCES)}")
    root = Path(root)
    try:
        if name == "cub200":
            paths: list[str] = parse_cub(root, load_parts=False).all_paths
        else:
            ann = parse_flowers(root)
            paths = [str(image_path(root, int(i))) for idx in ann.sets.values() for i in idx]
    except DataError:  # absent, or annotations unreadable: not complete either way
        return False
    return len(paths) > 0 and all(os.path.isfile(p) for p in paths)


def _verify(path: Path, res: Resource, force: bool) -> None:
    from torchvision.datasets.utils import calculate_md5

    md5 = calculate_md5(path)
    if md5 == res.md5:
        return
    msg = (f"md5 of {path} is {md5}, expected {res.md5} for the official {res.filename}: the file is incomplete, "
           f"corrupt or a different version")
    if not force:
        raise DataError(f"{msg}; re-download it from {res.url}, or pass --force (force=True) to install it anyway")
    warnings.warn(f"{msg}; installing it anyway because force=True", stacklevel=3)


def _obtain(res: Resource, root: Path, archive: Path | None, force: bool) -> Path:
    """The local, verified file for ``res``: from ``archive`` (file or folder), ``root``, or the web."""
    if archive is not None:
        cand = archive / res.filename if archive.is_dir() else archive
        if cand.is_file() and (cand.name == res.filename or res.extract):
            _verify(cand, res, force)
            return cand
    local = root / res.filename
    if local.is_file():
        from torchvision.datasets.utils import check_integrity

        if check_integrity(local, res.md5):
            return local
    from torchvision.datasets.utils import download_url

    _say(f"downloading {res.url} -> {local}")
    try:
        download_url(res.url, root, res.filename, md5=None)
    except Exception as e:  # URLError, HTTPError, OSError ...
        raise DataError(f"could not download {res.url} ({type(e).__name__}: {e}); download it by hand and run "
                        f"`python -m fgvc.datasets fetch ... --root {root} --archive PATH`") from None
    _verify(local, res, force)
    return local


def _install(archive: Path, root: Path, force: bool, progress: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        safe_extract(archive, tmp, progress)
        for entry in sorted(tmp.iterdir()):
            dest = root / entry.name
            if dest.is_dir() and not dest.is_symlink():
                if not force:
                    raise DataError(f"{dest} already exists but the data set is incomplete; remove or rename it "
                                    "(or pass --force to replace it) and run fetch again")
                shutil.rmtree(dest)
            os.replace(entry, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(name: str, root: str | Path | None = None, archive: str | Path | None = None, progress: bool = True,
          force: bool = False) -> Path:
    """Download (or take from ``archive``), verify and install data set ``name`` into ``root``; returns ``root``.

    Nothing is done when the data set is already complete. An md5 mismatch is refused unless ``force``.
    """
    if name not in RESOURCES:
        raise DataError(f"cannot fetch '{name}': fetch knows {', '.join(RESOURCES)} (for your own data use the "
                        "'folder' or 'csv' layouts)")
    root = Path(root if root is not None else DEFAULT_ROOTS[name])
    if is_complete(name, root):
        _say(f"{name} is already present and complete in {root}; nothing to do")
        return root
    src = Path(archive) if archive is not None else None
    if src is not None and not src.exists():
        raise DatasetNotFoundError(f"--archive {src} does not exist")
    root.mkdir(parents=True, exist_ok=True)
    for res in RESOURCES[name]:
        path = _obtain(res, root, src, force)
        if res.extract:
            _say(f"extracting {path} into {root}")
            _install(path, root, force, progress)
        elif path != root / res.filename:
            tmp = root / f".{res.filename}.part"
            shutil.copyfile(path, tmp)
            os.replace(tmp, root / res.filename)
    if not is_complete(name, root):
        raise DataError(f"{name} in {root} is still incomplete after installing; "
                        f"run `python -m fgvc.datasets check {name} {root}` to see what is missing")
    _say(f"{name} is ready in {root}")
    return root
