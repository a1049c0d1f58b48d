"""``python -m fgvc.embed RUN_DIR_OR_RECIPE [--split test] [--checkpoint last|best] [--tta] [--set ...] --output FILE.npz``

Writes the embedding (``Method.infer(...).embedding``) of every image of a split, in dataset order, to one
``.npz`` file: ``embeddings`` (N x D float32), ``labels`` (N int64, indices into ``classes``), ``paths``
(N str, the image files as absolute paths, so the file means the same from any working directory) and ``classes`` (K str, the data set's class names). A recipe instead of a run embeds
with its pretrained backbone (the frozen-features baseline). The data set may hold species the model never saw
(``--set data.root=... data.name=...``): labels and classes are then those of that data set. Load it with
``numpy.load(FILE)`` (no pickle needed).
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from fgvc.cli import add_output, add_run_arguments, command, load_run, split_of
from fgvc.engine.checkpoint import atomic_write_bytes
from fgvc.errors import DataError
from fgvc.protocols.embeddings import split_embeddings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-embed", description="Write the embeddings of a split to a .npz file.")
    add_run_arguments(ap)
    ap.add_argument("--tta", action="store_true", help="average with the embedding of the horizontally flipped image")
    add_output(ap, "output .npz file (embeddings, labels, paths, classes)", required=True, metavar="FILE.npz",
               old_out=True)
    return ap.parse_args(argv)


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    run = load_run(args)
    split = split_of(run, args.split)
    ds = run.dataset(split, same_classes=False)
    if len(ds) == 0:
        raise DataError(f"split '{split}' of {run.cfg['data']['root']} has no images to embed; choose another --split")
    emb, labels = split_embeddings(run, split, args.tta or run.cfg["eval"]["tta_flip"], same_classes=False)
    if not run.runtime.env.is_main:
        return
    buf = io.BytesIO()
    np.savez(buf, embeddings=emb, labels=labels, paths=np.array([str(Path(s.path).absolute()) for s in ds.samples]),
             classes=np.array([str(c) for c in ds.classes]))
    out = Path(args.output)
    atomic_write_bytes(out, buf.getvalue())
    print(f"{split} ({run.describe()}): {emb.shape[0]} images x {emb.shape[1]} dimensions, {len(ds.classes)} classes")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
