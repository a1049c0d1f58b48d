"""The training loop. A method owns its training step; the trainer owns everything else:
devices, AMP, gradient accumulation and clipping, EMA, Mixup, stages, schedulers, checkpoints,
resume, NaN guard, DDP and metrics.jsonl. Everything else plugs in as a hook (:mod:`fgvc.engine.hook`;
:func:`fgvc.hooks.training_hooks` gives the standard ones): the end-of-training evaluation protocols, the fit
verdict, TensorBoard.

Exact resume: a checkpoint holds model, optimizer, scheduler, AMP scaler, EMA, method extra
state, RNG states, the running epoch sums and the position in the epoch (stage, epoch, batch).
Augmentation is seeded per (seed, epoch, sample) and the sampler starts at the saved position,
so a resumed run sees the same batches and ends with the same metrics.
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from timm.data import Mixup
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from fgvc.config import crop_warnings
from fgvc.engine import builder
from fgvc.engine.checkpoint import load_checkpoint, save_checkpoint
from fgvc.engine.device_input import batch_format, to_model_input
from fgvc.engine.distill import build_distiller
from fgvc.engine.distributed import DistEnv, init_distributed, reduce_mean
from fgvc.engine.hook import EpochLog, Hook
from fgvc.engine.host_memory import keep_freed_memory
from fgvc.engine.optim import build_stage_optimizer
from fgvc import config
from fgvc.engine.inference import Runtime, TrainedRun, autocast, fitting_weights
from fgvc.engine.resume_check import schedule_changed
from fgvc.engine.pruned_arch import pruned_layers, reshape_like
from fgvc.engine.rundir import append_metrics, plot_curves, truncate_metrics, write_json
from fgvc.engine.state import capture_rng, restore_rng, seed_everything
from fgvc.engine.validation import validate
from fgvc.errors import ConfigError, TrainingDiverged
from fgvc.methods.base import hard_labels
from fgvc.models.backbone import Backbone

log = logging.getLogger("fgvc")

__all__ = ["Trainer", "TrainingDiverged"]


class Trainer:
    def __init__(self, cfg: dict[str, Any], run_dir: Path, resume: bool = False, env: DistEnv | None = None,
                 state: dict[str, Any] | None = None, hooks: Sequence[Hook] = ()) -> None:
        """``resume``: continue from ``checkpoints/last.pt`` (``state``: that checkpoint, when already loaded).
        ``hooks``: plug-ins of the loop (:mod:`fgvc.engine.hook`), after the built-in epoch log line; without the
        protocols hook of :func:`fgvc.hooks.training_hooks`, ``final.json`` holds no test metrics."""
        self.hooks: list[Hook] = [EpochLog(), *hooks]
        self.cfg, self.run_dir, self.tr = cfg, Path(run_dir), cfg["train"]
        self.device = builder.resolve_device(self.tr["device"])
        self.env = env or init_distributed(self.device.type)
        if self.env.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.env.local_rank)
        if self.tr["threads"]:
            torch.set_num_threads(self.tr["threads"])
        keep_freed_memory(self.device)  # CPU: freed step memory stays in the process, no page faults per step
        if self.tr["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = not self.tr["deterministic"]
        seed_everything(cfg["seed"])
        self.ckpt_dir = self.run_dir / "checkpoints"
        self._build(resume)
        self.progress = {"stage": 0, "epoch": 0, "epoch_in_stage": 0, "batch": 0, "global_step": 0, "stage_step": 0,
                         "sums": {}, "seen": 0, "epoch_seconds": 0.0}
        self.best = {"val_top1": -1.0, "epoch": -1}
        self.train_seconds = 0.0
        self.nan_in_row = 0
        self._resume_state = (state if state is not None else load_checkpoint(self.ckpt_dir / "last.pt")) if resume \
            else None
        saved = list((self._resume_state or {}).get("class_names") or self.class_names)
        if saved != self.class_names:
            raise ConfigError(
                f"cannot resume {self.run_dir}: its checkpoint was trained on {len(saved)} classes, but "
                f"{self.cfg['data']['root']} has {len(self.class_names)} different ones "
                f"({', '.join(self.class_names[:3])}...); resume with the run's own data (drop --set data.root=...) "
                "or start a new run")
        for hook in self.hooks:  # e.g. TensorBoard refuses here, before anything is written, when its package is missing
            hook.setup(self)

    # ------------------------------------------------------------------ setup
    def _build(self, resume: bool = False) -> None:
        cfg, d = self.cfg, self.cfg["data"]
        self.train_ds = builder.build_split(cfg, d["train_split"], True, None)
        self.class_names = list(self.train_ds.classes)
        self.method = builder.build_method_from_cfg(cfg, len(self.class_names), self.train_ds.class_counts().tolist(),
                                                    init=not resume)  # class frequencies; model.init_from
        self.method.freeze_norm = bool(self.tr["freeze_norm"])  # BatchNorm statistics kept from the pretrained backbone
        dc = self.data_config = self.method.data_config()
        self.train_ds.transform = builder.build_transform(cfg, True, dc, batch_format(self.device))  # uint8
        self.train_ds.bad_log = self.run_dir / "bad_images.tsv"
        for warning in builder.flip_warnings(self.train_ds, {"data.augment.hflip": d["augment"]["hflip"],
                                                             "eval.tta_flip": cfg["eval"]["tta_flip"]}) + crop_warnings(d):
            log.warning(warning)
        self.val_ds = builder.build_split(cfg, d["val_split"], False, dc) if d["val_split"] else None
        if self.val_ds is not None:
            self.val_ds.bad_log = self.train_ds.bad_log
        self.test_split = config.scored_split(cfg)
        self.channels_last = builder.resolve_channels_last(self.tr["channels_last"], self.method)
        self.method.to(self.device)
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if self.tr["compile"]:
            for m in self.method.modules():
                if isinstance(m, Backbone):
                    m.compile_features()
        per_rank = config.train_batch_per_process(cfg, self.env.world_size)
        pin = self.device.type == "cuda"
        self.train_loader = builder.make_loader(self.train_ds, per_rank, d["num_workers"], True, self.cfg["seed"], self.env,
                                                pin, pk=builder.pk_shape(cfg), channels_last=self.channels_last)
        # batches in a whole epoch (len(train_loader) shrinks while a resumed epoch starts mid-way)
        self.batches_per_epoch = len(self.train_loader)
        self.ema = ModelEmaV3(self.method, decay=self.tr["ema_decay"]) if self.tr["ema"] else None
        self.amp = builder.resolve_amp(self.tr["amp"], self.device)
        self.distill = build_distiller(cfg, self.device, self.amp, dc, self.class_names)  # recipe key distill, or None
        # the trained model as every later command sees it (EMA weights when the run keeps an EMA)
        runtime = Runtime(self.device, self.amp, self.channels_last, self.tr["threads"], self.env)
        self.inference = TrainedRun(cfg, self._eval_model(), dc, self.class_names, runtime, self.run_dir)
        if self.val_ds is not None:
            self.inference.datasets[d["val_split"]] = self.val_ds
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.method.backward_part = builder.part_backward(self.scaler, self.tr["grad_accum"], self.env, self.distill)
        self.mixup = None
        if self.tr["mixup"] > 0 or self.tr["cutmix"] > 0:
            self.mixup = Mixup(mixup_alpha=self.tr["mixup"], cutmix_alpha=self.tr["cutmix"],
                               label_smoothing=cfg["loss"]["args"].get("label_smoothing", 0.0),
                               num_classes=len(self.class_names))
        self.stages = self.tr["stages"] or [{"name": "main", "epochs": self.tr["epochs"]}]
        self.total_epochs = sum(s["epochs"] for s in self.stages)

    def _enter_stage(self, idx: int, announce: bool = True) -> None:
        stage = self.stages[idx]
        self.method.set_stage(stage["name"])
        self.optimizer = build_stage_optimizer(self.method, stage, self.tr)  # freezes what the stage leaves out
        self.updates_per_epoch = math.ceil(self.batches_per_epoch / self.tr["grad_accum"])
        tr = dict(self.tr)
        if tr["warmup_epochs"] >= stage["epochs"] and tr["warmup_epochs"]:
            log.warning(f"train.warmup_epochs={tr['warmup_epochs']} >= the stage's {stage['epochs']} epoch(s): no warmup")
            tr["warmup_epochs"] = 0
        self.scheduler = builder.build_scheduler(self.optimizer, tr, stage["epochs"], self.updates_per_epoch)
        self.train_module = self.method  # what a training step calls: the method, or its DDP wrapper
        if self.env.enabled:
            self.train_module = DDP(self.method, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                             find_unused_parameters=True)
        if announce:
            n_train = sum(p.numel() for p in self.method.parameters() if p.requires_grad)
            lr = self.optimizer.defaults["lr"]  # the stage's base lr, as the optimizer factory chose it
            log.info(f"stage {idx + 1}/{len(self.stages)} '{stage['name']}': {stage['epochs']} epoch(s), lr {lr:g}, "
                     f"{n_train / 1e6:.2f} M trainable parameters")

    # ------------------------------------------------------------ checkpoint
    def _state(self) -> dict[str, Any]:
        return {
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "extra": self.method.extra_state(),
            "progress": dict(self.progress),
            "best": dict(self.best),
            "train_seconds": self.train_seconds,
            "rng": capture_rng(),
            "config": self.cfg,
            "class_names": self.class_names,
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()},
            "pruned": pruned_layers(self.method),  # the narrowed layers of a pruned method (fgvc.prune)
        }

    def save(self, name: str = "last.pt") -> None:
        if self.env.is_main:
            save_checkpoint(self._state(), self.ckpt_dir / name)
        self.env.barrier()

    def _restore(self, state: dict[str, Any]) -> None:
        ckpt = self.ckpt_dir / "last.pt"
        with fitting_weights(ckpt):
            reshape_like(state, self.method, self.ema.module if self.ema is not None else None)  # pruned runs
            self.method.load_state_dict(state["model"])
            self.method.load_extra_state(state.get("extra") or {})
        self.progress, self.best = dict(state["progress"]), dict(state["best"])
        self.train_seconds = state.get("train_seconds", 0.0)
        self._enter_stage(min(self.progress["stage"], len(self.stages) - 1))
        with fitting_weights(ckpt):
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"]:
            if schedule_changed(config.from_saved(state["config"]), self.cfg):  # more epochs: the new length
                self.scheduler.step_update(num_updates=self.progress["stage_step"])
                log.info(f"the schedule's epochs changed ({self.total_epochs} now): the learning-rate schedule "
                         "continues over the new length")
            else:
                self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.module.load_state_dict(state["ema"])
        restore_rng(state["rng"])
        if self.env.is_main:
            truncate_metrics(self.run_dir, self.progress["epoch"])
        log.info(f"resumed from {self.ckpt_dir / 'last.pt'}: epoch {self.progress['epoch'] + 1}, "
                 f"batch {self.progress['batch']}, step {self.progress['global_step']}")

    # ------------------------------------------------------------------ train
    def fit(self) -> dict[str, Any]:
        max_steps = self.tr["max_steps"]
        if self._resume_state is not None:
            self._restore(self._resume_state)
            self._resume_state = None
        else:
            self._enter_stage(0)
        p = self.progress
        done = max_steps is not None and p["global_step"] >= max_steps
        while p["stage"] < len(self.stages) and not done:
            stage = self.stages[p["stage"]]
            while p["epoch_in_stage"] < stage["epochs"] and not done:
                done = self._train_epoch()
                self._end_epoch(last=done or (p["stage"] == len(self.stages) - 1
                                               and p["epoch_in_stage"] == stage["epochs"] - 1))
            if p["epoch_in_stage"] >= stage["epochs"]:
                p["stage"] += 1
                p["epoch_in_stage"], p["stage_step"] = 0, 0
                if p["stage"] < len(self.stages) and not done:
                    self._enter_stage(p["stage"])
                    self.save()
        return self.final()

    def finish_untrained(self) -> dict[str, Any]:
        """The final test and checkpoints of a model that is complete without training (``fgvc.extend``'s weight
        imprinting): the schedule is marked done, so ``--resume`` re-evaluates and trains nothing."""
        self._enter_stage(0, announce=False)  # an optimizer for the checkpoint; no stage is trained
        self.progress.update(stage=0, epoch_in_stage=self.stages[0]["epochs"])
        final = self.final()
        self.save()
        return final

    def _train_epoch(self) -> bool:
        """One epoch (or the rest of one, after a resume). Returns True when train.max_steps is reached."""
        p, tr = self.progress, self.tr
        accum, max_steps = tr["grad_accum"], tr["max_steps"]
        sampler = self.train_loader.sampler
        sampler.set_epoch(p["epoch"], p["batch"] * self.train_loader.batch_size)
        self.train_loader.dataset.epoch = p["epoch"]
        self.method.train()
        t0 = time.time()
        bar = tqdm(self.train_loader, total=self.batches_per_epoch, initial=p["batch"], leave=False,
                   disable=not (self.env.is_main and _tty()), dynamic_ncols=True,
                   desc=f"epoch {p['epoch'] + 1}/{self.total_epochs}")
        for images, targets in bar:
            images = to_model_input(images, self.device, self.data_config["mean"], self.data_config["std"])  # if uint8
            targets = targets.to(self.device, non_blocking=True)
            if self.mixup is not None and images.shape[0] % 2 == 0:
                images, targets = self.mixup(images, targets)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            last_micro = (p["batch"] + 1) % accum == 0 or p["batch"] + 1 == self.batches_per_epoch
            sync = self.train_module.no_sync() if (self.env.enabled and not last_micro) else contextlib.nullcontext()
            with sync:
                with autocast(self.device, self.amp):
                    out = self.train_module(images, targets)
                    out = self.distill(images, out) if self.distill is not None else out  # fgvc.engine.distill
                loss = out["loss"].float()
                if not self._finite(loss):
                    self._on_nan(loss)
                    p["batch"] += 1
                    continue
                self.scaler.scale(loss / accum).backward()
            self.nan_in_row = 0
            self._accumulate(out, targets, images.shape[0])
            p["batch"] += 1
            if last_micro:
                self._optimizer_step()
                if tr["checkpoint_every_steps"] and p["global_step"] % tr["checkpoint_every_steps"] == 0:
                    self.save()
                if max_steps is not None and p["global_step"] >= max_steps:
                    break
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        p["epoch_seconds"] += time.time() - t0
        return max_steps is not None and p["global_step"] >= max_steps

    def _finite(self, loss: torch.Tensor) -> bool:
        ok = torch.isfinite(loss.detach()).float()
        if self.env.enabled:
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
        return bool(ok.item())

    def _on_nan(self, loss: torch.Tensor) -> None:
        where = f"epoch {self.progress['epoch'] + 1}, batch {self.progress['batch'] + 1}"
        last = self.ckpt_dir / "last.pt"
        keep = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint was written yet"
        if self.tr["on_nan"] == "stop":
            raise TrainingDiverged(
                f"loss became {loss.item()} at {where}; {keep}. Lower train.lr, set train.clip_grad (e.g. 1.0), "
                "or set train.on_nan=skip to skip such steps.")
        self.optimizer.zero_grad(set_to_none=True)
        self.progress["sums"]["skipped_steps"] = self.progress["sums"].get("skipped_steps", 0) + 1
        log.warning(f"non-finite loss ({loss.item()}) at {where}: step skipped (train.on_nan=skip)")
        self.nan_in_row += 1  # counted across epochs: a run whose every step is skipped must not "finish"
        if self.nan_in_row >= 20:
            raise TrainingDiverged(f"20 non-finite losses in a row up to {where}; {keep}. Lower train.lr.")

    def _accumulate(self, out: dict[str, torch.Tensor], targets: torch.Tensor, n: int) -> None:
        s, p = self.progress["sums"], self.progress
        s["correct"] = s.get("correct", 0) + int((out["logits"].detach().argmax(1) == hard_labels(targets)).sum())
        for k, v in out.items():
            if k != "logits" and torch.is_tensor(v) and v.ndim == 0:
                s[k] = s.get(k, 0.0) + float(v.detach()) * n
        p["seen"] += n

    def _optimizer_step(self) -> None:
        p = self.progress
        if self.tr["clip_grad"]:
            self.scaler.unscale_(self.optimizer)
            params = [q for g in self.optimizer.param_groups for q in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.tr["clip_grad"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        p["global_step"] += 1
        p["stage_step"] += 1
        if self.ema is not None:
            self.ema.update(self.method, step=p["global_step"])
        if self.scheduler is not None:
            self.scheduler.step_update(num_updates=p["stage_step"])

    def _eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.method

    def _end_epoch(self, last: bool) -> None:
        p, tr = self.progress, self.tr
        seen = max(p["seen"], 1)
        row: dict[str, Any] = {"epoch": p["epoch"], "stage": self.stages[p["stage"]]["name"], "step": p["global_step"]}
        sums = dict(p["sums"])
        row["loss"] = reduce_mean(sums.pop("loss", float("nan")) / seen, self.env)
        row["train_top1"] = reduce_mean(100.0 * sums.pop("correct", 0) / seen, self.env)
        for k, v in sums.items():
            row[k] = v if k == "skipped_steps" else reduce_mean(v / seen, self.env)
        row["lr"] = max(g["lr"] for g in self.optimizer.param_groups)
        row["epoch_seconds"] = round(p["epoch_seconds"], 2)
        row["images_per_s"] = round(p["seen"] * self.env.world_size / max(p["epoch_seconds"], 1e-9), 1)
        self.train_seconds += p["epoch_seconds"]
        if self.val_ds is not None and (last or (p["epoch"] + 1) % tr["eval_every"] == 0):
            row.update(validate(self.inference, self.cfg["data"]["val_split"]))  # val_top1, val_loss, heads
        is_best = "val_top1" in row and row["val_top1"] > self.best["val_top1"]
        if is_best:
            self.best = {"val_top1": row["val_top1"], "epoch": p["epoch"]}
        if self.env.is_main:
            append_metrics(self.run_dir, row)
            for hook in self.hooks:  # the epoch log line, TensorBoard ...
                hook.after_epoch(self, row)
        # advance the position before saving: the checkpoint describes the start of the next epoch
        p["epoch"] += 1
        p["epoch_in_stage"] += 1
        p.update(batch=0, sums={}, seen=0, epoch_seconds=0.0)
        if is_best:  # best.pt first: a kill between the two saves redoes this epoch's end, best.pt included
            self.save("best.pt")
        self.save()

    # ------------------------------------------------------------------ final
    def final(self) -> dict[str, Any]:
        """``final.json`` of the final-epoch model (never a checkpoint chosen on test): what the hooks add (the
        test metrics of the protocols hook, the fit verdict) and the run's own record (split, weights, epochs,
        steps, time, best validation epoch, bad images); then the hooks' :meth:`~Hook.after_final` and the
        training curves."""
        res: dict[str, Any] = {}
        for hook in self.hooks:
            hook.final_metrics(self, res)
        tta = self.cfg["eval"]["tta_flip"]
        res.update(split=self.test_split, weights="ema" if self.ema is not None else "model",
                   epochs=self.progress["epoch"], steps=self.progress["global_step"],
                   train_seconds=round(self.train_seconds, 1),
                   # null without a validated epoch (no validation split, or no training)
                   best_val_top1=self.best["val_top1"] if self.best["epoch"] >= 0 else None,
                   best_val_epoch=self.best["epoch"] + 1 if self.best["epoch"] >= 0 else None,
                   bad_images=_count_lines(self.run_dir / "bad_images.tsv"), tta_flip=tta)
        if self.env.is_main:
            if res["bad_images"]:
                log.warning(f"skipped {res['bad_images']} bad image(s) (data.on_bad_image=skip); they are listed in "
                            f"{self.run_dir / 'bad_images.tsv'}")
            write_json(self.run_dir / "final.json", res)
            for hook in self.hooks:  # the protocols' tables, TensorBoard's close ...
                hook.after_final(self, res)
            plot_curves(self.run_dir, res.get("fit"))
        return res


def _count_lines(path: Path) -> int:
    return len(set(path.read_text().splitlines())) if path.is_file() else 0


def _tty() -> bool:
    return sys.stderr.isatty()
