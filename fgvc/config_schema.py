"""The recipe schema: every key with its default (:data:`DEFAULTS`), the types, choices and numeric ranges each
accepts, and the keys of ``train.stages``, ``loss.aux`` entries and ``distill``. :mod:`fgvc.config` loads, merges and
checks recipes against it, so a value out of range fails when the recipe loads, not when it is first used.

The keys whose default stands for a derived value (``data.resize: null``, ``eval.batch_size: 0``, the split a command
scores) are resolved by the functions at the end of this file, one per key, which every reader calls (through
:mod:`fgvc.config`); the config itself keeps the recipe's values, so a run directory's ``config.yaml`` means what it
meant when it was written."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["where", "crop_warnings", "DEFAULTS", "TYPES", "CHOICES", "RANGES", "Range", "FREE_FORM", "STAGE_KEYS", "STAGE_REQUIRED", "AUX_KEYS",
           "AUX_REQUIRED", "DISTILL_KEYS", "DISTILL_DEFAULTS", "NoneType", "resolved_resize", "input_geometry", "crop_pct_resize",
           "train_batch_per_process", "eval_batch_size", "scored_split"]

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
        "augment": {"hflip": True, "color_jitter": 0.0, "random_resized_crop": False, "rrc_scale": [0.35, 1.0],
                    # SimCLR's two-view augmentation (fgvc.data.views): what model.name simclr trains on
                    "simclr": {"scale": [0.08, 1.0], "jitter": [0.4, 0.4, 0.4, 0.1],
                               "jitter_p": 0.8, "gray_p": 0.2, "blur_p": 0.5, "blur_sigma": [0.1, 2.0]}},
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
              "backbone_args": {}, "args": {},
              # a run directory whose backbone weights start this run (e.g. a SimCLR run), after model.pretrained
              "init_from": None},
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
    "model.init_from": (str, NoneType),
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
    "train.optimizer": ("sgd", "adamw", "lars", "lamb"),
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


@dataclass(frozen=True)
class Range:
    """The numbers a key accepts: ``lo`` / ``hi`` bounds (None: unbounded), each included unless ``*_open``; ``note``
    says what the key means or gives an example. null passes where :data:`TYPES` allows it."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""

    def allows(self, value: float) -> bool:
        """Whether ``value`` lies in the range."""
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def text(self) -> str:
        """The range as a message says it: ``>= 1``, ``> 0``, ``in (0, 1]``."""
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"{'<' if self.hi_open else '<='} {self.hi:g}"


# numeric keys and the values they accept (fgvc.config.validate checks every one when a recipe loads)
RANGES: dict[str, Range] = {
    "train.lr": Range(0, lo_open=True, note="the learning rate, e.g. 0.01 for SGD, 1e-3 for AdamW"),
    "train.epochs": Range(1),
    "train.batch_size": Range(1, note="images per optimizer step over all processes"),
    "train.max_steps": Range(1),
    "train.grad_accum": Range(1),
    "train.weight_decay": Range(0),
    "train.momentum": Range(0, 1, hi_open=True),
    "train.ema_decay": Range(0, 1, lo_open=True, hi_open=True, note="e.g. 0.999"),
    "train.clip_grad": Range(0, lo_open=True),
    "train.backbone_lr_scale": Range(0, note="0 freezes the backbone's updates"),
    "train.layer_decay": Range(0, 1, lo_open=True, note="e.g. 0.75 for a ViT-B; 1 = no decay"),
    "train.warmup_epochs": Range(0),
    "train.warmup_lr": Range(0),
    "train.min_lr": Range(0),
    "train.decay_epochs": Range(0, lo_open=True, note="epochs between two step decays"),
    "train.decay_rate": Range(0, lo_open=True, note="the step scheduler's factor, e.g. 0.9"),
    "train.mixup": Range(0, note="the Beta(alpha, alpha) of mixup; 0 = off"),
    "train.cutmix": Range(0, note="the Beta(alpha, alpha) of cutmix; 0 = off"),
    "train.eval_every": Range(1, note="validate every N epochs"),
    "train.checkpoint_every_steps": Range(0, note="0 = at the end of each epoch only"),
    "train.threads": Range(0, note="0 = torch's default"),
    "data.img_size": Range(16, note="the crop's side in pixels"),
    "data.crop_pct": Range(0.1, 1.0, note="the crop's share of the resized shorter side, e.g. 0.875 = 448 / 512"),
    "data.max_images": Range(1),
    "data.num_workers": Range(0),
    "data.augment.color_jitter": Range(0),
    "data.augment.simclr.jitter_p": Range(0, 1),
    "data.augment.simclr.gray_p": Range(0, 1),
    "data.augment.simclr.blur_p": Range(0, 1),
    "eval.batch_size": Range(0, note="images per evaluation batch in each process; 0 = train.batch_size split over "
                                     "the processes"),
}


