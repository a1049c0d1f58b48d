"""The recipe schema: every key with its default (:data:`DEFAULTS`), the types and choices each accepts, and the
keys of ``train.stages``, ``loss.aux`` entries and ``distill``. :mod:`fgvc.config` loads, merges and checks
recipes against it."""
from __future__ import annotations

from typing import Any

__all__ = ["DEFAULTS", "TYPES", "CHOICES", "FREE_FORM", "STAGE_KEYS", "STAGE_REQUIRED", "AUX_KEYS", "AUX_REQUIRED",
           "DISTILL_KEYS", "DISTILL_DEFAULTS", "NoneType"]

NoneType = type(None)

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "data": {
        "name": "cub200",
        "root": "datasets",
        "img_size": 448,
        "crop_pct": 0.875,
        "resize": None,
        "num_workers": 4,
        "train_split": "train",
        "val_split": "val",
        "test_split": "test",
        "on_bad_image": "error",
        "max_images": None,
        # a findings.csv of `python -m fgvc.datasets audit` or a text file of image paths (absolute or relative to
        # data.root) to leave out of the training split only (fgvc.data.exclude); null: keep every image
        "exclude": None,
        "args": {},
        "augment": {"hflip": True, "color_jitter": 0.0, "random_resized_crop": False, "rrc_scale": [0.35, 1.0]},
        # decode large JPEGs at a reduced scale, never below what the transform needs (fgvc.data.decode); off by
        # default: faster, but it changes pixels (Flowers mini test top-1 -0.6 to -1.8 points in our runs)
        "reduced_decode": False,
        # pre-resized copies, bit-identical (python -m fgvc.datasets cache): auto (data.root/.fgvc_cache), off, a folder
        "cache": "auto",
        # training batches: random (a seeded shuffle) or pk (P classes x K images, fgvc.data.samplers.PKSampler;
        # P x K = train.batch_size, p: null derives P = train.batch_size / k). Evaluation loaders ignore both.
        "sampler": "random",
        "sampler_args": {"p": None, "k": 4},
    },
    "model": {"name": "baseline", "backbone": "resnet50", "pretrained": True, "pretrained_file": None,
              "backbone_args": {}, "args": {}},
    "loss": {"name": "cross_entropy", "args": {}, "aux": []},
    "train": {
        "epochs": 10,
        "batch_size": 32,
        "lr": 0.01,
        "max_steps": None,
        "device": "auto",
        "optimizer": "sgd",
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1e-4,
        "backbone_lr_scale": 1.0,
        "layer_decay": None,  # layer-wise lr decay of the backbone (fgvc.engine.optim), e.g. 0.75 for a ViT-B
        "freeze_norm": False,
        "scheduler": "cosine",
        "warmup_epochs": 0,
        "warmup_lr": 1e-5,
        "min_lr": 0.0,
        "decay_epochs": 2,
        "decay_rate": 0.9,
        "amp": "none",
        "grad_accum": 1,
        "clip_grad": None,
        "ema": False,
        "ema_decay": 0.999,
        "channels_last": "auto",
        "compile": False,
        "deterministic": False,
        "on_nan": "stop",
        "mixup": 0.0,
        "cutmix": 0.0,
        "stages": [],
        "eval_every": 1,
        "checkpoint_every_steps": 0,
        "threads": 0,
        "tensorboard": False,  # per-epoch scalars and attention maps to RUN/tb (fgvc.hooks.tensorboard)
    },
    "eval": {"tta_flip": False, "batch_size": 0, "protocols": ["classification"]},
    "output": {"root": "runs", "name": None},
    # knowledge distillation (fgvc.engine.distill): null = off, or {teacher: RUN_DIR, alpha, temperature, checkpoint}
    # with the keys of DISTILL_KEYS, those left out at DISTILL_DEFAULTS
    "distill": None,
}

# keys whose default does not show their type
TYPES: dict[str, tuple[type, ...]] = {
    "train.max_steps": (int, NoneType),
    "train.clip_grad": (float, int, NoneType),
    "train.layer_decay": (float, int, NoneType),
    "model.pretrained_file": (str, NoneType),
    "output.name": (str, NoneType),
    "data.resize": (int, NoneType),
    "data.val_split": (str, NoneType),
    "data.max_images": (int, NoneType),
    "data.exclude": (str, NoneType),
    "train.channels_last": (str, bool),
    "data.sampler_args.p": (int, NoneType),
    "data.cache": (str, bool),  # YAML reads a bare off as false
    "distill": (dict, NoneType),
}
CHOICES: dict[str, tuple[Any, ...]] = {
    "train.device": ("auto", "cpu", "cuda"),
    "train.optimizer": ("sgd", "adamw"),
    "train.scheduler": ("cosine", "step", "none"),
    "train.amp": ("none", "auto", "bf16", "fp16"),
    "train.on_nan": ("stop", "skip"),
    "train.channels_last": ("auto", True, False),
    "data.on_bad_image": ("error", "skip"),
    "data.sampler": ("random", "pk"),
}
FREE_FORM = {"data.args", "model.args", "model.backbone_args", "loss.args", "distill"}  # distill: DISTILL_KEYS
STAGE_KEYS = {"name": str, "epochs": int, "lr": float, "backbone_lr_scale": float}
STAGE_REQUIRED = ("name", "epochs")
AUX_KEYS = {"name": str, "weight": float, "args": dict, "lr_scale": float}
AUX_REQUIRED = ("name",)
DISTILL_KEYS = {"teacher": str, "alpha": float, "temperature": float, "checkpoint": str}
DISTILL_DEFAULTS = {"alpha": 0.5, "temperature": 4.0, "checkpoint": "last"}
