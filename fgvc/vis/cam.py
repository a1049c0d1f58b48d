"""Class activation maps of a trained fgvc method, computed by pytorch-grad-cam (``pytorch_grad_cam``).

* ``gradcam``: Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization"): the target layer's activations weighted by the spatial mean of the gradient
  of the class logit, ReLU.
* ``gradcam++``: Grad-CAM++ (Chattopadhay et al. 2018): weights from higher-order gradient terms, better at
  several instances of a class.
* ``scorecam``: Score-CAM (Wang et al. 2020): gradient-free; each activation channel masks the input and the
  class score of the masked image weights it (one forward pass per channel: slow on large layers).
* ``attention``: no CAM at all: the mean of the method's own maps (WS-DAN parts, CBAM spatial gates, RA-CNN
  zoom masks; the feature map's channel mean for methods without maps), as ``fgvc.visualize`` draws them.

The CAM library sees ``model(x) -> logits``: :class:`LogitsModel` wraps the method's one inference call
(:meth:`~fgvc.methods.base.Method.infer`). For methods whose forward is multi-pass it returns the logits of the
first pass, on the raw image: WS-DAN's ``raw`` (not ``refined``, which also averages a second pass on the
object crop) and RA-CNN's ``scale1`` (not ``fused``); every other method's headline logits. The target layer
is then the one that pass runs through, so the map explains what the method saw in the image as given.

The target layer is chosen per backbone (:func:`default_layer`): a CNN's last stage (timm ``feature_info``,
i.e. the module whose output is the backbone's feature map); a ViT/DeiT/EVA/BEiT's last block's ``norm1`` (patch
tokens reshaped to ``h x w``, the class / distillation / register tokens dropped by the model's
``num_prefix_tokens``); a Swin's last stage (NHWC to NCHW). ``layer="dotted.name"`` (relative to the method, e.g.
``backbone.model.layer3``) overrides it; a wrong name is a :class:`~fgvc.errors.ConfigError` listing valid ones.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.extras import require
from fgvc.methods.base import Method, Outputs
from fgvc.vis.attention_figure import maps_or_cam
from fgvc.vis.overlay import check_batch, upsample_maps

if TYPE_CHECKING:
    from fgvc.engine.inference import TrainedRun

__all__ = ["CAM_METHODS", "CAM_CHOICES", "FIRST_PASS_KEYS", "LogitsModel", "TargetLayer", "first_pass_key",
           "default_layer", "resolve_layer", "cam_maps", "cam_name"]

CAM_METHODS = ("gradcam", "gradcam++", "scorecam")  # computed by pytorch-grad-cam
CAM_CHOICES = CAM_METHODS + ("attention",)  # + the method's own maps
FIRST_PASS_KEYS = ("raw", "scale1")  # WS-DAN's raw view, RA-CNN's first scale: the first pass, on the raw image
_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM", "attention": "attention"}


def cam_name(cam: str) -> str:
    """The display name of a ``--cam`` choice (``gradcam`` -> ``Grad-CAM``)."""
    return _TITLES.get(cam, cam)


def first_pass_key(out: Outputs) -> str:
    """The logits key a CAM explains: the first (raw image) pass of a multi-pass method, else the headline."""
    for key in FIRST_PASS_KEYS:
        if key in out.logits:
            return key
    return out.headline


class LogitsModel(nn.Module):
    """``model(x: B, 3, H, W) -> B, K``: the first-pass logits of ``method.infer`` (see :func:`first_pass_key`),
    as float32. Remembers the last input size, which the token reshape of a transformer needs."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method
        self.input_size: tuple[int, int] = (0, 0)
        self.key: str | None = None

    def forward(self, x: Tensor) -> Tensor:
        self.input_size = (int(x.shape[-2]), int(x.shape[-1]))
        out = self.method.infer(x)
        self.key = first_pass_key(out)
        return out.logits[self.key].float()  # B, K


@dataclass
class TargetLayer:
    """The module a CAM reads, its dotted name in the method, and how its output becomes ``B, C, h, w``."""

    name: str
    module: nn.Module
    reshape: Callable[[Tensor], Tensor] | None


def _backbone_prefix(method: Method) -> str:
    for name, module in method.named_modules():
        if module is method.backbone:
            return name
    raise ConfigError(f"{type(method).__name__} has no backbone module among its children; pass --layer NAME")


def _feature_module_name(timm_model: nn.Module) -> str | None:
    """The timm module whose output is the last feature map (``feature_info``), as a name of ``timm_model``."""
    info = getattr(timm_model, "feature_info", None)
    if info is None:
        return None
    name = info.module_name()[-1] if hasattr(info, "module_name") else info[-1].get("module") if len(info) else None
    if not name:
        return None
    modules = dict(timm_model.named_modules())
    for candidate in (name, name.replace(".", "_")):  # features_only models flatten dotted names with '_'
        if candidate in modules:
            return candidate
    return None


