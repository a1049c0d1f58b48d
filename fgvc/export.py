"""``python -m fgvc.export RUN_DIR --format onnx|torchscript [--opset N] [--img-size S] [--static-batch [N]]
[--checkpoint last|best] [--output FILE]``

Writes the run's headline prediction (``Method.infer(images).logits[headline]``, what ``final.json``'s top-1 scores)
as an ONNX file (torch's dynamo exporter, opset 18 by default, dynamic batch axis unless ``--static-batch``) or a
TorchScript file (``torch.jit.trace``), with the preprocessing and the class names inside (ONNX ``metadata_props``
``img_size``, ``resize``, ``crop_pct``, ``mean``, ``std``, ``class_names``, ...; TorchScript ``fgvc.json``).
Default destination: ``RUN/export/model.onnx`` or ``RUN/export/model.pt``.

Then it runs the file (ONNX Runtime CPU / ``torch.jit.load``) and the PyTorch model on up to 64 images of the run's
test split (``--parity-images``; 0 skips) and prints the largest logit difference and the top-1 agreement
(tolerance: :mod:`fgvc.deploy.parity`). Exit code 0 when they agree, 1 when they do not (the file is then kept as
``<name>.parity-failed<suffix>``, never under the requested name), 2 for a usage error (a missing checkpoint, an
unknown format, an ``--img-size`` the backbone cannot take), with nothing written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgvc.cli import add_output, add_run_arguments, command, load_run, trained_target
from fgvc.deploy.export import FORMATS, export_run
from fgvc.errors import CheckFailed, DeployError

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-export", description="Export a trained run to ONNX or TorchScript, "
                                 "preprocessing included, and check it against PyTorch.")
    add_run_arguments(ap, "run directory (or a checkpoint file) of a trained run")
    ap.add_argument("--format", default="onnx", help="onnx (default) or torchscript")
    ap.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18, the dynamo exporter's own)")
    ap.add_argument("--img-size", type=int, default=None, metavar="S",
                    help="input side of the exported model (default: the run's eval input size)")
    ap.add_argument("--static-batch", type=int, nargs="?", const=1, default=None, metavar="N",
                    help="fix the batch axis at N (default 1 when given without N), e.g. for TensorRT; ONNX only")
    ap.add_argument("--parity-images", type=int, default=64, metavar="N",
                    help="images for the parity check (default 64; 0 skips it)")
    add_output(ap, "output file (default RUN/export/model.onnx|.pt)", metavar="FILE", old_out=True)
    return ap.parse_args(argv)


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    if args.format not in FORMATS:
        raise DeployError(f"unknown --format '{args.format}': choose {' or '.join(FORMATS)}")
    target = trained_target(args.target, DeployError)
    if args.parity_images < 0:
        raise DeployError(f"--parity-images must be >= 0, got {args.parity_images}")
    run = load_run(args, target)
    result = export_run(run, args.format, Path(args.output) if args.output else None, opset=args.opset, img_size=args.img_size,
                        static_batch=args.static_batch, split=args.split, n_parity=args.parity_images)
    meta = result.metadata
    dynamic = meta["batch"] == "dynamic"
    batch = "dynamic batch" if dynamic else f"static batch {meta['batch']}"
    opset = f" opset {meta['opset']}" if meta["opset"] else ""
    size = meta["img_size"]
    print(f"exported {meta['fgvc_method']} ({meta['backbone']}, {run.describe()}) prediction '{result.prediction}' "
          f"to {result.path}: {args.format}{opset}, input {'B' if dynamic else meta['batch']} x 3 x {size} x {size} "
          f"({batch}), "
          f"{len(meta['class_names'])} classes, {meta['exporter']}")
    if result.parity is None:
        print("parity: skipped (--parity-images 0)")
        return
    print(result.parity.line())
    if not result.passed:
        raise CheckFailed(f"the exported file disagrees with the PyTorch model beyond the tolerance; it is kept as "
                          f"{result.path} for inspection, not as the requested file")


if __name__ == "__main__":
    sys.exit(main())
