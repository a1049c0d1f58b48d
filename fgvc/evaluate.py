"""``python -m fgvc.evaluate RUN_DIR_OR_RECIPE [--protocol classification|retrieval|knn|linear] [--split test]
[--checkpoint last|best] [--tta] [--output DIR] [--backend auto|eager|channels_last|compile|torchscript|onnx]
[--set ...]``

Re-evaluates a trained run with a registered evaluation protocol (default ``classification``: top-1, top-5,
mean per-class accuracy and every prediction the method reports; ``retrieval``, ``knn``, ``linear`` score the
embeddings, see :mod:`fgvc.protocols.embeddings`) and writes its JSON and CSV tables under ``RUN/eval`` (or
``--output DIR``): ``<protocol>-<split>-<checkpoint>[-tta].json`` for every protocol (e.g.
``classification-test-last.json``, ``retrieval-test-best.json``), with ``-per_class.csv`` and ``-confusion.csv``
for classification. For the final test it says whether the
numbers reproduce the run's ``final.json``. A recipe (``.yaml``) instead of a run evaluates its pretrained backbone
with an untrained head (the frozen-features baseline); its results go to ``--output DIR``, by default
``<output.root>/<recipe name>-frozen/eval`` (e.g. ``runs/cub200_wsdan-frozen/eval``).

``--backend`` picks how the logits are computed (:mod:`fgvc.deploy.fast_infer`): ``auto`` is the fastest path that
agrees with PyTorch and pays back (ONNX Runtime on the CPU when an export is cached under ``RUN/cache/infer`` or the
split is large enough to repay exporting one, :mod:`fgvc.deploy.auto_backend`; else PyTorch); a line on stderr says
its choice and why, and the line ``inference: ...`` (and the JSON's ``inference`` key) says which path ran.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgvc.cli import add_backend, add_output, add_run_arguments, command, load_run, split_of
from fgvc.deploy.fast_infer import use_backend
from fgvc.engine.builder import flip_warnings
from fgvc.engine.run_state import read_final
from fgvc.protocols import build_protocol, split_roles


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-evaluate", description="Evaluate a trained fgvc run on a split.")
    add_run_arguments(ap)
    ap.add_argument("--protocol", default="classification",
                    help="registered evaluation protocol: classification (default), retrieval, knn, linear")
    ap.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    add_backend(ap)
    add_output(ap, "directory for the results (default RUN/eval; recipe: <output.root>/<recipe>-frozen/eval)",
               metavar="DIR")
    return ap.parse_args(argv)


def _reproduces(final: Path, metrics: dict, tta: bool, sets: list[str]) -> str | None:
    """One line comparing ``metrics`` with the run's final.json (None when final.json was made with other TTA; a note
    when it is missing or damaged)."""
    ref, note = read_final(final.parent)
    if ref is None:
        return f"  note: {note}"
    if ref.get("tta_flip", False) != tta:
        return None
    # final.json keeps 6 significant digits (fgvc.engine.rundir.round_float): a percentage is off by < 5e-5
    if all(abs((ref.get(k) or 0) - metrics[k]) < 1e-4 for k in ("top1", "top5", "mean_class_acc")):
        return "  reproduces final.json"
    return (f"  DIFFERS from final.json (top-1 {ref.get('top1')}): different data, --set overrides "
            f"({' '.join(sets) or 'none'}) or environment?")


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    protocol = build_protocol(args.protocol)
    run = load_run(args)
    roles = split_roles(run.cfg, args.split)
    split = roles["test"]
    tta = args.tta or run.cfg["eval"]["tta_flip"]
    dataset = run.dataset(split, protocol.needs_run_classes)
    use_backend(run, args.backend, n_images=len(dataset))  # auto exports only where this many images repay it
    for warning in flip_warnings(dataset, {"eval.tta_flip (--tta)": tta}):
        print(f"warning: {warning}", file=sys.stderr)
    result = protocol.evaluate(run, roles, tta)
    metrics = dict(result.metrics, split=split, checkpoint=None if run.recipe else args.checkpoint,
                   weights=run.weights, tta_flip=tta)
    logits_only = protocol.name == "classification"  # the embedding protocols always run the PyTorch model
    if logits_only:
        metrics["inference"] = run.backend.ran
    if run.recipe is not None:
        metrics["recipe"] = str(run.recipe)
    out = Path(args.output) if args.output else run.run_dir / "eval"
    stem = protocol.file_stem(split, args.checkpoint, tta)
    wrote = result.save(out, stem, metrics)
    size = f"{metrics['n_images']} images, " if "n_images" in metrics else ""
    print(f"{split} ({size}{run.describe()}, {protocol.name})")
    print("\n".join(result.lines))
    if logits_only:
        print(f"  inference: {run.backend.describe()}")
    final = run.run_dir / "final.json"
    if (protocol.name == "classification" and run.recipe is None and run.run_dir.is_dir() and args.checkpoint == "last"
            and split == split_of(run, None)):
        line = _reproduces(final, metrics, tta, args.sets)
        if line:
            print(line)
    print(wrote)


if __name__ == "__main__":
    sys.exit(main())
