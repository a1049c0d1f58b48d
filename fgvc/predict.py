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
from typing import Any

from fgvc.cli import add_batch_size, add_model_source_arguments, command, load_run, model_source, require_at_least
from fgvc.deploy.fast_infer import use_backend
from fgvc.deploy.predictor import OnnxPredictor
from fgvc.deploy.run_predictor import IMAGE_EXTENSIONS, Item, RunModel, find_images, format_line, predict_items
from fgvc.errors import CheckFailed, PredictError

# the library part lives in fgvc.deploy.run_predictor (and PredictError in fgvc.errors); importable here as before
__all__ = ["IMAGE_EXTENSIONS", "Item", "PredictError", "find_images", "format_line", "main", "parse_args"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-predict", description="Predict the classes of new images with a trained "
                                 "fgvc run.")
    add_model_source_arguments(ap)
    ap.add_argument("paths", nargs="+", metavar="IMAGE_OR_DIR", help="images, or folders searched recursively")
    ap.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    ap.add_argument("--json", action="store_true", help="one JSON object per line and image")
    add_batch_size(ap, 32)
    return ap.parse_args(argv)


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    require_at_least(args, 1, "topk", "batch_size")
    target, is_onnx = model_source(args, PredictError)
    items = find_images(args.paths)
    if not items:  # nothing to predict: exit 1 as when no file could be read
        raise CheckFailed(f"no files found in {', '.join(args.paths)}")
    if is_onnx:
        model: Any = OnnxPredictor(target, args.img_size, args.mean, args.std, args.crop_pct, args.classes)
    else:
        trained = load_run(args, target)
        use_backend(trained, args.backend, n_images=sum(it.error is None for it in items))  # auto: export if it pays
        model = RunModel(trained)
    for chunk in predict_items(model, items, args.topk, args.batch_size):
        for item in chunk:
            print(json.dumps(item.as_dict()) if args.json else format_line(item), flush=True)
    n_ok = sum(it.error is None for it in items)
    summary = (f"predicted {n_ok} of {len(items)} file(s) with {target} ({model.describe()})"
               + (f"; {len(items) - n_ok} could not be read" if n_ok < len(items) else ""))
    if not n_ok:
        raise CheckFailed(summary)
    print(summary, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
