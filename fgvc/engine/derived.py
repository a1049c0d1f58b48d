"""A new run that starts from another run's (changed) weights instead of the recipe's initialisation.

``fgvc.extend`` (new classes imprinted into the head) and ``fgvc.prune`` (channels removed) both end with an ordinary
run directory that the ordinary :class:`~fgvc.engine.trainer.Trainer` fine-tunes, evaluates and checkpoints, so that
``fgvc.evaluate``, ``fgvc.predict``, ``fgvc.visualize`` and ``fgvc.train --resume`` work on it. The shared steps:

* :func:`finetune_config`: the old run's config with the fine-tune's schedule (``train.epochs = max(E, 1)``, the lr
  a tenth of the run's, no warm-up, no ``max_steps``, no stages) for every key the user did not ``--set``, and
  ``model.pretrained: false`` (the weights are the checkpoint's);
* :func:`derived_trainer`: the trainer for the new directory, built while the log is held (a new run that cannot start
  leaves no directory behind); on leaving the block the directory, ``config.yaml`` and ``train.log`` (from the first
  line logged while building) are written;
* :func:`load_weights`: the weights into the trainer's method and its EMA, after narrowing both to a pruned
  architecture when given one (:mod:`fgvc.engine.pruned_arch`);
* :func:`save_start`: a ``checkpoints/last.pt`` at step 0, so a fine-tune killed in its first epoch resumes
  (``fgvc.train --resume NEW_RUN``) from the derived weights rather than being lost.
"""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from torch import Tensor

from fgvc import config
from fgvc.engine.distributed import DistEnv
from fgvc.engine.hook import Hook
from fgvc.engine.pruned_arch import apply_pruned
from fgvc.engine.run_state import locate_checkpoint
from fgvc.engine.rundir import attach_run_log, buffered_log
from fgvc.engine.trainer import Trainer
from fgvc.errors import CheckpointError, ConfigError

__all__ = ["check_derivation", "check_new_output", "FINETUNE_LR_SCALE", "finetune_config",
           "derived_trainer", "load_weights", "save_start"]

FINETUNE_LR_SCALE = 0.1  # the fine-tune's lr relative to the run's train.lr, unless --set train.lr=...


def finetune_config(cfg: dict[str, Any], epochs: int, overrides: Iterable[str] = (),
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of ``cfg`` with the fine-tune's schedule (module docstring) and ``extra`` defaults
    (``{"section.key": value}``), each unless ``overrides`` (``--set`` items) name that key."""
    cfg = copy.deepcopy(cfg)
    keys = {config.parse_override(item)[0] for item in overrides}
    tr = cfg["train"]
    defaults = {"train.epochs": max(epochs, 1), "train.lr": tr["lr"] * FINETUNE_LR_SCALE, "train.warmup_epochs": 0,
                "train.max_steps": None, "train.stages": [], **(extra or {})}
    for key, value in defaults.items():
        if key not in keys:
            section, leaf = key.split(".")
            cfg[section][leaf] = value
    cfg["model"].update(pretrained=False, pretrained_file=None)  # the weights are the checkpoint's
    return cfg


@contextlib.contextmanager
def derived_trainer(cfg: dict[str, Any], output: Path, hooks: Sequence[Hook] = ()) -> Iterator[Trainer]:
    """``with derived_trainer(cfg, out, hooks) as trainer: load_weights(trainer, ...)``: see the module docstring
    (``hooks``: :func:`fgvc.hooks.training_hooks`). Nothing is written when the block raises."""
    with buffered_log() as held:
        trainer = Trainer(cfg, output, env=DistEnv(), hooks=hooks)
        yield trainer
        output.mkdir(parents=True, exist_ok=True)
        (output / "config.yaml").write_text(config.dump(cfg))
        attach_run_log(output, held)


def load_weights(trainer: Trainer, weights: Mapping[str, Tensor],
                 pruned: Mapping[str, dict[str, Any]] | None = None) -> None:
    """``weights`` (a state dict of the method) into ``trainer.method`` and its EMA; with ``pruned`` (the record of
    :mod:`fgvc.engine.pruned_arch`) both are first narrowed to that architecture."""
    targets = [trainer.method] + ([trainer.ema.module] if trainer.ema is not None else [])
    for module in targets:
        if pruned:
            apply_pruned(module, dict(pruned), weights)
        module.load_state_dict(weights)


def save_start(trainer: Trainer) -> None:
    """Write ``checkpoints/last.pt`` at step 0 (optimizer and schedule of the first stage, nothing trained yet):
    ``--resume`` from it continues exactly as the uninterrupted fine-tune, whose :meth:`Trainer.fit` rebuilds the same
    optimizer."""
    trainer._enter_stage(0)
    trainer.save()


def check_derivation(run: Path, checkpoint: str, output: Path, finetune_epochs: int, command: str) -> None:
    """What a command deriving a new run refuses before any work (``command``: e.g. ``fgvc.extend``): a source that is
    not a run directory holding ``checkpoints/<checkpoint>.pt`` (each case in its own words,
    :func:`~fgvc.engine.run_state.locate_checkpoint`'s), an ``output`` that is taken, a negative fine-tune."""
    if not run.is_dir():
        raise CheckpointError(f"no such run directory: {run}; {command} takes the directory fgvc.train wrote "
                              "(e.g. runs/cub200_lite0-20260101-120000)")
    locate_checkpoint(run, checkpoint)
    check_new_output(output, command)
    if finetune_epochs < 0:
        raise ConfigError(f"--finetune-epochs {finetune_epochs} must be >= 0 (0: no fine-tune)")


def check_new_output(output: Path, command: str) -> None:
    """A ConfigError unless ``output`` is free for a new run directory (absent, or an empty folder): ``command``
    (e.g. ``fgvc.extend``) never overwrites a run or any other file."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"--output {output} already exists: {command} writes a new run directory and never "
                          "overwrites a run or any other file; choose another --output")