def default_layer(method: Method) -> str:
    """The dotted name (in ``method``) of the layer a CAM reads by default for the method's backbone."""
    bb = method.backbone
    prefix = f"{_backbone_prefix(method)}.model"
    model = bb.model
    if getattr(bb, "is_transformer", False):
        blocks = getattr(model, "blocks", None)
        if blocks is not None and len(blocks):  # ViT, DeiT, EVA, BEiT: the block the feature map is taken after
            i = bb.out_index if bb.out_index is not None else len(blocks) - 1
            i = i % len(blocks)
            if hasattr(blocks[i], "norm1"):
                return f"{prefix}.blocks.{i}.norm1"
            return f"{prefix}.blocks.{i}"
        layers = getattr(model, "layers", None)
        if layers is not None and len(layers):  # Swin: the last stage's output
            i = (bb.out_index if bb.out_index is not None else len(layers) - 1) % len(layers)
            return f"{prefix}.layers.{i}"
    name = _feature_module_name(model)
    if name is not None:
        return f"{prefix}.{name}"
    raise ConfigError(f"cannot choose a CAM layer for backbone '{bb.name}' automatically; pass --layer NAME "
                      f"(e.g. {', '.join(_suggestions(method, ''))})")


def _suggestions(method: Method, wrong: str, n: int = 6) -> list[str]:
    """Valid layer names close to ``wrong``, else the backbone's last few top-level stages."""
    names = [n for n, _ in method.named_modules() if n]
    close = difflib.get_close_matches(wrong, names, n=n, cutoff=0.6) if wrong else []
    if close:
        return close
    prefix = f"{_backbone_prefix(method)}.model."
    top = [n for n in names if n.startswith(prefix) and "." not in n[len(prefix):]]
    return (top or names)[-n:]


def _token_reshape(model: nn.Module, logits_model: LogitsModel, channels_last: bool) -> Callable[[Tensor], Tensor]:
    """A reshape for transformer layers: tokens ``B, N, C`` (prefix tokens dropped) or NHWC maps -> ``B, C, h, w``."""
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    patch_embed = getattr(model, "patch_embed", None)

    def grid(n: int) -> tuple[int, int]:
        h, w = logits_model.input_size
        if patch_embed is not None and hasattr(patch_embed, "dynamic_feat_size") and h and w:
            gh, gw = (int(v) for v in patch_embed.dynamic_feat_size((h, w)))
            if gh * gw == n:
                return gh, gw
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ConfigError(f"cannot reshape {n} tokens of the CAM layer to a square map; pass another --layer")
        return side, side

    def reshape(t: Tensor) -> Tensor:
        if t.ndim == 4:
            return t.permute(0, 3, 1, 2) if channels_last else t  # NHWC (Swin) -> B, C, h, w
        if t.ndim != 3:
            raise ConfigError(f"the CAM layer gives shape {tuple(t.shape)}, not tokens or a map; pass another --layer")
        n = t.shape[1]
        tokens = t[:, prefix:] if prefix and n > prefix else t  # drop class / distillation / register tokens
        gh, gw = grid(tokens.shape[1])
        return tokens.reshape(t.shape[0], gh, gw, t.shape[2]).permute(0, 3, 1, 2)  # B, C, h, w

    return reshape


def resolve_layer(method: Method, logits_model: LogitsModel, layer: str | None = None) -> TargetLayer:
    """The :class:`TargetLayer` named ``layer`` (dotted, relative to the method), or the backbone's default."""
    name = layer or default_layer(method)
    modules = dict(method.named_modules())
    if name not in modules or not name:
        raise ConfigError(f"--layer '{layer}' is not a module of {type(method).__name__}; valid names include "
                          f"{', '.join(_suggestions(method, name or ''))} (default for this backbone: "
                          f"{default_layer(method)})")
    module = modules[name]
    bb = method.backbone
    reshape = None
    if getattr(bb, "is_transformer", False) and name.startswith(f"{_backbone_prefix(method)}.model"):
        nhwc = not hasattr(bb.model, "blocks") and not isinstance(module, (nn.Conv2d, nn.BatchNorm2d))  # Swin
        reshape = _token_reshape(bb.model, logits_model, nhwc)
    return TargetLayer(name, module, reshape)