def resolved_resize(data: dict[str, Any]) -> int:
    """The shorter side images are resized to before the ``data.img_size`` crop: ``data.resize`` when a recipe sets
    it, else ``round(img_size / crop_pct)`` (timm's convention; 448 / 0.875 = 512). The one place the null of
    ``data.resize`` is resolved."""
    return int(data["resize"]) if data["resize"] is not None else crop_pct_resize(data)


def input_geometry(data: dict[str, Any], scale: float = 1.0) -> tuple[int, int]:
    """``(crop, resize)`` of a run's transforms: the network's input side ``data.img_size`` and the shorter side
    images are resized to before that crop (:func:`resolved_resize`), both times ``scale`` (a method's
    ``input_scale``, e.g. WS-DAN's ``zoom_source``: larger images, the same geometry)."""
    return round(data["img_size"] * scale), round(resolved_resize(data) * scale)


def crop_pct_resize(data: dict[str, Any]) -> int:
    """``round(data.img_size / data.crop_pct)``: the resize a null ``data.resize`` stands for."""
    return round(data["img_size"] / data["crop_pct"])


def train_batch_per_process(cfg: dict[str, Any], world_size: int = 1) -> int:
    """Images per training batch in each of ``world_size`` processes: ``train.batch_size`` counts the images of one
    optimizer step over all processes, so each takes its share (at least 1)."""
    return max(cfg["train"]["batch_size"] // world_size, 1)


def eval_batch_size(cfg: dict[str, Any], world_size: int = 1) -> int:
    """Images per evaluation batch in each of ``world_size`` processes (1: a single-process pass such as
    ``fgvc.prune``'s or ``fgvc.extend``'s). ``eval.batch_size`` counts per process; its 0 means the training batch,
    split over the processes as in training (:func:`train_batch_per_process`). The one place that 0 is resolved."""
    return cfg["eval"]["batch_size"] or train_batch_per_process(cfg, world_size)


def scored_split(cfg: dict[str, Any], split: str | None = None) -> str:
    """The split a command scores: ``split`` when one is asked for (``--split val``), else ``data.test_split``. The
    one place the default split of evaluate, report, explain, embed, project, visualize and export is chosen."""
    return split or cfg["data"]["test_split"]


def where(origin: dict[str, str], key: str) -> str:
    """`` (from SOURCE)`` of the recipe file or flag that set ``key`` (or a section above it), else ``""``."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        src = origin.get(".".join(parts[:i]))
        if src:
            return f" (from {src})"
    return ""


def crop_warnings(data: dict[str, Any], origin: dict[str, str] | None = None) -> list[str]:
    """A warning when the crop keeps less than 70 % of the resized shorter side (e.g. ``--set data.img_size=160`` on a
    recipe that pins ``data.resize: 512`` trains on the central 31 % of each image)."""
    resize = resolved_resize(data)
    share = data["img_size"] / resize
    if share >= 0.7:
        return []
    src = where(origin or {}, "data.resize")
    return [f"data.img_size={data['img_size']} keeps only the central {share:.0%} of the shorter side after resizing "
            f"to data.resize={resize}{src}: the object may be cut off. Drop data.resize (it is then derived from "
            f"data.crop_pct={data['crop_pct']}: {crop_pct_resize(data)}) or set it near "
            f"{round(data['img_size'] / 0.875)}"]
