"""``data.name: unlabeled``: images without labels, for self-supervised pretraining (``model.name: simclr``).

Two sources of images, labels never read:

* a folder (``data.args.source: null``, the default): every image under ``root/<split>`` when that folder exists,
  else every image under ``root``, recursively (hidden files and folders left out), e.g. a folder of bird photos;
* the images of a labelled data set's split (``data.args.source: cub200``, its own arguments in
  ``data.args.source_args``): that reader lists the split, and only the image paths are kept.

Every image gets the one pseudo-class ``unlabeled`` (label 0), so the trainer's loop, samplers and checkpoints work
unchanged; a method that needs labels learns nothing from it. Score such a run's embedding on labelled data
(``fgvc.evaluate RUN --protocol knn`` of a run whose recipe names the labelled set).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from fgvc.data.base import DatasetNotFoundError, Sample, SplitContents
from fgvc.data.folder import IMAGE_EXTENSIONS
from fgvc.data.readers import check_args, reader
from fgvc.registry import DATASETS

__all__ = ["read_unlabeled", "images_under", "UNLABELED_CLASS"]

UNLABELED_CLASS = "unlabeled"


def images_under(path: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Every image file under ``path`` (recursively, sorted; hidden files and folders left out)."""
    exts = {e.lower() for e in extensions}
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in exts and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


@reader("unlabeled")
def read_unlabeled(root: str | Path, split: str, /, *, source: str | None = None,
                   source_args: dict[str, Any] | None = None,
                   extensions: Sequence[str] = IMAGE_EXTENSIONS) -> SplitContents:
    """The images of ``root/<split>`` (or of ``root``) or of split ``split`` of data set ``source``; one class."""
    root = Path(root)
    if source is not None:
        if str(source).lower() == "unlabeled":
            raise DatasetNotFoundError("data.args.source of data.name unlabeled names a labelled data set (cub200, "
                                       "flowers102, folder, csv), not unlabeled itself")
        check_args(source, dict(source_args or {}))
        listed = DATASETS.get(source)(root, split, **dict(source_args or {}))
        paths = [s.path for s in listed.samples]  # the labels are dropped here, unread by anything after
        where, fix = f"{listed.listed_by} (labels dropped)", listed.missing_fix
    else:
        if not root.is_dir():
            raise DatasetNotFoundError(f"folder of unlabeled images {root} does not exist: set data.root to a folder "
                                       "of images (searched recursively)")
        folder = root / split if (root / split).is_dir() else root
        paths = images_under(folder, extensions)
        where, fix = f"the images under {folder}", f"put images (any depth) under {folder}"
    return SplitContents([Sample(p, 0) for p in paths], [UNLABELED_CLASS], where, fix, empty_is_error=True,
                         info={"source": source})
