"""Add classes to a trained run (``python -m fgvc.extend``): weight imprinting, then optionally a short fine-tune.

1. The added set (any layout fgvc reads; its reader is detected from ``ROOT`` or named with ``--add-set
   name=...``) must not share a class name with the run, and each of its classes needs ``K`` training images
   (:class:`~fgvc.errors.DataError` otherwise, naming the classes). The run's method must classify its embedding
   with one head (``Method.embedding_head``: baseline, bcnn, cbam, senet); WS-DAN and RA-CNN are refused
   (:class:`~fgvc.errors.CheckpointError`, :data:`REFUSALS` says why).
2. Imprinting (Qi, Brown & Lowe 2018, :mod:`fgvc.continual.imprint`): each new class's weight is the normalised mean
   of the normalised embeddings of its first ``K`` training images (a fixed order seeded by the run's seed, or by
   ``--shot-seed``: :func:`fgvc.data.union.first_shots`), computed by the trained model in eval mode.

   * A linear head becomes a ``cosine`` head, its bias dropped, its old rows imprinted in the same way from all
     the old classes' training images: a cosine nearest-class-mean classifier over old and new classes, the
     normalised mean of normalised embeddings (``benchmarks/results/extend.md``: on a lite0 cub200-mini run with 40
     species added it is the plain nearest-class-mean of ``fgvc.embed``'s features to within 0.4 point on the
     means of new, old and all top-1 over 5 draws of the shots, 1.3 points draw for draw). The scale is fitted
     on the old validation split, or without one on the old training images (:func:`fgvc.continual.imprint.fit_scale`);
     it changes no prediction.
   * ``--old-weights centred``: the linear head stays linear and every row is imprinted from centred embeddings
     ``e - c`` (``c`` the old training images' mean embedding): logits ``s / u * (e - c) . w``, the cosine
     nearest-class-mean of centred, normalised embeddings (SimpleShot's CL2N, Wang et al. 2019;
     :func:`fgvc.continual.imprint.centred_linear`). In the same benchmark it gains 3 points of new-class top-1 with 1
     shot (old unchanged) and with 5 shots keeps 2 more points of old images but loses 4 of new ones.
   * ``--old-weights normalised``: the normalised linear rows in the cosine head (Qi et al.'s conversion; we
     measured it to hand nearly every image to a new class, see :mod:`fgvc.continual.imprint`).
   * A cosine, ArcFace or CosFace head keeps its type, rows and scale (old-class logits stay exactly as they were).

3. ``--finetune-epochs E`` trains the imprinted model for ``E`` epochs with the ordinary :class:`Trainer` (the
   run's recipe: optimizer, augmentation, sampler; the lr a tenth of the run's and no warmup unless ``--set``;
   BatchNorm layers keep the run's statistics, ``Method.freeze_norm``: batches of a few images per class would
   otherwise replace them, which alone took new-class top-1 from 91 % to 76 % in a smoke run at lr 1e-9), on the
   new classes' ``K`` shots plus, against forgetting:

   * by default every old training image (a joint fine-tune);
   * ``--rehearsal N``: ``N`` old images per old class (a replay memory; ``0``: none, the new shots only);
   * ``--ewc LAMBDA``: no old image, and the EWC penalty ``LAMBDA / 2 * sum F (w - w_old)^2`` (Kirkpatrick et al.
     2017, :mod:`fgvc.continual.ewc`) with the diagonal Fisher of at most :data:`FISHER_IMAGES` old training images at
     the imprinted model's weights.

4. ``NEW_RUN`` is an ordinary run directory: ``config.yaml`` with ``data.name: union`` over the run's data and the
   added set (:mod:`fgvc.data.union`; the new part's ``shots: K``, the old part's ``shots: N`` with rehearsal, 0
   with EWC: exactly the training images used), ``checkpoints/last.pt`` with the union's class names (old first),
   ``train.log``, ``metrics.jsonl`` (fine-tune only) and ``final.json``: the trainer's metrics over the union test
   split (``top1`` ...) plus ``old_top1`` and ``new_top1`` (the old and the new classes' test images, each predicted
   among all classes), ``old_top1_before`` (the run's own final.json), ``shots``, ``shot_seed``, ``finetune_epochs``,
   ``forgetting``, ``cosine_scale`` and where it came from. ``model.pretrained`` is false in it: the weights are the
   checkpoint's.
   ``fgvc.train --resume NEW_RUN`` after a fine-tune that was cut short continues without the EWC penalty.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc import config
from fgvc.hooks import training_hooks
from fgvc.data.check import detect_layout
from fgvc.data.union import class_clashes, first_shots, part_root, read_union, short_classes
from fgvc.engine import builder
from fgvc.engine.derived import FINETUNE_LR_SCALE, check_derivation, derived_trainer, finetune_config, load_weights
from fgvc.engine.distributed import DistEnv
from fgvc.continual.ewc import EWCPenalty, diagonal_fisher
from fgvc.continual.imprint import (centred_linear, class_means, extended_state, fit_scale, head_rows,
                                 imprinted_weights, union_rows)
from fgvc.engine.inference import TrainedRun
from fgvc.engine.run_state import read_final
from fgvc.errors import CheckpointError, ConfigError, DataError
from fgvc.engine.rundir import write_json

log = logging.getLogger("fgvc")

__all__ = ["ExtendRequest", "extend_run", "added_part", "union_config", "embedding_head", "REFUSALS",
           "FISHER_IMAGES", "FINETUNE_LR_SCALE"]

FISHER_IMAGES = 300  # old training images (a seeded sample) the EWC Fisher is averaged over (one backward each)
REFUSALS = {
    "wsdan": "its classifier scores the part features of two views (the image and its attention crop, averaged in "
             "'refined') and its attention regularisation keeps one feature center per class",
    "racnn": "it classifies with one head per scale plus a fusion layer over all scales, not one head on its "
             "embedding",
}
SUPPORTED = "baseline, bcnn, cbam and senet"
OLD_WEIGHTS = ("imprinted", "centred", "normalised")  # a linear head's old rows (module docstring, step 2)


@dataclass
class ExtendRequest:
    """What ``python -m fgvc.extend`` was asked (see the module docstring)."""

    run: Path
    add: Path
    output: Path
    shots: int = 5
    finetune_epochs: int = 0
    ewc: float | None = None
    rehearsal: int | None = None
    checkpoint: str = "last"
    overrides: Sequence[str] = ()
    add_overrides: Sequence[str] = ()
    old_weights: str = "imprinted"
    shot_seed: int | None = None  # the seed of the new classes' shots (None: the run's seed)

    def check(self) -> None:
        check_derivation(self.run, self.checkpoint, self.output, self.finetune_epochs, "fgvc.extend")
        if self.shots < 1:
            raise ConfigError(f"--shots {self.shots}: imprinting needs at least 1 training image per new class")
        if (self.ewc is not None or self.rehearsal is not None) and self.finetune_epochs == 0:
            raise ConfigError("--ewc and --rehearsal act on the fine-tune: add --finetune-epochs E (e.g. 2), or drop "
                              "them for imprinting only")
        if self.ewc is not None and self.rehearsal is not None:
            raise ConfigError("--ewc and --rehearsal are two answers to forgetting: give one of them")
        if (self.ewc is not None and self.ewc < 0) or (self.rehearsal is not None and self.rehearsal < 0):
            raise ConfigError("--ewc LAMBDA and --rehearsal N must be >= 0")
        if self.old_weights not in OLD_WEIGHTS:
            raise ConfigError(f"--old-weights {self.old_weights}: choose {' or '.join(OLD_WEIGHTS)}")

    def shots_seed(self, cfg: dict[str, Any]) -> int:
        """The seed of the new classes' shot order: ``--shot-seed`` or the run's ``seed``."""
        return int(cfg["seed"]) if self.shot_seed is None else int(self.shot_seed)

    @property
    def forgetting(self) -> str:
        if self.finetune_epochs == 0:
            return "imprinting"
        return "ewc" if self.ewc is not None else "rehearsal" if self.rehearsal is not None else "joint"


def embedding_head(run: TrainedRun, where: Path) -> tuple[str, nn.Module]:
    """``(attribute, head)`` of the run's one head on its embedding, or a :class:`CheckpointError` saying why not."""
    name = run.cfg["model"]["name"]
    attr = getattr(type(run.method), "embedding_head", None)
    head = getattr(run.method, attr, None) if attr else None
    if head is None or not hasattr(head, "weight") or head.weight.ndim != 2:
        why = REFUSALS.get(name, "its classifier is not one head on its embedding (Outputs.embedding)")
        raise CheckpointError(f"{where}: model.name={name} gives no embedding that a single classifier head reads "
                              f"({why}), so there is nowhere to imprint new classes; fgvc.extend takes {SUPPORTED} "
                              "runs")
    return attr, head