def _check_layer(logits_model: LogitsModel, target: TargetLayer, probe: Tensor) -> None:
    """One forward pass on ``probe`` (one image): the layer must run and give a map (after its reshape)."""
    seen: list[Any] = []
    handle = target.module.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            logits_model(probe)
    finally:
        handle.remove()
    if not seen:
        raise ConfigError(f"--layer '{target.name}' does not run in the method's forward pass; choose a layer of "
                          "the backbone, e.g. its last stage (the default)")
    out = seen[0]
    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    if not isinstance(out, Tensor) or (target.reshape(out) if target.reshape else out).ndim != 4:
        raise ConfigError(f"--layer '{target.name}' gives {shape}, not a spatial map (B, C, h, w, or tokens of a "
                          "transformer); choose a convolutional stage or a transformer block")


def _cam_class(cam: str) -> Any:
    lib = require("pytorch_grad_cam", "grad-cam", f"--cam {cam}")
    return {"gradcam": lib.GradCAM, "gradcam++": lib.GradCAMPlusPlus, "scorecam": lib.ScoreCAM}[cam]


def _attention_maps(run: "TrainedRun", images: Tensor) -> np.ndarray:
    maps, _ = maps_or_cam(run.infer(images))  # B, M, h, w
    return upsample_maps(maps.float().mean(1, keepdim=True).cpu(), images.shape[-2:])[:, 0].numpy()  # B, H, W


def cam_maps(run: "TrainedRun", images: Tensor, targets: Sequence[int] | Tensor | None, cam: str = "gradcam",
             layer: str | None = None, batch_size: int = 16) -> np.ndarray:
    """Maps ``B, H, W`` (float32 in ``[0, 1]``, each min-max scaled; ``H, W`` = the images') of ``images: B, 3, H,
    W`` (normalised as ``run.data_config`` says) for the classes ``targets`` (``None``: the headline prediction).

    ``cam``: ``gradcam`` | ``gradcam++`` | ``scorecam`` (pytorch-grad-cam on :class:`LogitsModel`, target layer
    ``layer`` or :func:`default_layer`), or ``attention`` (the method's own maps; ``targets`` and ``layer`` unused).
    """
    if cam not in CAM_CHOICES:
        raise ConfigError(f"unknown CAM '{cam}'; choose one of {', '.join(CAM_CHOICES)}")
    check_batch(images)
    if len(images) == 0:
        return np.zeros((0, *images.shape[-2:]), dtype=np.float32)
    if cam == "attention":
        if layer is not None:
            raise ConfigError("--layer applies to gradcam, gradcam++ and scorecam, not to --cam attention (the "
                              "method's own maps)")
        return np.concatenate([_attention_maps(run, images[i:i + batch_size])
                               for i in range(0, len(images), batch_size)]).astype(np.float32)
    if targets is None:
        targets = torch.cat([run.infer(images[i:i + batch_size]).prediction.argmax(1).cpu()
                             for i in range(0, len(images), batch_size)])
    target_list = [int(t) for t in torch.as_tensor(targets).flatten().tolist()]
    if len(target_list) != len(images):
        raise ValueError(f"{len(images)} images but {len(target_list)} targets")
    k = len(run.class_names)
    bad = [t for t in target_list if not 0 <= t < k]
    if bad:
        raise ValueError(f"target classes {bad} out of range: the model has {k} classes")
    cam_cls = _cam_class(cam)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    method = run.method
    was_training = method.training
    method.eval()
    wrapped = LogitsModel(method)
    engine = None
    out: list[np.ndarray] = []
    try:
        target = resolve_layer(method, wrapped, layer)
        x = run.runtime.inputs(images).float()
        _check_layer(wrapped, target, x[:1])
        engine = cam_cls(model=wrapped, target_layers=[target.module], reshape_transform=target.reshape)
        if cam == "scorecam":
            engine.batch_size = 64
        with torch.enable_grad():
            for i in range(0, len(x), batch_size):
                chunk = [ClassifierOutputTarget(t) for t in target_list[i:i + batch_size]]
                # an input that requires grad: every activation then does, even of frozen layers
                chunk_x = x[i:i + batch_size].detach().requires_grad_(cam != "scorecam")
                maps = engine(input_tensor=chunk_x, targets=chunk)  # b, H, W in [0, 1]
                out.append(np.asarray(maps, dtype=np.float32))
    finally:
        if engine is not None:
            engine.activations_and_grads.release()
        method.zero_grad(set_to_none=True)
        method.train(was_training)
    result = np.clip(np.concatenate(out), 0.0, 1.0)
    if result.shape[-2:] != tuple(images.shape[-2:]):  # pragma: no cover - the library resizes to the input
        raise RuntimeError(f"CAM maps of shape {result.shape} for images {tuple(images.shape)}")
    return result
