"""From a validated recipe to live objects: device, datasets and loaders, method, optimizer,
scheduler. The trainer and the evaluate/visualize commands share these builders."""
from __future__ import annotations

import hashlib
import logging
import warnings
from typing import Any, Callable, Sequence

import torch
from timm.scheduler import create_scheduler_v2
from torch.utils.data import DataLoader, Dataset

from fgvc.engine.distributed import DistEnv, EpochSampler, ShardSampler
from fgvc.config import input_geometry
from fgvc.errors import ConfigError
from fgvc.data import build_dataset, build_transforms
from fgvc.data.cache import open_cache
from fgvc.data.exclude import exclude_samples
from fgvc.data.samplers import PKSampler
from fgvc.data.views import build_two_views
from fgvc.engine.device_input import collate_channels_last
from fgvc.engine.run_state import init_backbone_from
from fgvc.losses import build_criterion
from fgvc.methods import build_method
from fgvc.models.backbone import Backbone

log = logging.getLogger("fgvc")

__all__ = [
    "resolve_device", "resolve_amp", "resolve_channels_last", "build_method_from_cfg", "build_transform", "build_split", "make_loader", "part_backward",
    "build_scheduler", "SeededSamples", "flip_warnings", "pk_shape",
]


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        warnings.warn("train.device=cuda but CUDA is not available here: falling back to the CPU (slow)", stacklevel=2)
        return torch.device("cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_amp(amp: str, device: torch.device, strict: bool = True) -> str:
    """The autocast dtype used for ``train.amp`` on ``device``: ``auto`` is bf16 on CUDA and fp32 (``none``) on the
    CPU, where a bf16 autocast training step measured 1.1-1.3x slower than fp32 (tf_efficientnet_lite0 and WS-DAN,
    160 px, 2 cores with AVX512-BF16, torch 2.14: ``fgvc.bench steps --amp bf16``); ``bf16``
    is bf16 everywhere; ``fp16`` needs CUDA: on the CPU it is a :class:`ConfigError` when training (``strict``)
    and fp32 with a note when only evaluating a run trained elsewhere."""
    if amp == "auto":
        return "bf16" if device.type == "cuda" else "none"
    if amp == "fp16" and device.type != "cuda":
        if strict:
            raise ConfigError("train.amp=fp16 needs CUDA, and this run is on the CPU: use train.amp=auto (bf16 on CUDA, "
                              "fp32 on the CPU), none, or bf16 (slow on most CPUs)")
        log.info("train.amp=fp16 needs CUDA; running fp32 on the CPU")
        return "none"
    if amp == "bf16" and device.type == "cpu":
        log.info("train.amp=bf16 on the CPU: a bf16 training step was 1.1-1.3x slower than fp32 on the 2-core CPU we "
                 "measured (fgvc.bench steps --amp bf16); train.amp=auto runs fp32 here")
    return amp


def resolve_channels_last(setting: str | bool, method: torch.nn.Module) -> bool:
    """``train.channels_last``: ``auto`` is on for CNN backbones (2.2x faster lite0 training on our 2-core CPU, and
    the fast layout on GPUs) and off for vision transformers, whose token layers gain nothing from it."""
    if setting != "auto":
        return bool(setting)
    backbones = [m for m in method.modules() if isinstance(m, Backbone)]
    return bool(backbones) and not any(b.is_transformer for b in backbones)


def build_method_from_cfg(cfg: dict[str, Any], num_classes: int, class_counts: Sequence[int] | None = None,
                          init: bool = False) -> torch.nn.Module:
    """The recipe's method, with its loss section as criterion and ``loss.aux`` as feature losses. ``class_counts``
    (images per class of the train split; the trainer passes ``train_ds.class_counts()``) reach a criterion that
    takes them (``weighted_cross_entropy``); loading a run for inference needs none. ``init``: a new training run,
    whose backbone starts from ``model.init_from``'s when the recipe sets one (a resumed run has its own weights)."""
    method = build_method(cfg["model"], num_classes, build_criterion(cfg["loss"], class_counts), cfg["loss"]["aux"])
    if init and cfg["model"].get("init_from"):  # e.g. a SimCLR run's backbone
        n = init_backbone_from(method, cfg["model"]["init_from"])
        log.info(f"model.init_from: {n} backbone tensors from {cfg['model']['init_from']}")
    return method


def build_transform(cfg: dict[str, Any], train: bool, data_config: dict[str, Any], output: str = "float") -> Any:
    """The recipe's train or eval transform, normalised as the backbone was pretrained; ``data_config["input_scale"]``
    (a method's, e.g. WS-DAN's ``zoom_source``) scales the resize and the crop alike. ``output="uint8"``: batches
    left un-normalised for :func:`fgvc.engine.device_input.to_model_input` to normalise on the device."""
    d, aug = cfg["data"], cfg["data"]["augment"]
    crop, resize = input_geometry(d, float(data_config.get("input_scale", 1.0)))  # e.g. WS-DAN's zoom_source
    if train and data_config.get("two_views"):  # a method that trains on SimCLR's two views (stacked on the height)
        return build_two_views(crop, data_config["mean"], data_config["std"], hflip=aug["hflip"], output=output,
                               **aug["simclr"])
    return build_transforms(
        img_size=crop, resize=resize, mean=data_config["mean"], std=data_config["std"], train=train,
        hflip=aug["hflip"], color_jitter=aug["color_jitter"], random_resized_crop=aug["random_resized_crop"],
        rrc_scale=tuple(aug["rrc_scale"]), output=output, reduced_decode=d.get("reduced_decode", False),
    )


def build_split(cfg: dict[str, Any], split: str, train: bool, data_config: dict[str, Any] | None) -> Dataset:
    """The dataset of one split; without ``data_config`` it has no transform yet (set ``.transform`` later)."""
    d = cfg["data"]
    transform = build_transform(cfg, train, data_config) if data_config is not None else None
    ds = build_dataset(d["name"], d["root"], split, transform=transform, on_bad_image=d["on_bad_image"], **d["args"])
    if train and d.get("exclude"):  # the trainer's training split only
        ds.samples = exclude_samples(ds.samples, d["exclude"], d["root"], split)
    if d["max_images"] is not None and len(ds.samples) > d["max_images"]:
        # smoke runs: a seeded subset, the same for every run of the recipe
        keep = torch.randperm(len(ds.samples), generator=torch.Generator().manual_seed(cfg["seed"]))[: d["max_images"]]
        ds.samples = [ds.samples[i] for i in sorted(keep.tolist())]
    if d.get("cache", False) not in (False, "off"):
        ds.cache = open_cache("auto" if d["cache"] is True else d["cache"], d["root"], [s.path for s in ds.samples])
    return ds


def flip_warnings(dataset: Dataset, settings: dict[str, bool]) -> list[str]:
    """One warning per flip setting that is on (``{"data.augment.hflip": True, ...}``) when a horizontal flip
    changes what the data set's images show (see ``FGVCDataset.hflip_problem``)."""
    problem = dataset.hflip_problem() if any(settings.values()) else None
    return [f"{key}=true, but {problem}: set {key}=false" for key, on in settings.items() if on and problem]


class SeededSamples(Dataset):
    """Seeds each sample's augmentation from (seed, epoch, index).

    Augmentation then depends on neither the worker that loads a sample nor the order of loading,
    so a run resumed mid-epoch, or sharded across DDP ranks, sees exactly the same crops and flips.
    An index ``i + d * len(dataset)`` (``d >= 1``: the PK sampler's d-th repeat of image ``i`` in an epoch, see
    :func:`fgvc.data.samplers.split_token`) loads image ``i`` with an augmentation of its own.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # classes, samples, targets, bad_log ... of the wrapped set
        if name in ("dataset", "seed", "epoch"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        draw, index = divmod(index, len(self))  # draw > 0: a repeated image (fgvc.data.samplers.split_token)
        transform = getattr(self.dataset, "transform", None)
        if hasattr(transform, "set_random_seed"):
            key = (f"{self.seed}/{self.epoch}/{index}" + (f"/{draw}" if draw else "")).encode()
            transform.set_random_seed(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little"))
        return self.dataset[index]


def pk_shape(cfg: dict[str, Any]) -> tuple[int, int] | None:
    """``(P, K)`` of a recipe with ``data.sampler: pk`` (``P`` from ``data.sampler_args.p``, or
    ``train.batch_size / k`` when it is null; :func:`fgvc.config.validate` has checked ``P * K = train.batch_size``),
    else None."""
    d = cfg["data"]
    if d.get("sampler", "random") != "pk":
        return None
    k = int(d["sampler_args"]["k"])
    p = d["sampler_args"].get("p")
    return (int(p) if p is not None else cfg["train"]["batch_size"] // k), k


def make_loader(
    dataset: Dataset, batch_size: int, num_workers: int, train: bool, seed: int, env: DistEnv, pin: bool,
    pk: tuple[int, int] | None = None, channels_last: bool = False,
) -> DataLoader:
    """Train: :class:`EpochSampler` (seeded, sharded, resumable), drop_last, or with ``pk = (P, K)``
    (:func:`pk_shape`) a :class:`fgvc.data.samplers.PKSampler` (P classes x K images per global batch, this rank's
    ``P / W`` classes of each, just as resumable); eval: :class:`ShardSampler` (``pk`` is ignored).
    ``channels_last``: batches in channels-last memory (:func:`fgvc.engine.device_input.collate_channels_last`).
    Workers are not persistent: :class:`SeededSamples` takes each epoch's seed from the main process's copy."""
    n = len(dataset)  # type: ignore[arg-type]
    if train and pk is not None:
        if not hasattr(dataset, "targets"):
            raise ConfigError(f"data.sampler=pk needs the class of every training image, and {type(dataset).__name__} "
                              "has no .targets; use data.sampler=random")
        sampler: Any = PKSampler(dataset.targets, pk[0], pk[1], seed, env.rank, env.world_size)
        if sampler.batch_size != batch_size:
            raise ConfigError(f"data.sampler=pk gives each of the {env.world_size} process(es) {sampler.batch_size} "
                              f"images per batch (P / W x K), but its loader batch is {batch_size}: set "
                              f"train.batch_size = P x K = {pk[0] * pk[1]}")
        dataset = SeededSamples(dataset, seed)
    elif train:
        sampler = EpochSampler(n, seed, True, env.rank, env.world_size)
        dataset = SeededSamples(dataset, seed)
    else:
        sampler = ShardSampler(n, env.rank, env.world_size)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, pin_memory=pin,
        collate_fn=collate_channels_last if channels_last else None,
        drop_last=train and n >= batch_size * env.world_size, persistent_workers=False,
        # its own generator: creating an iterator must not consume the global torch RNG (exact resume)
        generator=torch.Generator().manual_seed(seed),
    )


def part_backward(scaler: torch.amp.GradScaler, accum: int, env: DistEnv, distill: Any = None
                  ) -> Callable[[torch.Tensor], None] | None:
    """What the trainer hands a method as :attr:`fgvc.methods.base.Method.backward_part`: backpropagate a finished
    part of the step's loss now, exactly as the trainer backpropagates the loss it is returned
    (``scaler.scale(part / accum)``); None under DDP (the gradient all-reduce belongs to the one backward of the
    step's returned loss) and with distillation (its loss reads the method's logits after the step)."""
    if env.enabled or distill is not None:
        return None

    def backward(part: torch.Tensor) -> None:
        scaler.scale(part.float() / accum).backward()

    return backward


def build_scheduler(optimizer: torch.optim.Optimizer, tr: dict[str, Any], epochs: int, updates_per_epoch: int) -> Any:
    """timm scheduler stepped per optimizer update: warmup + cosine, or step decay (x decay_rate every
    decay_epochs, as in the WS-DAN paper), or none (constant)."""
    if tr["scheduler"] == "none":
        return None
    sched, _ = create_scheduler_v2(
        optimizer, sched=tr["scheduler"], num_epochs=epochs, decay_epochs=tr["decay_epochs"],
        decay_rate=tr["decay_rate"], min_lr=tr["min_lr"], warmup_lr=tr["warmup_lr"],
        warmup_epochs=tr["warmup_epochs"], cooldown_epochs=0, step_on_epochs=False,
        updates_per_epoch=max(updates_per_epoch, 1),
    )
    return sched
