"""``python -m fgvc.bench pipeline RECIPE [--set ...] [--images N] [--workers W] [--batch B] [--repeats R]``: images/s
of fgvc's real train and eval loaders against the loader a user would otherwise write.

No model runs: each row iterates a DataLoader over the recipe's own images (decode, augment, collate) and moves each
batch to ``--device``, normalising fgvc's uint8 batches there as the trainer and the evaluator do (on the CPU in the
main process: it is timed). fgvc's training and evaluation batches are uint8 on every device
(:func:`fgvc.engine.device_input.batch_format`). For a channels-last model (CNNs) fgvc's loaders collate
channels-last batches; no row is charged the transpose a contiguous batch still needs before such a model (the
trainer's), so that saving is not counted.

The reference is torchvision's ``ImageFolder`` recipe over the same files, worker count, output size and batch: PIL
open + ``convert("RGB")``, ``RandomResizedCrop`` (+ the recipe's flip and colour jitter) for train, ``Resize`` +
``CenterCrop`` for eval, then ``ToTensor`` and ``Normalize``. fgvc's train split (and its eval split, for the first)
is also timed with the batch format flipped (uint8 / float), the reduced-scale JPEG decode flipped (off by default: it
changes pixels), each lever
switched off in turn (PIL's decoder instead of simplejpeg, no pre-resized cache, a contiguous instead of a
channels-last collate) and with all of them off (float, full size, PIL, no cache, contiguous: fgvc's pipeline before
these levers), so the table shows what each lever buys. A split smaller than ``--images`` is repeated (as in later
epochs).

The main process runs as the trainer's does on a CPU (freed memory kept, :mod:`fgvc.engine.host_memory`) and
normalises on one thread: with no model running, a second intra-op thread would only spin-wait on the cores the
workers need (measured: 11 instead of 3.3 ms of main-process CPU per batch of 32, CUB 160 px), which in training
goes to the model's forward pass instead.

Timing starts when the first batch arrives (worker start-up and that batch are excluded); a row's images/s is the
median over ``--repeats`` passes, interleaved (every row once per repeat) so that a shared machine's changing load
falls on all rows alike. ``per_core`` divides by the worker processes (1 with ``--workers 0``).
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from fgvc import config
from fgvc.benchmarking.results import RESULTS, finish_table
from fgvc.benchmarking.speed import machine_info
from fgvc.config import resolved_resize
from fgvc.data import decode
from fgvc.data.cache import open_cache
from fgvc.engine import builder
from fgvc.engine.device_input import batch_format, to_model_input
from fgvc.engine.distributed import DistEnv
from fgvc.engine.host_memory import keep_freed_memory
from fgvc.errors import BenchError

__all__ = ["PipelineOptions", "run", "reference_transform", "ReferenceImages", "time_loader"]


@dataclass(frozen=True)
class PipelineOptions:
    """What ``python -m fgvc.bench pipeline`` measures (its flags, parsed by :mod:`fgvc.bench`)."""

    recipe: str  # recipe YAML whose data section is measured
    sets: list[str] = field(default_factory=list)  # recipe overrides
    images: int = 256  # images per timed pass of each loader
    workers: int | None = None  # DataLoader worker processes (None: data.num_workers)
    batch: int | None = None  # batch size (None: train.batch_size)
    repeats: int = 3  # timed passes per row; the median is reported
    levers: str = "all"  # all: also each lever off; none: the main rows
    label: str = ""  # stored with every row
    device: str = "cpu"  # where batches go (and uint8 batches are normalised)
    results: str | None = RESULTS  # JSON lines file appended to (None: not written)


# ------------------------------------------------------------------ reference
def reference_transform(cfg: dict[str, Any], train: bool, mean: Sequence[float], std: Sequence[float]) -> Any:
    """The torchvision pipeline a user would write for the recipe's sizes and augmentation."""
    d, aug = cfg["data"], cfg["data"]["augment"]
    ops: list[Any]
    if train:
        ops = [T.RandomResizedCrop(d["img_size"], scale=tuple(aug["rrc_scale"]))]
        ops += [T.RandomHorizontalFlip()] if aug["hflip"] else []
        cj = float(aug["color_jitter"])
        ops += [T.ColorJitter(cj, cj, cj)] if cj > 0 else []
    else:
        ops = [T.Resize(resolved_resize(d)), T.CenterCrop(d["img_size"])]
    return T.Compose(ops + [T.ToTensor(), T.Normalize(mean, std)])


class ReferenceImages(Dataset):
    """torchvision ``ImageFolder``-style samples: ``(transform(PIL RGB image), label)`` for ``(path, label)`` pairs."""

    def __init__(self, items: Sequence[tuple[str, int]], transform: Callable[[Any], torch.Tensor]) -> None:
        self.items, self.transform = list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.transform(img), label


