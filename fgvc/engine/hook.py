"""The trainer's plug-in points (after MMPretrain's ``engine/hooks``): what is not the loop itself -- TensorBoard,
the fit verdict, the end-of-training evaluation protocols, the epoch log line -- plugs in as a :class:`Hook`.

A hook overrides any of four methods; each gets the :class:`~fgvc.engine.trainer.Trainer` (its ``cfg``,
``run_dir``, ``env``, ``inference`` (the trained model as every later command sees it), ``val_ds``,
``optimizer``, ``progress``):

* :meth:`Hook.setup`, once the trainer is built, before anything is trained or written (refuse a bad recipe here);
* :meth:`Hook.after_epoch`, on the main process, with the epoch's ``metrics.jsonl`` row;
* :meth:`Hook.final_metrics`, on every process, adding keys to the dict that becomes ``final.json``;
* :meth:`Hook.after_final`, on the main process, once ``final.json`` is written.

Hooks run in the order given; :class:`EpochLog`, the one line per epoch in ``train.log``, is always the first.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fgvc.engine.trainer import Trainer

log = logging.getLogger("fgvc")

__all__ = ["Hook", "EpochLog"]


class Hook:
    """A plug-in of the training loop; every method does nothing unless overridden."""

    def setup(self, trainer: "Trainer") -> None:
        """Once, after the trainer is built (also on resume), before the first step."""

    def after_epoch(self, trainer: "Trainer", row: dict[str, Any]) -> None:
        """Main process, after each epoch's ``row`` is appended to ``metrics.jsonl``."""

    def final_metrics(self, trainer: "Trainer", results: dict[str, Any]) -> None:
        """Every process, at the end of training: add to ``results`` (``final.json``) in place."""

    def after_final(self, trainer: "Trainer", results: dict[str, Any]) -> None:
        """Main process, after ``final.json`` is written."""


class EpochLog(Hook):
    """``epoch 3/10 [main] loss 1.2345 train 61.0% val 55.0% lr 1.00e-02 12.3s 81.2 img/s``, plus the crop and drop
    of part-attention methods."""

    def after_epoch(self, trainer: "Trainer", row: dict[str, Any]) -> None:
        msg = (f"epoch {row['epoch'] + 1}/{trainer.total_epochs} [{row['stage']}] loss {row['loss']:.4f} "
               f"train {row['train_top1']:.1f}%" + (f" val {row['val_top1']:.1f}%" if "val_top1" in row else "")
               + f" lr {row['lr']:.2e} {row['epoch_seconds']:.1f}s {row['images_per_s']:.1f} img/s")
        if "crop_area" in row:  # part attention at work: how much its crops zoom and its drops erase
            msg += f" | crop box {row['crop_area']:.0%} of the image, dropped {row.get('drop_frac', 0.0):.0%}"
        log.info(msg)
