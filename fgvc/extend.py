"""``python -m fgvc.extend RUN_DIR --add ROOT [--add-set name=READER args.KEY=VALUE ...] [--shots K]
[--shot-seed S] [--finetune-epochs E] [--ewc LAMBDA | --rehearsal N] [--old-weights imprinted|centred|normalised]
[--checkpoint last|best] [--set ...] --output NEW_RUN``

Adds the classes of the data set at ``ROOT`` to a trained run without retraining it: weight imprinting (Qi, Brown &
Lowe 2018), each new class's weight the normalised mean embedding of ``K`` training images (``--shot-seed S`` draws
another ``K``); then optionally ``E`` fine-tune epochs on the new shots and the old images (all of them;
``--rehearsal N`` per old class; or none with ``--ewc LAMBDA``, Kirkpatrick et al. 2017). ``ROOT`` is any layout fgvc
reads (CUB, Flowers, image folders, a CSV manifest), detected from the files or named with ``--add-set name=...``; it
needs a train split (the shots) and the run's test split (``data.test_split``). ``--set`` overrides keys of the run's
recipe for loading it and for the new run (e.g. ``train.device=cpu``, ``train.lr`` of the fine-tune).

A linear head becomes a cosine head whose old classes are imprinted too, from all their training images
(``--old-weights centred``: the linear head kept, every class imprinted from embeddings centred on the old training
images' mean; ``--old-weights normalised``: the normalised linear weights instead); a cosine, ArcFace or CosFace head
keeps its old rows, so old-class logits do not change.

``NEW_RUN`` is a new, ordinary run directory (an existing one is refused): ``fgvc.evaluate``, ``fgvc.embed`` and
``fgvc.visualize`` work on it; its ``final.json`` has ``top1`` over the old and new test images together,
``old_top1`` and ``new_top1`` (each predicted among all classes) and ``old_top1_before``. Details:
:mod:`fgvc.continual.extend`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgvc.cli import add_new_run_arguments, command, run_logged
from fgvc.continual.extend import ExtendRequest, extend_run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-extend", description="Add classes to a trained run by weight imprinting "
                                                                 "(and an optional short fine-tune).")
    add_new_run_arguments(ap)
    ap.add_argument("--add", required=True, metavar="ROOT",
                    help="data set with the new classes (any layout fgvc reads)")
    ap.add_argument("--add-set", dest="add_sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="the added set's reader and its data.args: name=cub200|flowers102|folder|csv (default: "
                         "detected), args.KEY=VALUE, e.g. --add-set name=csv args.manifest=new_birds.csv")
    ap.add_argument("--shots", type=int, default=5, help="training images per new class (the first K in a seeded "
                                                         "order; default 5)")
    ap.add_argument("--shot-seed", type=int, default=None, metavar="S",
                    help="seed of the shots' order (default: the run's seed); another S draws other shots")
    ap.add_argument("--finetune-epochs", type=int, default=0, metavar="E",
                    help="fine-tune epochs after imprinting (default 0: imprinting only)")
    forget = ap.add_mutually_exclusive_group()
    forget.add_argument("--ewc", type=float, default=None, metavar="LAMBDA",
                        help="fine-tune on the new shots only, with the EWC penalty LAMBDA/2 * sum F (w - w_old)^2")
    forget.add_argument("--rehearsal", type=int, default=None, metavar="N",
                        help="replay N old images per old class in the fine-tune (default: all old images)")
    ap.add_argument("--old-weights", default="imprinted", choices=["imprinted", "centred", "normalised"],
                    help="a linear head's old classes: imprinted from all their training images in a cosine head "
                         "(default), imprinted from centred embeddings (old and new classes) in the linear head "
                         "(more old images kept, fewer new ones with 5 shots), or the linear weights normalised "
                         "(which hands most images to the new classes)")
    return ap.parse_args(argv)


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    req = ExtendRequest(Path(args.run), Path(args.add), Path(args.output), args.shots, args.finetune_epochs, args.ewc,
                        args.rehearsal, args.checkpoint, tuple(args.sets), tuple(args.add_sets), args.old_weights,
                        args.shot_seed)
    run_logged(extend_run, req)  # logs what it wrote, as train does


if __name__ == "__main__":
    sys.exit(main())