def added_part(root: Path, add_overrides: Sequence[str], old_cfg: dict[str, Any]) -> dict[str, Any]:
    """``{name, root, args}`` of the added set: the reader from ``--add-set name=...`` or detected from ``root``
    (:func:`fgvc.data.check.detect_layout`; a folder with a ``manifest.csv`` and no ``train/`` is ``csv``); its
    ``args`` start from the run's ``data.args`` when it is read by the same reader, then ``--add-set args.KEY=...``."""
    name, args = None, {}
    for item in add_overrides:
        key, value = config.parse_override(item)
        if key == "name":
            name = str(value)
        elif key == "args" and isinstance(value, dict):
            args.update(value)
        elif key.startswith("args.") and len(key) > 5:
            args[key[5:]] = value
        else:
            raise ConfigError(f"--add-set {item}: the added set takes name=READER (cub200, flowers102, folder, csv) "
                              "and args.KEY=VALUE (that reader's data.args), e.g. --add-set name=csv "
                              "args.manifest=x.csv")
    if not root.exists():
        raise DataError(f"--add {root} does not exist; give the root of the data set with the new classes")
    if name is None:
        name = detect_layout(root)
        if name == "folder" and (root / "manifest.csv").is_file() and not (root / "train").is_dir():
            name = "csv"
    base = dict(old_cfg["data"]["args"]) if name == old_cfg["data"]["name"] else {}
    return {"name": name, "root": str(root.resolve()), "args": {**base, **args}}


