"""Optional TensorBoard logging of a training run (recipe key ``train.tensorboard: true``) to ``RUN/tb/``.

Per epoch (the step is the 1-based epoch, as in train.log): ``train/loss``, ``train/top1``, ``val/top1`` and
``val/loss`` (on the epochs that were validated), ``lr/<i>_<group name>`` for every optimizer parameter group, and,
for methods with part attention (WS-DAN, RA-CNN ...: :attr:`Outputs.maps`), ``attention/val`` -- the mean attention
map over :data:`N_IMAGES` fixed validation images (evenly spaced over the split), drawn with
:mod:`fgvc.vis.overlay`; methods without part maps log ``activation/val``, the channel mean of their last feature
map (what ``fgvc.visualize`` draws for them). Runs without a validation split log scalars only.

``torch.utils.tensorboard`` is imported only when the key is on (through :func:`fgvc.extras.require`); without the
``tensorboard`` package that is a :class:`~fgvc.extras.MissingExtraError` naming ``pip install -e '.[explain]'``,
raised while the trainer is built, before anything is written. Only the main process writes. The writer opens at the first logged epoch with
``purge_step`` at that epoch, so a resumed run replaces the events written after its checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fgvc.engine.hook import Hook
from fgvc.extras import require
from fgvc.vis.attention_figure import maps_or_cam
from fgvc.vis.overlay import denormalize, heat_overlay, upsample_maps

if TYPE_CHECKING:
    from fgvc.engine.inference import TrainedRun
    from fgvc.engine.trainer import Trainer

__all__ = ["TensorBoardLog", "TensorBoard", "N_IMAGES", "SCALARS"]

N_IMAGES = 4
# metrics.jsonl key -> TensorBoard tag
SCALARS = {"loss": "train/loss", "train_top1": "train/top1", "val_top1": "val/top1", "val_loss": "val/loss"}


def _summary_writer() -> type:
    module = require("torch.utils.tensorboard", "tensorboard", "train.tensorboard=true (set it to false to train "
                     "without TensorBoard)")
    return module.SummaryWriter


class TensorBoardLog:
    """Writes one run's scalars and attention images to ``log_dir``; see the module docstring."""

    def __init__(self, log_dir: Path, run: "TrainedRun", val_ds: Any | None) -> None:
        self.writer_cls = _summary_writer()
        self.log_dir, self.run = Path(log_dir), run
        self.writer: Any = None
        self.images: torch.Tensor | None = None  # N, 3, H, W: the fixed validation images
        if val_ds is not None and len(val_ds) > 0:
            idx = sorted({int(round(x)) for x in np.linspace(0, len(val_ds) - 1, min(N_IMAGES, len(val_ds)))})
            with torch.random.fork_rng(devices=[]):  # loading must not move the training RNG (exact resume)
                self.images = torch.stack([val_ds[i][0] for i in idx])

    def log_epoch(self, row: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
        """Scalars of one metrics.jsonl ``row`` (its ``epoch`` is 0-based), the lr of every group, attention maps."""
        step = int(row["epoch"]) + 1
        if self.writer is None:
            self.writer = self.writer_cls(log_dir=str(self.log_dir), purge_step=step)
        for key, tag in SCALARS.items():
            value = row.get(key)
            if isinstance(value, (int, float)) and np.isfinite(value):
                self.writer.add_scalar(tag, float(value), step)
        for i, group in enumerate(optimizer.param_groups):
            self.writer.add_scalar(f"lr/{i}_{group.get('name') or 'group'}", float(group["lr"]), step)
        overlays, tag = self._attention()
        if overlays is not None:
            self.writer.add_images(tag, overlays, step, dataformats="NHWC")
        self.writer.flush()

    def _attention(self) -> tuple[np.ndarray | None, str]:
        """(``N, H, W, 3`` float overlays, tag): the mean part-attention map (``attention/val``), or for methods
        without part maps the channel mean of the last feature map (``activation/val``, as fgvc.visualize draws it)."""
        if self.images is None:
            return None, ""

        with torch.random.fork_rng(devices=[]):
            out = self.run.infer(self.images)
        if out.maps is None and out.feature_map is None:
            return None, ""
        maps, is_cam = maps_or_cam(out)
        heat = upsample_maps(maps.mean(1, keepdim=True).cpu(), self.images.shape[-2:])[:, 0]  # N, H, W
        mean, std = self.run.data_config["mean"], self.run.data_config["std"]
        overlays = np.stack([heat_overlay(denormalize(img, mean, std), h) for img, h in zip(self.images, heat)])
        return overlays, "activation/val" if is_cam else "attention/val"

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class TensorBoard(Hook):
    """The trainer's hook: a :class:`TensorBoardLog` to ``RUN/tb`` on the main process, when ``train.tensorboard``
    is on."""

    def __init__(self) -> None:
        self.log: TensorBoardLog | None = None

    def setup(self, trainer: "Trainer") -> None:
        if trainer.cfg["train"].get("tensorboard") and trainer.env.is_main:
            self.log = TensorBoardLog(Path(trainer.run_dir) / "tb", trainer.inference, trainer.val_ds)

    def after_epoch(self, trainer: "Trainer", row: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.log_epoch(row, trainer.optimizer)

    def after_final(self, trainer: "Trainer", results: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.close()
