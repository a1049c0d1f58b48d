"""``python -m fgvc.quantize RUN_DIR_OR_ONNX [--calib 256] [--per-channel | --per-tensor] [--output FILE] [--threads N]``

INT8 ONNX for CPU inference with ONNX Runtime (:mod:`fgvc.deploy.quantize`). Given a run directory, the fp32 ONNX
file is exported first (``RUN/export/model.onnx``, exactly as ``fgvc.export`` does, parity-checked); given an ONNX
file written by ``fgvc.export``, its metadata names the run whose images are used. Then:

* static INT8 (QDQ; ``quant_pre_process`` + ``quantize_static``, MinMax calibration on up to ``--calib`` images of
  the run's train split with its eval transform; per-channel weights by default, ``--per-tensor`` for one scale per
  tensor; where ONNX Runtime's symbolic shape inference cannot follow the graph -- WS-DAN, B-CNN, RA-CNN and CBAM at
  opset 18 -- the pre-processing uses onnx's own shape inference and prints a ``note:`` line saying so),
* dynamic INT8 (``quantize_dynamic``),

and a table of file size, top-1 on the test split and median batch-1 / batch-32 latency (``--threads`` intra-op
threads, default torch's thread count) for the three files, printed and written next to ``--output`` as ``.md`` and
``.json``. Kept as ``--output`` (default ``<fp32 stem>.int8.onnx``): the faster INT8 file that is within 1 point of
fp32 top-1, else the more accurate one; the table says which and why. Exit code 0, 1 when the fp32 export fails
its parity check, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgvc.cli import add_checkpoint, add_output, add_set, add_threads, add_weights, command, load_run, require_at_least
from fgvc.deploy.export import ParityError
from fgvc.deploy.quantize import quantize_run, run_of_onnx
from fgvc.errors import CheckFailed, DeployError

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-quantize", description="INT8 quantization (ONNX Runtime) of a trained "
                                 "run or of its fp32 ONNX export, with a size / top-1 / latency table.")
    ap.add_argument("target", help="run directory, or an .onnx file written by fgvc.export")
    ap.add_argument("--calib", type=int, default=256, metavar="N", help="calibration images of the train split "
                    "(default 256)")
    ap.add_argument("--per-channel", dest="per_channel", action="store_true", default=True,
                    help="per-channel weight quantization (the default: on lite0, per-tensor static INT8 lost 6.1 "
                         "points of CUB top-1, per-channel 0.3; benchmarks/results/deploy.md)")
    ap.add_argument("--per-tensor", dest="per_channel", action="store_false", help="one scale per weight tensor")
    add_output(ap, "the kept INT8 file (default <fp32 stem>.int8.onnx)", metavar="FILE", old_out=True)
    add_threads(ap, "ONNX Runtime's intra-op threads for the latency")
    ap.add_argument("--repeats", type=int, default=20, metavar="N", help="timed runs per latency (default 20)")
    ap.add_argument("--test-images", type=int, default=None, metavar="N",
                    help="score top-1 on the first N test images only (default: the whole split)")
    add_checkpoint(ap)
    add_weights(ap)
    add_set(ap)
    return ap.parse_args(argv)


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    target = Path(args.target)
    if not target.exists():
        raise DeployError(f"no such run directory or ONNX file: {target}")
    require_at_least(args, 1, "repeats")
    if target.suffix.lower() == ".onnx":
        run, fp32 = run_of_onnx(target, args.sets), target
    elif target.is_dir():
        run, fp32 = load_run(args, target), None
    else:
        raise DeployError(f"{target} is neither a run directory nor an .onnx file")
    try:
        result = quantize_run(run, Path(args.output) if args.output else None, fp32=fp32, calib=args.calib, per_channel=args.per_channel,
                              threads=args.threads, repeats=args.repeats, test_images=args.test_images)
    except ParityError as e:
        raise CheckFailed(f"the fp32 export disagrees with the PyTorch model, nothing quantized: {e}") from e
    print(result.table_md.read_text().rstrip())
    print(f"wrote {result.out}, {result.table_md.name}, {result.table_json.name}")


if __name__ == "__main__":
    sys.exit(main())
