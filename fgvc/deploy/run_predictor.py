"""Class probabilities of new photos: the files to predict, a trained run as a predictor, batched top-k.

What ``fgvc predict`` and ``fgvc serve`` share below the command line: :func:`find_images` turns paths (files, folders
searched recursively) into :class:`Item` objects, :class:`RunModel` wraps a
:class:`~fgvc.engine.inference.TrainedRun` with the interface of :class:`fgvc.deploy.predictor.OnnxPredictor`
(``transform``, ``class_names``, ``num_workers``, ``probabilities(images) -> B x K``, ``describe()``), and
:func:`predict_items` fills the items in, batch by batch; a file that cannot be read or preprocessed becomes an item
with an ``error``, never an exception, so one bad photo cannot stop its batch.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fgvc.data.base import BadImageError, load_image
from fgvc.data.folder import IMAGE_EXTENSIONS  # the extensions the folder reader takes
from fgvc.engine.builder import build_transform
from fgvc.errors import PredictError

__all__ = ["IMAGE_EXTENSIONS", "Item", "RunModel", "find_images", "format_line", "predict_items",
           "PROGRESS_MIN_IMAGES"]

PROGRESS_MIN_IMAGES = 64  # a progress bar (on a terminal) from this many images on


@dataclass
class Item:
    """One input file: predicted (``topk`` = [(class name, probability)]) or refused (``error``)."""

    path: Path
    error: str | None = None
    topk: list[tuple[str, float]] | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": str(self.path), "error": self.error}
        return {"path": str(self.path), "topk": [{"class": c, "prob": round(p, 6)} for c, p in self.topk or []]}


def find_images(paths: Sequence[str | Path]) -> list[Item]:
    """The files to predict, in the order given (each folder's files sorted, recursively). A file given explicitly is
    tried whatever its name; a non-image file inside a folder is an :class:`Item` with an ``error`` already."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise PredictError(f"no such file or folder: {', '.join(missing)}")
    items: list[Item] = []
    for given in map(Path, paths):
        if not given.is_dir():
            items.append(Item(given))
            continue
        for f in sorted(given.rglob("*")):
            if not f.is_file() or any(part.startswith(".") for part in f.relative_to(given).parts):
                continue
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                items.append(Item(f))
            else:
                items.append(Item(f, error=f"not an image file (extension '{f.suffix or 'none'}'; images are "
                                           f"{' '.join(IMAGE_EXTENSIONS)}): skipped"))
    return items


def format_line(item: Item) -> str:
    """The readable line of one item: ``PATH  name 93.1%  other 4.0%`` or ``PATH  error: ...``."""
    if item.error is not None:
        return f"{item.path}  error: {item.error}"
    return f"{item.path}  " + "  ".join(f"{c} {100 * p:.1f}%" for c, p in item.topk or [])


class _Images:
    """A map-style dataset over items: ``(index, 3 x S x S tensor or None, error or None)`` -- a bad file is a
    result, never an exception, so one corrupt photo cannot stop its batch."""

    def __init__(self, items: Sequence[Item], transform: Callable[[Any], Any]) -> None:
        self.items, self.transform = list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Any, str | None]:
        try:
            return i, self.transform(load_image(self.items[i].path)), None
        except BadImageError as e:
            return i, None, e.problem
        except Exception as e:  # a decodable image the transform cannot take
            return i, None, f"cannot preprocess the image ({type(e).__name__}: {e})"


def _collate(batch: list[tuple[int, Any, str | None]]) -> list[tuple[int, Any, str | None]]:
    return batch


class RunModel:
    """A :class:`TrainedRun` as :func:`predict_items` uses a model (like :class:`fgvc.deploy.predictor.OnnxPredictor`):
    ``transform``, ``class_names``, ``num_workers``, ``probabilities(images) -> B, K``, ``describe()``."""

    def __init__(self, run: Any) -> None:
        self.run, self.class_names, self.num_workers = run, run.class_names, run.cfg["data"]["num_workers"]
        self.transform = build_transform(run.cfg, False, run.data_config)

    def probabilities(self, images: Any) -> Any:
        return self.run.infer_logits(images).prediction.float().softmax(1).cpu()  # B, K

    def describe(self) -> str:
        inference = f"; inference: {self.run.backend.describe()}" if self.run.backend is not None else ""
        return self.run.describe() + inference


def predict_items(model: Any, items: list[Item], topk: int, batch_size: int) -> Iterator[list[Item]]:
    """Fill in ``items`` batch by batch (yielding each batch's items in order) with the top-``topk`` classes of
    ``model`` (a :class:`RunModel` or an ``OnnxPredictor``)."""
    todo = [i for i, it in enumerate(items) if it.error is None]
    dataset = _Images([items[i] for i in todo], model.transform)
    workers = model.num_workers if len(todo) > batch_size else 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate)
    show = len(todo) >= PROGRESS_MIN_IMAGES and sys.stderr.isatty()
    k = min(topk, len(model.class_names))
    done = 0  # items before this index have been yielded
    with tqdm(total=len(todo), desc="predict", unit="img", disable=not show, leave=False, file=sys.stderr) as bar:
        for batch in loader:
            good = [(j, x) for j, x, err in batch if err is None]
            for j, _, err in batch:
                if err is not None:
                    items[todo[j]].error = err
            if good:
                images = torch.stack([x for _, x in good])  # B, 3, S, S
                probs = model.probabilities(images)  # B, K
                values, indices = probs.topk(k, dim=1)
                for (j, _), v, c in zip(good, values.tolist(), indices.tolist()):
                    items[todo[j]].topk = [(model.class_names[ci], float(p)) for ci, p in zip(c, v)]
            bar.update(len(batch))
            end = todo[batch[-1][0]] + 1
            yield items[done:end]
            done = end
    if done < len(items):
        yield items[done:]
