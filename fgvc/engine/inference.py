"""One way to load and run a trained model: :class:`TrainedRun`.

Every command that reads a trained method (``fgvc.evaluate``, ``fgvc.visualize``, the trainer's final
test, and what comes after: embed, explain, report, export) starts here::

    run = TrainedRun.load("runs/cub200_wsdan-...", checkpoint="last")   # config, method, classes, runtime
    out = run.collect("test", ["logits", "embedding"])                   # one pass over a split
    one = run.infer(images)                                             # Outputs of one batch

A recipe (``.yaml``) instead of a run gives the recipe's method with its pretrained backbone and an untrained
head, in eval mode (:meth:`TrainedRun.from_recipe`): the "frozen ImageNet features" baseline of embed, retrieval,
kNN and linear probes. Its class names are those of the recipe's data set.

``collect`` runs a split once through :meth:`Method.infer` with a progress bar, in the run's runtime
(device, AMP, channels-last, threads), optionally averaging with the horizontally flipped image (TTA),
sharded over DDP ranks and gathered back in dataset order, and returns the requested fields of
:class:`~fgvc.methods.base.Outputs` as CPU float tensors.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from fgvc import config
from fgvc.engine import builder
from fgvc.engine.distributed import DistEnv, all_gather_tensors
from fgvc.errors import CheckpointError, ConfigError, UserError
from fgvc.methods.base import OUTPUT_FIELDS, Method, Outputs
from fgvc.data.transforms import Transform
from fgvc.data.unlabeled import UNLABELED_CLASS
from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.device_input import to_model_input
from fgvc.engine.pruned_arch import reshape_like
from fgvc.engine.run_state import locate_checkpoint
from fgvc.engine.state import seed_everything

__all__ = ["autocast", "Runtime", "Collected", "TrainedRun", "RECIPE_SUFFIXES"]

RECIPE_SUFFIXES = (".yaml", ".yml")


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for a resolved AMP mode (``none``, ``bf16``, ``fp16``)."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@dataclass
class Runtime:
    """Where and how a method runs: device, resolved AMP mode, channels-last inputs, CPU threads, DDP ranks."""

    device: torch.device
    amp: str = "none"
    channels_last: bool = False
    threads: int = 0
    env: DistEnv = field(default_factory=DistEnv)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], method: Method, strict: bool = False, env: DistEnv | None = None
                    ) -> "Runtime":
        tr = cfg["train"]
        device = builder.resolve_device(tr["device"])
        if env is not None and env.enabled and device.type == "cuda":
            device = torch.device("cuda", env.local_rank)
        return cls(device, builder.resolve_amp(tr["amp"], device, strict),
                   builder.resolve_channels_last(tr["channels_last"], method), tr["threads"], env or DistEnv())

    def prepare(self, method: Method) -> Method:
        """Move ``method`` to the device (and memory format); set the thread count."""
        if self.threads:
            torch.set_num_threads(self.threads)
        method.to(self.device)
        if self.channels_last:
            method.to(memory_format=torch.channels_last)
        return method

    def inputs(self, images: Tensor) -> Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


@dataclass
class Collected:
    """The fields of one pass over a split, in dataset order (CPU, float32 for tensors of floats)."""

    targets: Tensor  # N
    headline: str
    logits: dict[str, Tensor] = field(default_factory=dict)  # each N, K
    embedding: Tensor | None = None  # N, D
    feature_map: Tensor | None = None  # N, C, h, w
    maps: Tensor | None = None  # N, M, h, w
    boxes: Tensor | None = None  # N, 4

    @property
    def prediction(self) -> Tensor:
        return self.logits[self.headline]


def flip_average(out: Outputs, flipped: Outputs) -> Outputs:
    """TTA: logits as the log of the mean of both views' probabilities, embeddings averaged; the rest unflipped."""
    logits = {k: (v.float().softmax(1) + flipped.logits[k].float().softmax(1)).log() for k, v in out.logits.items()}
    emb = None if out.embedding is None else (out.embedding.float() + flipped.embedding.float()) / 2
    return Outputs(logits, out.headline, emb, out.feature_map, out.maps, out.boxes)


