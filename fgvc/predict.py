"""``python -m fgvc.predict RUN_DIR_OR_ONNX IMAGE_OR_DIR ... [--topk 5] [--json] [--batch-size 32] [--checkpoint ...]
[--backend auto|eager|channels_last|compile|torchscript|onnx]``

Class names and probabilities of a trained run for new photos. Folders are searched recursively for images
(:data:`IMAGE_EXTENSIONS`, any case; hidden files are ignored); other files found there, and any file that is not a
decodable image, get an error line instead of a prediction, and the rest go on. Each image is preprocessed exactly as
the run's evaluation split (:func:`fgvc.engine.builder.build_transform` with the run's data config: resize of the
shorter side, centre crop, the backbone's normalisation), batched through :meth:`TrainedRun.infer`; the
probabilities are the softmax of the headline logits. The run's own data set is not needed. ``--backend`` picks how the
logits are computed (:mod:`fgvc.deploy.fast_infer`; ``auto``: ONNX Runtime on the CPU where it pays back -- an export
already cached under ``RUN/cache/infer``, or enough images to repay exporting one, never a few photos -- checked
against PyTorch on the first batch, else PyTorch); one stderr line says its choice and why, the summary which path
ran.

An ``.onnx`` file (fp32 or INT8, from ``fgvc.export`` / ``fgvc.quantize``) predicts the same way on ONNX Runtime, its
preprocessing and class names read from the file's metadata (:class:`fgvc.deploy.predictor.OnnxPredictor`); a file
without fgvc metadata needs ``--img-size S --mean R G B --std R G B`` (``--crop-pct``, ``--classes FILE`` optional).

Output, one line per image in input order (folders sorted): ``PATH  name 93.1%  other 4.0% ...`` or
``PATH  error: ...``; with ``--json`` one object per line, ``{"path": ..., "topk": [{"class": ..., "prob": ...}]}``
or ``{"path": ..., "error": ...}``. A summary goes to stderr. Exit code 0 when at least one image was predicted,
1 when none was, 2 for a usage error (a path that does not exist, a bad flag).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from fgvc.cli import friendly, trained_target
from fgvc.data.folder import IMAGE_EXTENSIONS  # the extensions the folder reader takes
from fgvc.deploy.fast_infer import add_backend_argument
from fgvc.errors import UserError

__all__ = ["IMAGE_EXTENSIONS", "Item", "PredictError", "find_images", "format_line", "main"]

PROGRESS_MIN_IMAGES = 64  # a progress bar (on a terminal) from this many images on


class PredictError(UserError, ValueError):
    """A prediction request that cannot run as given (a missing path, a bad flag, a recipe instead of a run)."""


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


class _Images:
    """A map-style dataset over items: ``(index, 3 x S x S tensor or None, error or None)`` -- a bad file is a
    result, never an exception, so one corrupt photo cannot stop its batch."""

    def __init__(self, items: Sequence[Item], transform: Callable[[Any], Any]) -> None:
        self.items, self.transform = list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Any, str | None]:
        from fgvc.data.base import BadImageError, load_image

        try:
            return i, self.transform(load_image(self.items[i].path)), None
        except BadImageError as e:
            return i, None, e.problem
        except Exception as e:  # a decodable image the transform cannot take
            return i, None, f"cannot preprocess the image ({type(e).__name__}: {e})"


def _collate(batch: list[tuple[int, Any, str | None]]) -> list[tuple[int, Any, str | None]]:
    return batch


class RunModel:
    """A :class:`TrainedRun` as :func:`_predict` uses a model (like :class:`fgvc.deploy.predictor.OnnxPredictor`):
    ``transform``, ``class_names``, ``num_workers``, ``probabilities(images) -> B, K``, ``describe()``."""

    def __init__(self, run: Any) -> None:
        from fgvc.engine.builder import build_transform

        self.run, self.class_names, self.num_workers = run, run.class_names, run.cfg["data"]["num_workers"]
        self.transform = build_transform(run.cfg, False, run.data_config)

    def probabilities(self, images: Any) -> Any:
        return self.run.infer_logits(images).prediction.float().softmax(1).cpu()  # B, K

    def describe(self) -> str:
        inference = f"; inference: {self.run.backend.describe()}" if self.run.backend is not None else ""
        return self.run.describe() + inference


def _predict(run: Any, items: list[Item], topk: int, batch_size: int) -> Iterator[list[Item]]:
    """Fill in ``items`` batch by batch (yielding each batch's items in order) with the top-``topk`` classes."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    todo = [i for i, it in enumerate(items) if it.error is None]
    dataset = _Images([items[i] for i in todo], run.transform)
    workers = run.num_workers if len(todo) > batch_size else 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate)
    show = len(todo) >= PROGRESS_MIN_IMAGES and sys.stderr.isatty()
    k = min(topk, len(run.class_names))
    done = 0  # items before this index have been yielded
    with tqdm(total=len(todo), desc="predict", unit="img", disable=not show, leave=False, file=sys.stderr) as bar:
        for batch in loader:
            good = [(j, x) for j, x, err in batch if err is None]
            for j, _, err in batch:
                if err is not None:
                    items[todo[j]].error = err
            if good:
                images = torch.stack([x for _, x in good])  # B, 3, S, S
                probs = run.probabilities(images)  # B, K
                values, indices = probs.topk(k, dim=1)
                for (j, _), v, c in zip(good, values.tolist(), indices.tolist()):
                    items[todo[j]].topk = [(run.class_names[ci], float(p)) for ci, p in zip(c, v)]
            bar.update(len(batch))
            end = todo[batch[-1][0]] + 1
            yield items[done:end]
            done = end
    if done < len(items):
        yield items[done:]