# --------------------------------------------------------------------- timing
def time_loader(loader: DataLoader, prepare: Callable[[torch.Tensor], torch.Tensor], repeats: int,
                device: torch.device = torch.device("cpu")) -> tuple[float, int]:
    """(median images/s over ``repeats`` passes, images timed per pass): the clock starts when a pass's first
    batch arrives; ``prepare`` (the move to ``device`` and, for uint8, the normalisation) runs on every batch and is
    timed up to a device synchronisation."""
    rates, counted = [], 0
    for _ in range(max(repeats, 1)):
        it = iter(loader)
        prepare(next(it)[0])  # worker start-up + the first batch: excluded
        counted, t0 = 0, time.perf_counter()
        for images, _ in it:
            x = prepare(images)
            counted += int(x.shape[0])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        rates.append(counted / seconds if counted and seconds > 0 else 0.0)
        del it
    return statistics.median(rates), counted


def _first(samples: Sequence[Any], n: int) -> list[Any]:
    """The first ``n`` samples, the list repeated when it is shorter (a small split: as in later epochs)."""
    return (list(samples) * -(-n // max(len(samples), 1)))[:n]


@dataclass(frozen=True)
class Variant:
    """One fgvc row: which levers are on."""

    name: str
    uint8: bool | None = None  # uint8 batches normalised on the device; None: fgvc's default there (batch_format)
    reduced: bool | None = None  # reduced-scale JPEG decode; None: the recipe's data.reduced_decode
    simplejpeg: bool = True  # simplejpeg when installed
    cache: bool = True  # the pre-resized cache when one serves the recipe
    channels_last: bool = True  # channels-last collate when the model is channels-last (training loaders)


LEVERS = (Variant("fgvc"), Variant("fgvc, uint8 batches", uint8=True), Variant("fgvc, float batches", uint8=False),
          Variant("fgvc, reduced-scale decode", reduced=True), Variant("fgvc, full-size decode", reduced=False),
          Variant("fgvc, PIL decoder", simplejpeg=False), Variant("fgvc, no cache", cache=False),
          Variant("fgvc, contiguous collate", channels_last=False),
          Variant("fgvc, all levers off", uint8=False, reduced=False, simplejpeg=False, cache=False,
                  channels_last=False))


def _fgvc_loader(cfg: dict[str, Any], split: str, train: bool, dc: dict[str, Any], v: Variant, n: int, batch: int,
                 workers: int, device: torch.device, channels_last: bool) -> tuple[DataLoader, Any]:
    """fgvc's loader for ``split`` as the trainer/evaluator builds it, restricted to its first ``n`` images."""
    cfg = copy.deepcopy(cfg)
    cfg["data"]["reduced_decode"] = cfg["data"]["reduced_decode"] if v.reduced is None else v.reduced
    if not v.cache:
        cfg["data"]["cache"] = "off"
    ds = builder.build_split(cfg, split, train, None)
    ds.samples = _first(ds.samples, n)
    output = batch_format(device) if v.uint8 is None else "uint8" if v.uint8 else "float"
    ds.transform = builder.build_transform(cfg, train, dc, output=output)
    if ds.cache is not None:  # re-open on the subset: the lookup table then holds only these images
        ds.cache = open_cache(cfg["data"]["cache"] if cfg["data"]["cache"] is not True else "auto", cfg["data"]["root"],
                              [s.path for s in ds.samples])
    cl = channels_last and v.channels_last
    return builder.make_loader(ds, batch, workers, train, cfg["seed"], DistEnv(), device.type == "cuda",
                               channels_last=cl), ds


def run(args: PipelineOptions, command: str) -> None:
    """Measure, print and record the table of ``args`` (``command``: the command line stored with each row)."""
    for key in ("images", "repeats"):
        if getattr(args, key) < 1:
            raise BenchError(f"--{key} must be >= 1, got {getattr(args, key)}")
    cfg, _ = config.load_recipe(args.recipe, args.sets)
    keep_freed_memory(args.device)  # as the trainer's process (CPU)
    cfg["model"]["pretrained"] = False  # only the backbone's data config (mean, std, input scale) is needed
    probe = builder.build_split(cfg, cfg["data"]["train_split"], False, None)
    method = builder.build_method_from_cfg(cfg, probe.num_classes)
    dc = method.data_config()
    cl = builder.resolve_channels_last(cfg["train"]["channels_last"], method)  # batches as the model takes them
    del method
    workers = cfg["data"]["num_workers"] if args.workers is None else args.workers
    batch = cfg["train"]["batch_size"] if args.batch is None else args.batch
    if workers < 0 or batch < 1:
        raise BenchError(f"--workers must be >= 0 and --batch >= 1, got {workers} and {batch}")
    n = args.images + batch  # the first batch of each pass is the untimed warm-up
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: CUDA is not available here; use --device cpu")
    variants = LEVERS if args.levers == "all" else LEVERS[:1]
    rows: list[dict[str, Any]] = []
    common = {"channels_last": cl, "workers": workers, "main_threads": 1, "img_size": cfg["data"]["img_size"],
              "dataset": cfg["data"]["name"],
              "root": str(cfg["data"]["root"]), "label": args.label}
    for split, train in ((cfg["data"]["train_split"], True), (config.scored_split(cfg), False)):
        kind = "train" if train else "eval"
        entries: list[_Entry] = []
        seen: set[tuple[Any, ...]] = set()
        cached = _has_cache(cfg, split, train, dc)
        for v in (variants if train else variants[:3]):  # eval: fgvc's loader and its batch format flipped
            fmt = batch_format(device) if v.uint8 is None else "uint8" if v.uint8 else "float"
            reduced = cfg["data"]["reduced_decode"] if v.reduced is None else v.reduced
            key = (fmt, reduced, v.simplejpeg and decode.HAS_SIMPLEJPEG, v.cache and cached,
                   v.channels_last and cl and train)
            if key in seen:
                continue  # the same loader as a row above (e.g. "no cache" where no cache serves the recipe)
            seen.add(key)
            loader, ds = _fgvc_loader(cfg, split, train, dc, v, n, batch, workers, device, cl)
            row = {"loader": f"{v.name} {kind}", "split": split, "batch": batch,
                   "decoder": decode.backend() if v.simplejpeg else "PIL",
                   "reduced_decode": ds.transform.reduced_decode, "output": ds.transform.output,
                   "cache": ds.cache is not None, "device": device.type, **common}
            normalise = lambda x: to_model_input(x, device, dc["mean"], dc["std"])  # noqa: E731
            entries.append(_Entry(row, loader, normalise, v.simplejpeg))
        items = [(str(s.path), s.label) for s in ds.samples]
        ref_ds = ReferenceImages(items, reference_transform(cfg, train, dc["mean"], dc["std"]))
        ref = DataLoader(ref_ds, batch_size=batch, shuffle=train, num_workers=workers, drop_last=train,
                         pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(cfg["seed"]))
        ref_row = {"loader": f"torchvision {kind}", "split": split, "batch": batch, "decoder": "PIL",
                   "reduced_decode": False, "output": "float", "cache": False, "device": device.type, **common}
        entries.insert(0, _Entry(ref_row, ref, lambda x: x.to(device, non_blocking=True), False))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the main process's share, on one thread (see the module docstring)
        try:
            _measure(entries, args.repeats, device)
        finally:
            torch.set_num_threads(threads)
        for e in entries:
            e.row["per_core"] = e.row["images_per_s"] / max(workers, 1)
            e.row["ratio"] = e.row["images_per_s"] / ref_row["images_per_s"] if ref_row["images_per_s"] else 0.0
            rows.append(e.row)
    finish_table("pipeline", rows, command, machine_info(device), args.results)


@dataclass
class _Entry:
    """One row being measured: its record, its loader and what is done to each batch."""

    row: dict[str, Any]
    loader: DataLoader
    prepare: Callable[[torch.Tensor], torch.Tensor]
    simplejpeg: bool
    rates: list[float] = field(default_factory=list)


def _measure(entries: Sequence[_Entry], repeats: int, device: torch.device) -> None:
    """Each repeat times every loader once (interleaved: the load of a shared machine drifts over all rows alike);
    sets each row's ``images`` and median ``images_per_s``."""
    for _ in range(max(repeats, 1)):
        for e in entries:
            previous = decode.use_simplejpeg(e.simplejpeg)  # forked workers and the main process decode alike
            try:
                rate, e.row["images"] = time_loader(e.loader, e.prepare, 1, device)
            finally:
                decode.use_simplejpeg(previous)
            e.rates.append(rate)
    for e in entries:
        e.row["images_per_s"] = statistics.median(e.rates)


def _has_cache(cfg: dict[str, Any], split: str, train: bool, dc: dict[str, Any]) -> bool:
    """Whether a pre-resized cache would serve fgvc's loader of ``split`` (so a "no cache" row means something)."""
    ds = builder.build_split(cfg, split, train, None)
    if ds.cache is None:
        return False
    first = builder.build_transform(cfg, train, dc).first_resize
    return any(ds.cache.lookup(s.path, first) is not None for s in ds.samples[:64])
