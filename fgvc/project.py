"""``python -m fgvc.project RUN_DIR_OR_NPZ [--split test] [--method tsne|umap|pca] [--checkpoint last|best]
[--seed 0] [--top 5] --output FIG.png``

A 2-D map of a split's embeddings, coloured by class: t-SNE (van der Maaten & Hinton 2008, scikit-learn),
UMAP (McInnes et al. 2018, umap-learn when installed) or PCA (:mod:`fgvc.vis.projection`), drawn by
:mod:`fgvc.vis.embedding_map` with a legend of class names and the ``--top`` most-confused class pairs joined
centroid to centroid.

The input is a run directory (or checkpoint, or recipe: the embeddings of one :class:`TrainedRun` pass) or the
``.npz`` that ``python -m fgvc.embed`` writes (``embeddings``, ``labels``, ``paths``, ``classes``). Confused pairs
of a run come from its confusion matrix: ``eval/<split>-<checkpoint>-confusion.csv`` (``fgvc.evaluate``) or
``eval/confusion.csv`` (the trainer's final test of the last checkpoint), else the same pass's predictions; for an
npz, from kNN confusions in embedding space (k = 5, cosine). t-SNE needs scikit-learn (``pip install -e
'.[explain]'``), UMAP ``pip install umap-learn``; PCA needs neither.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fgvc.cli import add_output, add_run_arguments, command, load_run, split_of
from fgvc.errors import ConfigError, DataError, EmbeddingError
from fgvc.metrics.accuracy import confusion_matrix
from fgvc.metrics.confusions import confused_pairs, knn_confusion, read_confusion_csv
from fgvc.vis.embedding_map import draw_embedding_map
from fgvc.vis.projection import PROJECTIONS, project_embeddings

__all__ = ["main", "parse_args", "load_npz", "run_embeddings"]

NPZ_KEYS = ("embeddings", "labels", "classes")


def parse_args(argv: list[str] | None) -> argparse.Namespace:

    ap = argparse.ArgumentParser(prog="fgvc-project", description="Draw a 2-D map (t-SNE, UMAP, PCA) of embeddings.")
    add_run_arguments(ap, "run directory, checkpoint file or recipe (the embeddings of one pass), or the .npz file "
                          "that fgvc embed writes")
    ap.add_argument("--method", default="tsne", choices=PROJECTIONS, help="projection (default tsne)")
    ap.add_argument("--seed", type=int, default=0, help="random seed of t-SNE / UMAP (default 0)")
    ap.add_argument("--top", type=int, default=5, help="most-confused class pairs to mark (default 5; 0: none)")
    add_output(ap, "output figure (PNG)", required=True, metavar="FIG.png", old_out=True)
    return ap.parse_args(argv)


def load_npz(path: str | Path) -> tuple[Any, Any, list[str]]:
    """(embeddings ``N, D``, labels ``N``, class names) of an ``fgvc.embed`` file; a clear error otherwise."""


    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise EmbeddingError(f"{path} lacks the array(s) {missing} (it has {sorted(z.files)}); give the .npz "
                                     "that python -m fgvc.embed writes (embeddings, labels, paths, classes)")
            emb, labels, classes = z["embeddings"], z["labels"].astype(np.int64), [str(c) for c in z["classes"]]
    except (OSError, ValueError) as exc:
        raise EmbeddingError(f"cannot read {path} as a .npz file ({exc}); give the file python -m fgvc.embed "
                             "wrote") from None
    if emb.ndim != 2 or len(emb) != len(labels):
        raise EmbeddingError(f"{path}: embeddings {emb.shape} and labels {labels.shape} do not match (N x D and N)")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise EmbeddingError(f"{path}: labels {labels.min()}..{labels.max()} do not index its {len(classes)} classes")
    return emb, labels, classes


def _run_confusion(run: Any, split: str, checkpoint: str, collected: Any, classes: list[str]) -> tuple[Any, str]:
    """The run's confusion matrix of ``split`` and where it came from (a CSV, or this pass's predictions)."""
    # fgvc.evaluate's file (and its name before the one naming scheme, for older runs)
    candidates = [run.run_dir / "eval" / f"classification-{split}-{checkpoint}-confusion.csv",
                  run.run_dir / "eval" / f"{split}-{checkpoint}-confusion.csv"] if run.run_dir else []
    if run.run_dir and run.recipe is None and split == split_of(run, None) and checkpoint == "last":
        candidates.append(run.run_dir / "eval" / "confusion.csv")
    for path in candidates:
        cm = read_confusion_csv(path, classes)
        if cm is not None:
            return cm, f"{split} confusions ({path.relative_to(run.run_dir)})"
    pred = collected.prediction.argmax(1).numpy()
    return confusion_matrix(pred, collected.targets.numpy(), len(classes)), f"{split} confusions"


def run_embeddings(run: Any, split: str, checkpoint: str) -> tuple[Any, Any, list[str], Any, str]:
    """(embeddings, labels, classes, confusion matrix or None, its source) of one pass over ``split``."""
    ds = run.dataset(split, same_classes=False)
    if len(ds) == 0:
        raise DataError(f"split '{split}' of {run.cfg['data']['root']} has no images; choose another --split")
    classes = [str(c) for c in ds.classes]
    same = classes == [str(c) for c in run.class_names]
    got = run.collect(split, ["embedding", "logits"] if same else ["embedding"], same_classes=False)
    cm, source = _run_confusion(run, split, checkpoint, got, classes) if same else (None, "")
    return got.embedding.numpy(), got.targets.numpy(), classes, cm, source


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    target = Path(args.target)
    if args.top < 0:
        raise ConfigError("--top must be >= 0 (the number of confused pairs to mark)")
    if target.suffix == ".npz":
        if args.split or args.checkpoint != "last" or args.sets:
            raise ConfigError(f"--split, --checkpoint and --set apply to a run; {target} already holds the embeddings "
                              "of one split (python -m fgvc.embed RUN --split ... --output FILE.npz makes another)")
        emb, labels, classes = load_npz(target)
        cm, source, where = knn_confusion(emb, labels, len(classes)), "kNN confusions (k=5)", target.name
    else:
        run = load_run(args, target)
        split = split_of(run, args.split)
        emb, labels, classes, cm, source = run_embeddings(run, split, args.checkpoint)
        if cm is None:  # other species than the model's: no predictions to confuse
            cm, source = knn_confusion(emb, labels, len(classes)), "kNN confusions (k=5)"
        where = f"{run.run_dir.name if run.run_dir else target.name}, {split} ({run.describe()})"
    pairs = confused_pairs(cm, args.top) if args.top else []
    points = project_embeddings(emb, args.method, args.seed)
    title = f"{where}: {args.method.upper() if args.method != 'tsne' else 't-SNE'} of {len(emb)} embeddings " \
            f"({emb.shape[1]}-d), {len(set(labels.tolist()))} classes"
    out = draw_embedding_map(points, labels, classes, args.output, pairs, title, source)
    for r, (i, j, n) in enumerate(p.unordered() for p in pairs):
        print(f"{r + 1}. {classes[i]} <-> {classes[j]}: {n} {source}")
    print(out)


if __name__ == "__main__":
    sys.exit(main())