def format_line(item: Item) -> str:
    """The readable line of one item: ``PATH  name 93.1%  other 4.0%`` or ``PATH  error: ...``."""
    if item.error is not None:
        return f"{item.path}  error: {item.error}"
    return f"{item.path}  " + "  ".join(f"{c} {100 * p:.1f}%" for c, p in item.topk or [])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-predict", description="Predict the classes of new images with a trained "
                                 "fgvc run.")
    ap.add_argument("target", help="run directory (or a checkpoint file) of a trained run, or an .onnx file")
    ap.add_argument("paths", nargs="+", metavar="IMAGE_OR_DIR", help="images, or folders searched recursively")
    ap.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    ap.add_argument("--json", action="store_true", help="one JSON object per line and image")
    ap.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    add_model_source_arguments(ap)
    return ap.parse_args(argv)


def add_model_source_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags that pick the model from a run directory or an .onnx file (predict and serve share them)."""
    ap.add_argument("--checkpoint", default="last", choices=["last", "best"], help="with a run directory")
    ap.add_argument("--weights", default="auto", choices=["auto", "ema", "model"],
                    help="auto: EMA weights when the run kept an EMA (as final.json did), else the model's")
    ap.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="override recipe keys, e.g. train.device=cpu")
    add_backend_argument(ap)
    onnx = ap.add_argument_group("an .onnx file without fgvc metadata (these override the file's metadata)")
    onnx.add_argument("--img-size", type=int, default=None, metavar="S", help="input side S (centre crop)")
    onnx.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="normalisation mean")
    onnx.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="normalisation std")
    onnx.add_argument("--crop-pct", type=float, default=None, help="crop share: resize to S / crop-pct (default 0.875)")
    onnx.add_argument("--classes", type=Path, default=None, metavar="FILE", help="class names, one per line")


ONNX_FLAGS = ("img_size", "mean", "std", "crop_pct", "classes")


def model_source(args: argparse.Namespace, error: type[UserError]) -> tuple[Path, bool]:
    """The model file or run of :func:`add_model_source_arguments`' flags and whether it is an .onnx file; flags that
    do not apply to it are refused with ``error``."""
    target = trained_target(args.target, error)
    is_onnx = target.suffix.lower() == ".onnx" and target.is_file()
    given = [f"--{f.replace('_', '-')}" for f in ONNX_FLAGS if getattr(args, f) is not None]
    if given and not is_onnx:
        raise error(f"{' '.join(given)} apply to an .onnx file only; a run carries its own preprocessing")
    if is_onnx and args.backend != "auto":
        raise error(f"--backend {args.backend} applies to a run; an .onnx file runs on ONNX Runtime")
    return target, is_onnx


@friendly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fgvc.engine.inference import TrainedRun

    if args.topk < 1:
        raise PredictError(f"--topk must be >= 1, got {args.topk}")
    if args.batch_size < 1:
        raise PredictError(f"--batch-size must be >= 1, got {args.batch_size}")
    target, is_onnx = model_source(args, PredictError)
    items = find_images(args.paths)
    if not items:
        print(f"error: no files found in {', '.join(args.paths)}", file=sys.stderr)
        return 1
    if is_onnx:
        from fgvc.deploy.predictor import OnnxPredictor

        run: Any = OnnxPredictor(target, args.img_size, args.mean, args.std, args.crop_pct, args.classes)
    else:
        trained = TrainedRun.load(target, args.checkpoint, args.sets, args.weights)
        trained.use_backend(args.backend, n_images=sum(it.error is None for it in items))  # auto: export if it pays
        run = RunModel(trained)
    for chunk in _predict(run, items, args.topk, args.batch_size):
        for item in chunk:
            print(json.dumps(item.as_dict()) if args.json else format_line(item), flush=True)
    n_ok = sum(it.error is None for it in items)
    print(f"predicted {n_ok} of {len(items)} file(s) with {target} ({run.describe()})"
          + (f"; {len(items) - n_ok} could not be read" if n_ok < len(items) else ""), file=sys.stderr)
    return 0 if n_ok else 1


if __name__ == "__main__":
    sys.exit(main())
