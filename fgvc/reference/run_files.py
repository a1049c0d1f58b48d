"""The JSON keys of a run directory's files, each with a one-line meaning.

:mod:`fgvc.docs_gen` writes these tables into ``docs/reference/run-files.md``, and
``tests/reference/test_run_files.py`` trains a tiny run and fails on any key of its ``final.json``, ``metrics.jsonl``
records, ``environment.json`` or ``final.json``'s ``fit`` object that no table documents, so a key cannot be added
undocumented. A key written ``<head>`` stands for any head name of the method (``logits`` for the baseline, WS-DAN
``raw``, RA-CNN ``scale1``...): :func:`undocumented` matches it as a wildcard. Where the keys are written:
``fgvc/engine/trainer.py`` (``_end_epoch``, ``final``), ``fgvc/engine/validation.py``,
``fgvc/protocols/classification.py``, ``fgvc/metrics/fit_verdict.py``, ``fgvc/engine/environment.py`` and
``fgvc/continual/extend.py``. Nothing here imports torch.
"""
from __future__ import annotations

import re
from typing import Iterable

__all__ = ["FINAL", "FINAL_EXTEND", "FIT", "METRICS", "METRICS_METHOD", "ENVIRONMENT", "TABLES", "undocumented"]

FINAL: dict[str, str] = {
    "top1": "top-1 accuracy (percent) of the headline prediction on the test split, final-epoch weights",
    "top5": "top-5 accuracy (percent) on the test split",
    "mean_class_acc": "mean per-class accuracy (percent, over the classes present in the test split)",
    "n_images": "images in the test split",
    "prediction": "the head whose logits are the headline prediction (`logits` for most methods)",
    "<head>_top1": "top-1 (percent) of each head of the method on its own (e.g. `logits_top1`, WS-DAN `raw_top1`)",
    "seconds": "seconds the final test pass took",
    "split": "the split scored (`data.test_split`)",
    "weights": "`ema` when `train.ema` averaged the weights that were scored, else `model`",
    "epochs": "epochs trained",
    "steps": "optimizer steps trained",
    "train_seconds": "seconds spent training (sum of the epochs' times; evaluation and resumes' restarts excluded)",
    "best_val_top1": "best validation top-1 (percent) over the validated epochs; null without a validation split",
    "best_val_epoch": "1-based epoch of `best_val_top1` (the one `checkpoints/best.pt` holds); null without one",
    "bad_images": "unreadable images skipped (`data.on_bad_image: skip`), listed in `bad_images.tsv`",
    "tta_flip": "whether the test prediction averaged the image and its horizontal flip (`eval.tta_flip`)",
    "fit": "the over/underfitting verdict of `metrics.jsonl` (keys below); null for a model that was not trained",
}

FINAL_EXTEND: dict[str, str] = {
    "old_top1": "top-1 (percent) on the old classes' test images, each predicted among all classes",
    "new_top1": "top-1 (percent) on the added classes' test images, each predicted among all classes",
    "old_top1_before": "the extended run's own final.json top-1 (null when it scored another split)",
    "shots": "training images per added class (`--shots`)",
    "shot_seed": "the seed that picked the shots",
    "finetune_epochs": "fine-tune epochs after imprinting (`--finetune-epochs`; 0: imprinting only)",
    "forgetting": "what kept the old classes: `imprinting` (no fine-tune), `rehearsal`, `ewc` or `joint`",
    "rehearsal": "old images per old class replayed in the fine-tune (`--rehearsal`)",
    "ewc_lambda": "the EWC penalty's strength (`--ewc`), null without",
    "fisher_images": "old training images the EWC Fisher was computed on (0 without EWC)",
    "head": "the new run's classifier head (`linear`, `cosine`...)",
    "old_weights": "how the old classes' weights were set: `kept`, `imprinted`, `centred` or `normalised`",
    "cosine_scale": "the cosine head's scale `s` (null for a linear head)",
    "n_old_classes": "classes of the extended run",
    "n_new_classes": "classes added",
    "extended_from": "the run directory that was extended",
    "added": "the added data set's root (`--add`)",
    "added_name": "the added data set's layout name",
}

FIT: dict[str, str] = {
    "verdict": "`overfitting`, `underfitting`, `good fit`, `too short to tell`, `inconclusive` or "
               "`no validation split`",
    "gap": "train minus val top-1 (percentage points) at the last validated epoch; null without validation",
    "epoch": "1-based epoch where overfitting starts (as in train.log and `best_val_epoch`); null when none",
    "reason": "one clause: what in the curves gave the verdict",
    "remedies": "recipe changes to try, e.g. `train at least 3 epochs, validating each (train.eval_every=1)`",
    "gap_ci": "95 % interval of the gap from the validation split's size, points; null without validation",
    "val_images": "images in the validation split (`val_n` of metrics.jsonl); null without one",
}