def _old_parts(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    d = cfg["data"]
    if d["name"] == "union":  # a run extended before: its parts, roots made absolute
        return [dict(p, root=str(part_root(d["root"], p).resolve())) for p in d["args"]["parts"]]
    return [{"name": d["name"], "root": str(Path(d["root"]).resolve()), "args": dict(d["args"])}]


def union_config(old_cfg: dict[str, Any], new: dict[str, Any], req: ExtendRequest) -> dict[str, Any]:
    """The new run's config: the run's, with ``data`` the union of its data and ``new`` (``shots`` as the module
    docstring says), the fine-tune's schedule (``train.epochs = max(E, 1)``, no stages, lr x
    :data:`FINETUNE_LR_SCALE`, no warmup, no max_steps, all images: each unless ``--set``) and
    ``model.pretrained: false``."""
    cfg, seed = copy.deepcopy(old_cfg), old_cfg["seed"]
    old_shots = 0 if req.ewc is not None else req.rehearsal
    parts = []
    for part in _old_parts(cfg):
        if old_shots is not None:
            have = part.get("shots")
            part = dict(part, shots=old_shots if have is None else min(have, old_shots), seed=seed)
        parts.append(part)
    parts.append(dict(new, shots=req.shots, seed=req.shots_seed(old_cfg)))
    d = cfg["data"]
    d.update(name="union", root=str(Path(d["root"]).resolve()) if d["name"] != "union" else d["root"],
             args={"parts": parts})
    return finetune_config(cfg, req.finetune_epochs, req.overrides, extra={"data.max_images": None})


def _check_new_classes(old: Sequence[str], new: dict[str, Any], split: str, req: ExtendRequest) -> list[str]:
    """The added set's class names, after refusing clashes with the run's and classes short of ``--shots``."""
    contents = read_union(".", split, parts=[new])
    clash = class_clashes(old, contents.classes)
    if clash:
        listed = ", ".join(f"'{a}' (old: '{b}')" for a, b in clash)
        raise DataError(f"new class '{clash[0][0]}' of {req.add} clashes with old class '{clash[0][1]}' of the run "
                        f"{req.run} ({len(clash)} clash(es): {listed}); a run's classes must differ: rename or remove "
                        "those classes in the added set, or leave them out with a CSV manifest (--add-set name=csv)")
    short = short_classes([s.label for s in contents.samples], len(contents.classes), req.shots)
    if short:
        listed = ", ".join(f"'{contents.classes[c]}' has {n}" for c, n in short)
        raise DataError(f"{len(short)} new class(es) of {req.add} have fewer than --shots {req.shots} images in its "
                        f"'{split}' split: {listed}; lower --shots to {min(n for _, n in short)} or add images")
    return list(contents.classes)


def _has_split(part: dict[str, Any], split: str) -> bool:
    try:
        read_union(".", split, parts=[part])
    except DataError:
        return False
    return True


def _embed(run: TrainedRun, ds: Any) -> tuple[Tensor, Tensor]:
    """Embeddings ``N x D`` and labels of ``ds`` (eval-transformed) by the trained model, CPU float32."""
    bs = config.eval_batch_size(run.cfg)
    loader = builder.make_loader(ds, bs, run.cfg["data"]["num_workers"], False, 0, DistEnv(), False)
    embs, labels = [], []
    for images, targets in loader:
        embs.append(run.infer(images).embedding.float().cpu())
        labels.append(targets)
    return torch.cat(embs), torch.cat(labels)


def _subset(ds: Any, keep: Sequence[int]) -> Any:
    ds.samples = [ds.samples[i] for i in keep]
    return ds


@dataclass
class Imprinted:
    """What :func:`_imprint` gives the union head: its rows (and bias for a linear head), the new classes' mean
    embeddings (for per-class tensors), the scale in cosine units, and the head's name and ``head_args``."""

    rows: Tensor
    bias: Tensor | None
    means: Tensor
    scale: float
    head: str
    head_args: dict[str, Any]


def _imprint(old: TrainedRun, head: nn.Module, cfg: dict[str, Any], new: dict[str, Any], k_new: int,
             req: ExtendRequest) -> Imprinted:
    """The union head (module docstring, step 2)."""
    split, seed = cfg["data"]["train_split"], cfg["seed"]
    # exactly the shots of the union's train split, all of them
    parts = [dict(new, shots=req.shots, seed=req.shots_seed(cfg))]
    only_new = dict(cfg, data=dict(cfg["data"], name="union", args={"parts": parts}, max_images=None))
    emb, labels = _embed(old, builder.build_split(only_new, split, False, old.data_config))
    if emb.shape[1] != head.weight.shape[1]:
        raise CheckpointError(f"{req.run}: model.name={cfg['model']['name']} gives {emb.shape[1]}-d embeddings but its "
                              f"head reads {head.weight.shape[1]}-d features: fgvc.extend takes {SUPPORTED} runs")
    means = class_means(emb, labels, k_new, normalize=False)
    rows, name = head_rows(head)
    args = dict(cfg["model"]["args"].get("head_args") or {})
    if name is not None:  # a cosine-family head keeps its rows, type and scale: old-class logits do not change
        return Imprinted(union_rows(rows, imprinted_weights(emb, labels, k_new)), None, means, float(head.s), name,
                         args)
    ds_old = copy.copy(old.dataset(split))
    val = old.cfg["data"]["val_split"]
    if req.old_weights == "centred":  # a linear head kept, every class imprinted from centred embeddings
        k_old = len(rows)
        old_emb, old_labels = _embed(old, ds_old)
        centre = old_emb.double().mean(0)  # D: the old training images' mean embedding
        rows = imprinted_weights(torch.cat([old_emb, emb]), torch.cat([old_labels, labels + k_old]), k_old + k_new,
                                 centre=centre)
        unit = float((old_emb.double() - centre).norm(dim=1).mean())
        held_emb, held_labels = _embed(old, old.dataset(val)) if val else (old_emb, old_labels)
        scale = fit_scale((held_emb.double() - centre).float() @ rows[:k_old].T / unit, held_labels)
        weight, bias = centred_linear(rows, centre, scale, unit)
        return Imprinted(weight, bias, means, scale, "linear", args)
    if req.old_weights == "imprinted":  # every old training image
        old_emb, old_labels = _embed(old, ds_old)
        rows = imprinted_weights(old_emb, old_labels, len(rows), fallback=rows)
    else:  # the normalised linear rows; their shots set the scale when there is no validation split
        old_emb, old_labels = _embed(old, _subset(ds_old, first_shots(ds_old.targets, req.shots, seed)))
    if val:  # Guo et al. 2017 fit the temperature on held-out images: the old run's validation split
        old_emb, old_labels = _embed(old, old.dataset(val))
    scale = fit_scale(F.normalize(old_emb, dim=1) @ rows.T, old_labels)
    return Imprinted(union_rows(rows, imprinted_weights(emb, labels, k_new)), None, means, scale, "cosine",
                     {"s": scale})


def _fisher_penalty(trainer: Any, old: TrainedRun, lam: float) -> tuple[EWCPenalty, int]:
    """EWC on the trainer's method at its current (imprinted) weights, Fisher over old training images."""
    ds = old.dataset(old.cfg["data"]["train_split"])
    order = np.random.default_rng(old.cfg["seed"]).permutation(len(ds))[:FISHER_IMAGES]
    method, rt = trainer.method, trainer.inference.runtime
    params = {k: p for k, p in method.named_parameters() if p.requires_grad}
    was_training = method.training
    method.eval()
    fisher, n = diagonal_fisher(lambda x: method.infer(rt.inputs(x)).prediction, params,
                                (ds[int(i)] for i in sorted(order)))
    method.train(was_training)
    return EWCPenalty(params, fisher, lam), n


def _old_new_top1(per_class: Path, k_old: int) -> tuple[float, float]:
    table = pd.read_csv(per_class)
    old = table["class_index"] < k_old
    acc = [100.0 * table.loc[m, "correct"].sum() / max(int(table.loc[m, "n_images"].sum()), 1) for m in (old, ~old)]
    return float(acc[0]), float(acc[1])


def extend_run(req: ExtendRequest) -> dict[str, Any]:
    """Do it (see the module docstring); returns the new run's final.json."""
    req.check()
    old = TrainedRun.load(req.run, req.checkpoint, req.overrides)
    attr, head = embedding_head(old, req.run / "checkpoints" / f"{req.checkpoint}.pt")
    new = added_part(req.add, req.add_overrides, old.cfg)
    d, test_split = old.cfg["data"], config.scored_split(old.cfg)
    new_classes = _check_new_classes(old.class_names, new, d["train_split"], req)
    try:
        read_union(".", test_split, parts=[new])
    except DataError as exc:
        raise DataError(f"the added set {req.add} needs a '{test_split}' split to score the new classes on: "
                        f"{exc}") from None
    cfg = union_config(old.cfg, new, req)
    if cfg["data"]["val_split"] and not _has_split(new, cfg["data"]["val_split"]):
        log.warning(f"the added set {req.add} has no '{cfg['data']['val_split']}' split: the new run has no "
                    "validation split (data.val_split: null), so no best.pt")
        cfg["data"]["val_split"] = None
    k_old, k_new = len(old.class_names), len(new_classes)
    old_head = old.cfg["model"]["args"].get("head", "linear")
    imp = _imprint(old, head, cfg, new, k_new, req)
    head_name, scale = imp.head, imp.scale
    cfg["model"]["args"] = dict(cfg["model"]["args"], head=head_name, head_args=imp.head_args)
    config.validate(cfg)
    with derived_trainer(cfg, req.output, training_hooks(cfg)) as trainer:
        if trainer.class_names != [*old.class_names, *new_classes]:  # the union reader puts the old classes first
            raise RuntimeError("the union's classes are not the old ones followed by the new ones")
        state = extended_state(old.method.state_dict(), trainer.method.state_dict(), attr, imp.rows, imp.means, k_old,
                               imp.bias)
        load_weights(trainer, state)
        trainer.method.freeze_norm = True  # a few images per class: keep the run's BatchNorm statistics
        fisher_images = 0
        if req.ewc is not None:
            penalty, fisher_images = _fisher_penalty(trainer, old, req.ewc)
            trainer.method.penalties["ewc"] = penalty
        del old
    log.info(f"extending {req.run} ({k_old} classes) with {k_new} classes of {req.add} ({new['name']}): "
             f"{req.shots} shot(s) each, head {head_name} (s={scale:g}), {req.forgetting}"
             + (f", {req.finetune_epochs} fine-tune epoch(s) on {len(trainer.train_ds)} images" if req.finetune_epochs
                else "") + (f", EWC lambda {req.ewc:g} (Fisher of {fisher_images} old images)" if req.ewc else ""))
    log.info(f"run directory: {req.output}")
    final = trainer.fit() if req.finetune_epochs else trainer.finish_untrained()
    old_top1, new_top1 = _old_new_top1(req.output / "eval" / "per_class.csv", k_old)
    before = read_final(req.run)[0] or {}  # {} when the run did not finish or its final.json is damaged
    final.update(old_top1=old_top1, new_top1=new_top1,
                 old_top1_before=before.get("top1") if before.get("split") == test_split else None,
                 shots=req.shots, shot_seed=req.shots_seed(cfg), finetune_epochs=req.finetune_epochs,
                 forgetting=req.forgetting,
                 rehearsal=req.rehearsal, ewc_lambda=req.ewc, fisher_images=fisher_images, head=head_name,
                 old_weights="kept" if imp.bias is None and head_name == old_head else req.old_weights,
                 cosine_scale=scale, n_old_classes=k_old, n_new_classes=k_new, extended_from=str(req.run),
                 added=str(req.add), added_name=new["name"])
    write_json(req.output / "final.json", final)
    log.info(f"old classes top-1 {_fmt(final['old_top1_before'])} -> {old_top1:.2f}, new classes {new_top1:.2f}, "
             f"all {final['top1']:.2f} ({final['n_images']} test images)")
    log.info(f"wrote {req.output}/final.json, config.yaml, train.log, checkpoints/last.pt")
    return final


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"