class TrainedRun:
    """A trained method ready for inference, with everything needed to feed it data.

    ``run_dir`` is where its results go by default: the run directory, or for a recipe
    ``<output.root>/<recipe name>-frozen`` (``recipe`` is then the recipe's path)."""

    def __init__(self, cfg: dict[str, Any], method: Method, data_config: dict[str, Any], class_names: Sequence[str],
                 runtime: Runtime, run_dir: Path | None = None, checkpoint: str = "last", weights: str = "model",
                 recipe: Path | None = None) -> None:
        self.cfg, self.method, self.runtime = cfg, method, runtime
        self.data_config = {k: tuple(v) if isinstance(v, list) else v for k, v in data_config.items()}
        self.class_names, self.run_dir = list(class_names), run_dir
        self.checkpoint, self.weights, self.recipe = checkpoint, weights, recipe
        self.datasets: dict[str, Any] = {}  # eval-transformed splits, built once
        self.backend: Any = None  # a fgvc.deploy.fast_infer.Backend, installed by fgvc.deploy.fast_infer.use_backend (None: infer() throughout)

    @classmethod
    def load(cls, target: str | Path, checkpoint: str = "last", overrides: Iterable[str] = (),
             weights: str = "auto") -> "TrainedRun":
        """A run directory (its ``checkpoints/<checkpoint>.pt``), a checkpoint file, or a recipe (``.yaml``: see
        :meth:`from_recipe`); ``overrides`` are ``--set`` items; ``weights``: ``auto`` (the EMA weights when the run
        kept an EMA, as final.json did), ``ema`` or ``model``."""
        target = Path(target)
        if target.suffix in RECIPE_SUFFIXES and not target.is_dir():
            return cls.from_recipe(target, checkpoint, overrides, weights)
        run_dir, ckpt_path = locate_checkpoint(target, checkpoint)  # a clear error for a path that is not a run
        state = load_checkpoint(ckpt_path)
        require_keys(state, ckpt_path, ("config", "model", "class_names", "data_config"))
        cfg = config.from_saved(state["config"], overrides)
        model_cfg = dict(cfg["model"], pretrained=False, pretrained_file=None)  # the checkpoint holds the weights
        method = builder.build_method_from_cfg(dict(cfg, model=model_cfg), len(state["class_names"]))
        if weights == "ema" and state.get("ema") is None:
            raise ConfigError(f"--weights ema: {ckpt_path} holds no EMA weights (the run had train.ema=false)")
        use_ema = state.get("ema") is not None and weights in ("auto", "ema")
        with fitting_weights(ckpt_path, overrides):
            reshape_like(state, method)  # a pruned run (fgvc.prune): narrow its layers to the checkpoint's
            method.load_state_dict(state["ema"] if use_ema else state["model"])
            method.load_extra_state(state.get("extra") or {})
        return cls._ready(cfg, method, state["data_config"], state["class_names"], run_dir, checkpoint,
                          "ema" if use_ema else "model")

    @classmethod
    def from_recipe(cls, recipe: str | Path, checkpoint: str = "last", overrides: Iterable[str] = (),
                    weights: str = "auto") -> "TrainedRun":
        """The recipe's method as training would start it (seeded with the recipe's seed): the pretrained backbone
        of ``model.pretrained``/``model.pretrained_file``, untrained head and part layers, in eval mode. Its
        classes are those of the recipe's train split; a recipe has no checkpoint (``last`` only) and no EMA."""
        recipe = Path(recipe)
        if checkpoint != "last":
            raise ConfigError(f"--checkpoint {checkpoint}: {recipe} is a recipe, which has no checkpoints; give a run "
                              "directory for its best checkpoint, or drop --checkpoint for the pretrained backbone")
        if weights == "ema":
            raise ConfigError(f"--weights ema: {recipe} is a recipe, which has no EMA weights; drop --weights")
        cfg, _ = config.load_recipe(recipe, overrides)
        classes = list(builder.build_split(cfg, cfg["data"]["train_split"], False, None).classes)
        seed_everything(cfg["seed"])
        method = builder.build_method_from_cfg(cfg, len(classes))
        home = Path(cfg["output"]["root"]) / f"{cfg['output']['name'] or recipe.stem}-frozen"
        source = "pretrained" if cfg["model"]["pretrained"] else "random-init"
        return cls._ready(cfg, method, method.data_config(), classes, home, checkpoint, source, recipe)

    @classmethod
    def _ready(cls, cfg: dict[str, Any], method: Method, data_config: dict[str, Any], class_names: Sequence[str],
               run_dir: Path, checkpoint: str, weights: str, recipe: Path | None = None) -> "TrainedRun":
        """The method on the runtime the config asks for, in eval mode."""
        runtime = Runtime.from_config(cfg, method)
        return cls(cfg, runtime.prepare(method).eval(), data_config, class_names, runtime, run_dir, checkpoint,
                   weights, recipe)

    def describe(self) -> str:
        """What is evaluated, for a command's header line: ``last checkpoint, ema weights`` or the recipe's."""
        if self.recipe is not None:
            return f"recipe {self.recipe.name}: {self.weights} backbone, untrained head"
        return f"{self.checkpoint} checkpoint, {self.weights} weights"

    # ------------------------------------------------------------------- data
    @property
    def label_free(self) -> bool:
        """Trained without labels (``data.name: unlabeled``, one pseudo-class): it has no classes of its own, so its
        embedding is scored on any labelled data (kNN, linear probe, retrieval), never by its classifier."""
        return self.class_names == [UNLABELED_CLASS]

    def dataset(self, split: str, same_classes: bool = True) -> Any:
        """The eval-transformed dataset of ``split``. ``same_classes``: refuse data whose classes differ from the
        model's (what classification, kNN and linear probes need; retrieval and embed take any species), unless the
        run is :attr:`label_free`."""
        if split not in self.datasets:
            ds = builder.build_split(self.cfg, split, False, self.data_config)
            if self.recipe is None and self.run_dir is not None:
                ds.bad_log = self.run_dir / "bad_images.tsv"
            self.datasets[split] = ds
        ds = self.datasets[split]
        if same_classes and list(ds.classes) != self.class_names and not self.label_free:
            raise ConfigError(
                f"the classes of {self.cfg['data']['root']} ({len(ds.classes)}) differ from the ones this model was "
                f"trained on ({len(self.class_names)}); use the run's own data set (drop --set data.root/data.name): "
                "classification, knn and linear need the run's classes, while --protocol retrieval and fgvc.embed "
                "take any species")
        return ds

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def infer(self, images: Tensor, tta: bool = False) -> Outputs:
        """:class:`Outputs` of one batch ``B, 3, H, W`` (normalised as ``data_config`` says), on the run's device."""
        self.method.eval()
        x = self.inputs(images)
        with autocast(self.runtime.device, self.runtime.amp):
            out = self.method.infer(x)
            if tta:
                out = flip_average(out, self.method.infer(torch.flip(x, dims=[3])))
        return out

    def inputs(self, images: Tensor) -> Tensor:
        """``images`` on the run's device in its memory format; uint8 batches (:meth:`collect`'s loader) normalised
        there as ``data_config`` says, float ones taken as already normalised."""
        return to_model_input(images, self.runtime.device, self.data_config["mean"], self.data_config["std"],
                              self.runtime.channels_last)

    def infer_logits(self, images: Tensor, tta: bool = False, every_head: bool = False) -> Outputs:
        """:class:`Outputs` of one batch where only the headline logits (``every_head``: all logits) are needed, on the
        backend that :func:`fgvc.deploy.fast_infer.use_backend` installed (its other fields may be None), else :meth:`infer`'s."""
        if self.backend is None:
            return self.infer(images, tta)
        return self.backend.outputs(images, tta, every_head)

    def collect(self, split: str, fields: Iterable[str] = ("logits",), tta: bool = False,
                desc: str | None = None, same_classes: bool = True) -> Collected:
        """One pass over ``split``: the requested ``fields`` of :class:`Outputs` for every image, and the targets
        (``same_classes``: see :meth:`dataset`)."""
        fields = list(fields)
        unknown = [f for f in fields if f not in OUTPUT_FIELDS]
        if unknown:
            raise ValueError(f"unknown output field(s) {unknown}; choose from {OUTPUT_FIELDS}")
        ds = self.dataset(split, same_classes)
        env = self.runtime.env
        bs = config.eval_batch_size(self.cfg, env.world_size)
        loader = builder.make_loader(_uint8_view(ds, self.data_config), bs, self.cfg["data"]["num_workers"],
                                     False, 0, env, self.runtime.device.type == "cuda",
                                     channels_last=self.runtime.channels_last)
        was_training = self.method.training
        parts: dict[str, list[Any]] = {f: [] for f in fields}
        targets: list[Tensor] = []
        headline = ""
        show = env.is_main and sys.stderr.isatty()
        for images, labels in tqdm(loader, desc=desc or split, leave=False, disable=not show, dynamic_ncols=True):
            out = self.infer_logits(images, tta, every_head=True) if fields == ["logits"] else self.infer(images, tta)
            headline = out.headline
            for f in fields:
                value = getattr(out, f)
                parts[f].append({k: v.float().cpu() for k, v in value.items()} if f == "logits"
                                else None if value is None else value.float().cpu())
            targets.append(labels.cpu())
        self.method.train(was_training)
        order = _dataset_order(len(ds), env)
        result = Collected(_gather([torch.cat(targets)] if targets else [torch.zeros(0, dtype=torch.long)], env, order),
                           headline)
        for f in fields:
            if f == "logits":
                keys = parts[f][0].keys() if parts[f] else []
                result.logits = {k: _gather([p[k] for p in parts[f]], env, order) for k in keys}
            elif parts[f] and parts[f][0] is not None:
                setattr(result, f, _gather(parts[f], env, order))
        return result


