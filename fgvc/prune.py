"""``python -m fgvc.prune RUN_DIR --amount 0.3 [--finetune-epochs E] [--checkpoint last|best]
[--importance l1|l2|taylor] [--latency-threads N] [--set ...] --output NEW_RUN``

Structured channel pruning of a trained run with torch-pruning's DepGraph (Fang et al. 2023, "DepGraph: Towards Any
Structural Pruning"): every prunable channel group of the backbone loses ``--amount`` of its channels (per layer),
ranked by their L1 norm (Li et al. 2017, "Pruning Filters for Efficient ConvNets"), L2 norm or a first-order Taylor
estimate; the channels are really removed, so parameters, MACs and latency fall. The backbone's output width stays,
so every method's heads and part layers keep their sizes. Then optionally ``E`` fine-tune epochs with the run's recipe
(lr a tenth of the run's unless ``--set train.lr=...``).

``NEW_RUN`` is an ordinary run directory (an existing one is refused): ``fgvc.evaluate``, ``fgvc.predict`` and
``fgvc.visualize`` work on it and ``fgvc.train --resume NEW_RUN`` continues a fine-tune cut short. The before/after
table (parameters, MACs, batch-1 CPU latency, test top-1) is printed and written to ``NEW_RUN/prune.json``. Needs the
``deploy`` extra (``pip install -e '.[deploy]'``). Details: :mod:`fgvc.deploy.prune_run`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgvc.cli import add_new_run_arguments, command, run_logged
from fgvc.deploy.prune_run import PruneRequest, prune_run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-prune", description="Structured channel pruning of a trained run "
                                                                "(and an optional short fine-tune).")
    add_new_run_arguments(ap)
    ap.add_argument("--amount", type=float, required=True,
                    help="fraction of the channels of every prunable channel group to remove, in (0, 1), e.g. 0.3")
    ap.add_argument("--finetune-epochs", type=int, default=0, metavar="E",
                    help="fine-tune epochs after pruning, with the run's recipe (default 0: prune only)")
    ap.add_argument("--importance", default="l1", choices=["l1", "l2", "taylor"],
                    help="channel ranking: l1 / l2 norm of the weights, or taylor |w * dL/dw| on a few training "
                         "batches (default l1)")
    ap.add_argument("--latency-threads", type=int, default=None, metavar="N",
                    help="CPU threads for the batch-1 latency (default: the run's train.threads, else torch's)")
    return ap.parse_args(argv)


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    req = PruneRequest(Path(args.run), Path(args.output), args.amount, args.finetune_epochs, args.checkpoint,
                       args.importance, tuple(args.sets), args.latency_threads)
    run_logged(prune_run, req)  # logs what it wrote, as train does


if __name__ == "__main__":
    sys.exit(main())