METRICS: dict[str, str] = {
    "epoch": "0-based epoch (train.log and final.json count from 1)",
    "stage": "name of the `train.stages` entry the epoch belongs to (`main` without stages)",
    "step": "optimizer steps so far, all stages",
    "loss": "mean training loss over the epoch's images (the total the optimizer minimised)",
    "train_top1": "training top-1 (percent) over the epoch, augmented images, in train mode",
    "lr": "the largest learning rate of the optimizer's parameter groups at the epoch's end",
    "epoch_seconds": "seconds the epoch's training took (validation excluded)",
    "images_per_s": "training images per second, all processes",
    "skipped_steps": "steps skipped for a non-finite loss (`train.on_nan: skip`); only when some were",
    "val_top1": "validation top-1 (percent), one pass, no TTA; only on validated epochs (`train.eval_every`)",
    "val_<head>_top1": "validation top-1 (percent) of each head on its own",
    "val_loss": "mean cross-entropy of the headline prediction on the validation split",
    "val_loss_se": "standard error of `val_loss`",
    "val_n": "images in the validation split",
}

METRICS_METHOD: dict[str, str] = {  # the scalars a method's training step returns, averaged over the epoch's images
    "ce": "cross-entropy of the logits (baseline and the methods built on it)",
    "ce_raw": "WS-DAN: cross-entropy of the raw view",
    "attn_center": "WS-DAN: the attention-center loss",
    "crop_area": "WS-DAN: fraction of the image its attention crops keep",
    "drop_frac": "WS-DAN: fraction of the image its attention drops erase",
    "ce_scale1": "RA-CNN: cross-entropy of scale 1 (`ce_scale2`, `ce_scale3` likewise)",
    "ce_scale2": "RA-CNN: cross-entropy of scale 2",
    "ce_scale3": "RA-CNN: cross-entropy of scale 3",
    "ce_fused": "RA-CNN: cross-entropy of the fused head",
    "rank": "RA-CNN: the pairwise ranking loss between scales",
    "apn_pretrain": "RA-CNN: the attention-proposal pre-training loss (its APN stage)",
    "kd": "distillation (`distill`): the knowledge-distillation term",
    "student_loss": "distillation: the student's own loss on the labels",
    "ewc": "`fgvc.extend --ewc`: the EWC penalty",
    "center": "`loss.aux` center loss, weighted",
    "triplet": "`loss.aux` triplet loss, weighted",
    "multi_similarity": "`loss.aux` multi-similarity loss, weighted",
    "proxy_anchor": "`loss.aux` proxy-anchor loss, weighted",
}

ENVIRONMENT: dict[str, str] = {
    "started": "local time training (or this resume) started",
    "resumed": "whether this file was written by a `--resume`",
    "python": "Python version",
    "platform": "operating system and kernel (`platform.platform()`)",
    "cpu": "CPU name or architecture",
    "cpu_count": "logical CPUs of the machine",
    "torch_threads": "torch's intra-op CPU threads",
    "device": "torch device trained on (`cpu`, `cuda:0`...)",
    "gpu": "the GPU's name; null on CPU",
    "world_size": "processes in distributed training (1 without)",
    "cuda": "the CUDA version torch was built with; null on CPU",
    "packages": "versions of fgvc, torch, torchvision, timm, albumentations, numpy, pandas and pillow (null: absent)",
}

#: title -> (what the file is, its keys); the order of the generated page
TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "`final.json`": ("The final-epoch model on the test split (`fgvc.train`, `fgvc.extend`, `fgvc.prune`).", FINAL),
    "`final.json`: keys `fgvc.extend` adds": ("Only in a run made by `fgvc.extend`.", FINAL_EXTEND),
    "`final.json` `fit`": ("The over/underfitting verdict (`fgvc.metrics.fit_verdict`).", FIT),
    "`metrics.jsonl`": ("One JSON record a line, one line per epoch.", METRICS),
    "`metrics.jsonl`: method terms": ("A method's own loss terms and statistics, each averaged over the epoch's "
                                      "images; only for the methods (or `loss.aux`, `distill`) that have them.",
                                      METRICS_METHOD),
    "`environment.json`": ("What the run was trained with (`fgvc.engine.environment`).", ENVIRONMENT),
}


def _pattern(key: str) -> re.Pattern[str]:
    return re.compile("".join("[A-Za-z0-9_]+" if p.startswith("<") else re.escape(p)
                              for p in re.split(r"(<[^>]+>)", key) if p) + r"\Z")


def undocumented(keys: Iterable[str], *tables: dict[str, str]) -> list[str]:
    """The ``keys`` that no key of ``tables`` documents (``<head>`` in a documented key matches any name)."""
    patterns = [_pattern(k) for t in tables for k in t]
    return [k for k in keys if not any(p.match(k) for p in patterns)]