def require_keys(state: dict[str, Any], path: Path, keys: Sequence[str]) -> None:
    """A :class:`CheckpointError` when the checkpoint ``state`` lacks any of ``keys`` (written by something else)."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: it is not a checkpoint of an fgvc run (or one "
                              "written by a much older fgvc); use the run's checkpoints/last.pt or retrain")


@contextlib.contextmanager
def fitting_weights(path: Path, overrides: Iterable[str] = ()) -> Any:
    """Turn torch's multi-line ``size mismatch`` / ``Missing key(s)`` error while loading ``path``'s weights into
    the model its config builds into one :class:`CheckpointError` line (a ``--set`` that changes the model, or a
    checkpoint of another fgvc version)."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        first = " ".join(str(exc).replace("\n", " ").split())
        changed = [o for o in overrides if o.split("=", 1)[0].strip().startswith("model.")]
        hint = (f"drop --set {' '.join(changed)}: the checkpoint's model is fixed by the run" if changed else
                "the checkpoint does not fit the model its own config builds (written by another fgvc version?); "
                "use the run's other checkpoint or retrain")
        raise CheckpointError(f"{path}: its weights do not fit the model ({first[:300]}); {hint}") from exc


def _uint8_view(ds: Any, data_config: dict[str, Any]) -> Any:
    """``ds`` with its eval transform stopping at uint8 (a shallow copy: ``ds`` itself keeps its float transform
    for callers that index it), so that the loader's workers pass 4x smaller batches and :meth:`TrainedRun.inputs`
    normalises them (:mod:`fgvc.engine.device_input`); ``ds`` itself when its transform is not fgvc's or normalises
    otherwise than ``data_config`` says."""
    import copy


    tf = getattr(ds, "transform", None)
    wanted = [float(v) for v in (*data_config["mean"], *data_config["std"])]
    if not isinstance(tf, Transform) or not all(abs(a - b) < 1e-9 for a, b in zip((*tf.mean, *tf.std), wanted)):
        return ds
    view = copy.copy(ds)
    view.transform = tf.as_uint8()
    return view


def _dataset_order(n: int, env: DistEnv) -> Tensor | None:
    """The permutation that puts rank-strided shards (rank r holds r, r+W, ...) back into dataset order."""
    if not env.enabled:
        return None
    gathered = torch.cat([torch.arange(r, n, env.world_size) for r in range(env.world_size)])
    return torch.argsort(gathered)


def _gather(chunks: list[Tensor], env: DistEnv, order: Tensor | None) -> Tensor:
    full = all_gather_tensors(torch.cat(chunks), env)
    return full if order is None else full[order]
