"""Prune a trained run (``python -m fgvc.prune``): structured channel pruning, then optionally a short fine-tune.

1. The run's checkpoint is loaded through :class:`~fgvc.engine.inference.TrainedRun` (the EMA weights when it kept an
   EMA, as its final.json did) and its test top-1, parameters, MACs and batch-1 CPU latency are measured
   (:mod:`fgvc.deploy.model_cost`).
2. :func:`fgvc.deploy.channel_pruning.prune_method` removes ``amount`` of the channels of every prunable channel group
   of the backbone (per layer; torch-pruning's DepGraph, Fang et al. 2023; importance ``l1`` = filter L1 norm as in
   Li et al. 2017, ``l2``, or ``taylor``, Molchanov et al. 2019), never the backbone's output width, so heads, WS-DAN's
   attention maps and B-CNN's pooling keep their sizes. Vision-transformer backbones are refused.
3. ``NEW_RUN`` is an ordinary run directory (:mod:`fgvc.engine.derived`): ``config.yaml`` (the run's, with
   ``model.pretrained: false`` and the fine-tune's schedule: ``train.epochs = max(E, 1)``, lr a tenth of the run's,
   no warm-up, no stages, each unless ``--set``), ``checkpoints/last.pt`` holding the pruned weights and the narrowed
   layers (``pruned``, :mod:`fgvc.engine.pruned_arch`, which :meth:`TrainedRun.load` and the trainer's resume rebuild),
   ``train.log``, ``final.json`` and ``eval/`` from the trainer's own final test. With ``--finetune-epochs E > 0`` the
   ordinary :class:`~fgvc.engine.trainer.Trainer` trains it for ``E`` epochs with the run's recipe (``metrics.jsonl``,
   ``best.pt`` with a validation split); a fine-tune cut short continues with ``fgvc.train --resume NEW_RUN`` (a
   step-0 checkpoint is written before it starts).
4. ``prune.json`` (and the log): ``before``, ``after_prune`` and, with ``E > 0``, ``after_finetune``, each with
   ``params``, ``macs``, ``latency_ms`` (median of ``latency_repeats`` batch-1 CPU calls with ``latency_threads``
   threads) and ``top1`` on the test split (``eval.tta_flip`` as the run's); ``after_prune.top1`` is the pruned model
   before any fine-tune, which without a fine-tune is final.json's (and ``fgvc.evaluate NEW_RUN``'s) top-1. A
   fine-tune resumed later leaves ``after_finetune`` out; its final.json has the top-1.

Refused with one error line, before anything is written: ``--amount`` outside (0, 1), an existing ``--output``, a
run without the checkpoint, a negative ``--finetune-epochs``, an unknown ``--importance`` and a method that cannot be
pruned (:class:`~fgvc.deploy.channel_pruning.PruningError`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from fgvc import config
from fgvc.hooks import training_hooks
from fgvc.engine import builder
from fgvc.deploy.channel_pruning import IMPORTANCES, PruningError, check_prunable, prune_method
from fgvc.engine.derived import check_derivation, derived_trainer, finetune_config, load_weights, save_start
from fgvc.engine.distributed import DistEnv
from fgvc.engine.inference import TrainedRun
from fgvc.metrics.accuracy import summarize
from fgvc.deploy.model_cost import measure_cost
from fgvc.errors import ConfigError
from fgvc.extras import require
from fgvc.engine.rundir import write_json

log = logging.getLogger("fgvc")

__all__ = ["PruneRequest", "prune_run", "format_report", "TAYLOR_BATCHES"]

TAYLOR_BATCHES = 4  # training batches (eval transform, eval mode) whose gradients give the taylor importance


@dataclass
class PruneRequest:
    """What ``python -m fgvc.prune`` was asked (see the module docstring)."""

    run: Path
    output: Path
    amount: float = 0.3
    finetune_epochs: int = 0
    checkpoint: str = "last"
    importance: str = "l1"
    overrides: Sequence[str] = ()
    latency_threads: int | None = None  # None: the run's train.threads, else torch's current setting
    latency_repeats: int = 20

    def check(self) -> None:
        if not 0.0 < self.amount < 1.0:
            raise ConfigError(f"--amount {self.amount}: the fraction of channels to remove must be in (0, 1), "
                              "e.g. 0.3")
        check_derivation(self.run, self.checkpoint, self.output, self.finetune_epochs, "fgvc.prune")
        if self.importance not in IMPORTANCES:
            raise ConfigError(f"--importance {self.importance}: choose one of {', '.join(IMPORTANCES)}")
        if self.latency_repeats < 1 or (self.latency_threads is not None and self.latency_threads < 1):
            raise ConfigError("--latency-threads and the latency repeats must be >= 1")


def _top1(run: TrainedRun, tta: bool, desc: str) -> float:
    got = run.collect(config.scored_split(run.cfg), ["logits"], tta=tta, desc=desc)
    return float(summarize(got.prediction, got.targets)["top1"])


def _taylor_batches(run: TrainedRun) -> list[tuple[torch.Tensor, torch.Tensor]]:
    ds = run.dataset(run.cfg["data"]["train_split"])
    bs = config.eval_batch_size(run.cfg)
    loader = builder.make_loader(ds, bs, run.cfg["data"]["num_workers"], False, 0, DistEnv(), False)
    batches = []
    for images, targets in loader:
        batches.append((images, targets))
        if len(batches) == TAYLOR_BATCHES:
            break
    return batches


def prune_run(req: PruneRequest) -> dict[str, Any]:
    """Do it (see the module docstring); returns what ``NEW_RUN/prune.json`` holds."""
    req.check()
    tp = require("torch_pruning", "torch-pruning", "structured pruning", extra="deploy")
    old = TrainedRun.load(req.run, req.checkpoint, req.overrides)
    cfg, name = old.cfg, old.cfg["model"]["name"]
    check_prunable(old.method, name)  # before any measurement: a refusal costs nothing
    img = round(cfg["data"]["img_size"] * float(old.data_config.get("input_scale", 1.0)))  # what the method sees
    tta, threads = cfg["eval"]["tta_flip"], req.latency_threads or cfg["train"]["threads"] or torch.get_num_threads()
    log.info(f"pruning {req.run} ({name} on {cfg['model']['backbone']}, {old.describe()}): {req.amount:.0%} of the "
             f"channels of every prunable group, {req.importance} importance")
    before = {**measure_cost(old.method, img, threads, req.latency_repeats), "top1": _top1(old, tta, "before")}
    example = torch.randn(1, 3, img, img, device=old.runtime.device)
    batches = _taylor_batches(old) if req.importance == "taylor" else None
    summary = prune_method(old.method, example, req.amount, req.importance, batches, name)
    after = measure_cost(old.method, img, threads, req.latency_repeats)
    new_cfg = finetune_config(cfg, req.finetune_epochs, req.overrides)
    with derived_trainer(new_cfg, req.output, training_hooks(new_cfg)) as trainer:
        if trainer.class_names != old.class_names:
            raise PruningError(f"the data set of {req.run} no longer has the classes the run was trained on; prune "
                               "with the run's own data (drop --set data.root/data.name)")
        load_weights(trainer, old.method.state_dict(), summary.layers)
        weights = old.weights
        del old
    report: dict[str, Any] = {
        "pruned_from": str(req.run), "checkpoint": req.checkpoint, "weights": weights, "method": name,
        "backbone": new_cfg["model"]["backbone"], **summary.to_dict(), "finetune_epochs": req.finetune_epochs,
        "split": config.scored_split(new_cfg), "tta_flip": tta, "img_size": img, "latency_threads": threads,
        "latency_repeats": req.latency_repeats, "latency_device": "cpu", "latency_batch": 1,
        "torch_pruning": getattr(tp, "__version__", "?"), "before": before, "after_prune": after,
        "after_finetune": None,
    }
    if req.finetune_epochs == 0:
        final = trainer.finish_untrained()
        after["top1"] = final["top1"]
    else:
        after["top1"] = _top1(trainer.inference, tta, "after pruning")
        save_start(trainer)
        write_json(req.output / "prune.json", report)  # a fine-tune cut short still leaves the pruning's numbers
        log.info(f"fine-tuning the pruned model for {req.finetune_epochs} epoch(s)")
        final = trainer.fit()
        report["after_finetune"] = {**{k: after[k] for k in ("params", "macs", "latency_ms")}, "top1": final["top1"]}
    write_json(req.output / "prune.json", report)
    for line in format_report(report).splitlines():
        log.info(line)
    log.info(f"wrote {req.output}/prune.json, final.json, config.yaml, train.log, checkpoints/last.pt")
    return report


def format_report(report: dict[str, Any]) -> str:
    """The before / after table of a ``prune.json``."""
    rows = [("before", report["before"]), ("after pruning", report["after_prune"])]
    if report.get("after_finetune"):
        rows.append((f"after {report['finetune_epochs']} fine-tune epoch(s)", report["after_finetune"]))
    b = report["before"]
    lines = [f"pruned {report['amount']:.0%} of the channels of {report['groups_pruned']} channel groups per layer "
             f"({report['importance']}; {report['groups_fixed']} group(s) kept whole: the backbone's output width and "
             f"broadcast-coupled ones), {report['channels_before']} -> {report['channels_after']} channels",
             f"{'':<28}{'params':>12}{'MACs':>14}{'latency ms':>12}{'top-1':>9}"]
    for label, r in rows:
        lines.append(f"{label:<28}{r['params']:>12,}{r['macs']:>14,}{r['latency_ms']:>12.2f}{r['top1']:>9.2f}")
    a = report["after_prune"]
    lines.append(f"parameters x{a['params'] / b['params']:.2f}, MACs x{a['macs'] / b['macs']:.2f}, latency "
                 f"x{a['latency_ms'] / b['latency_ms']:.2f} (batch 1, CPU, {report['latency_threads']} thread(s), "
                 f"median of {report['latency_repeats']}, {report['img_size']} px); top-1 on the "
                 f"{report['split']} split")
    return "\n".join(lines)
