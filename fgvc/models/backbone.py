"""timm backbones by name, with offline weight files, and one contract: a feature map ``B, C, h, w``.

``Backbone(name)`` wraps any timm model with its classifier removed. Whatever the architecture,
``backbone(x)`` returns an NCHW feature map and ``backbone.num_features`` is its ``C``:

* CNNs (ResNet, EfficientNet, VGG, Inception, ConvNeXt ...): the last feature map, or with
  ``out_index=k`` stage ``k`` of timm's ``features_only`` model.
* Vision transformers (ViT, DeiT, EVA, BEiT, Swin): the patch tokens of the last block (or of block
  ``out_index``), after the final norm, reshaped to ``B, C, h, w`` by timm's
  ``forward_intermediates(..., output_fmt="NCHW")``, class, distillation and register tokens set aside;
  built with ``dynamic_img_size=True`` so any input size that is a whole number of patches works
  (:mod:`fgvc.models.transformer`: 448 px fine-grained inputs, position embeddings resampled). The class token
  (or the model's own pooling) is kept for :meth:`Backbone.forward_pooled`, which methods use as the image
  embedding. ConvNeXt is a CNN here (an NCHW map, channels-last by default).

Which feature map a part-attention method should see is a property of the backbone, not a number in
a recipe: ``out_index="parts"`` resolves to :data:`PART_TAPS` (Inception-v3's Mixed_6e, stride 16, as
in the WS-DAN paper) and to the last map for every other backbone; an integer still picks a stage.

``pretrained_file`` loads local weights (safetensors or a ``torch.save`` state dict, always with
``weights_only=True``) and tolerates blocks the checkpoint does not have (e.g. SE/CBAM inserted into a
ResNet), reporting what was left at initialisation. :class:`BackboneSpec` is what a recipe says about
the backbone; methods call ``spec.build()`` (RA-CNN once per scale).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import timm
import torch
from torch import Tensor, nn

from fgvc.errors import ConfigError, WeightsError
from fgvc.models.transformer import adapt_checkpoint, check_input_size

log = logging.getLogger(__name__)

__all__ = ["Backbone", "BackboneSpec", "load_state_dict_file", "weight_file", "WeightsError", "PART_TAPS", "PART_ATTENTION_LAYERS",
           "is_transformer_name", "PREFIXED_BACKBONES", "prefixed_backbone"]


def weight_file(path: str | Path, fix: str, what: str = "weight file") -> Path:
    """``path`` (``~`` expanded) when it is a file, else a :class:`WeightsError`: ``{what} not found: PATH; {fix}``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{what} not found: {path}; {fix}")
    return path


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file, never unpickling code."""
    path = weight_file(path, "set model.pretrained_file to an existing .safetensors/.pth file, or "
                             "model.pretrained_file=null to let timm download the weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, or a pickle with code in it
        raise WeightsError(
            f"could not read weights from {path}: {exc}. Only tensors are loaded (weights_only=True); "
            "re-save the file as a plain state dict or as .safetensors."
        ) from exc
    for key in ("state_dict", "model", "model_state"):  # common wrappers
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return state


def weight_search_dirs() -> list[Path]:
    """Where ``pretrained_file: auto`` looks: $FGVC_WEIGHTS_DIR, ./weights, ../shared/weights, ~/.cache/fgvc/weights."""
    dirs = [os.environ.get("FGVC_WEIGHTS_DIR", ""), "weights", "../shared/weights", "~/.cache/fgvc/weights"]
    return [Path(d).expanduser() for d in dirs if d]


def find_local_weights(name: str) -> Path | None:
    """``<name>.safetensors`` (or .pth/.pt/.bin) in :func:`weight_search_dirs`, else None."""
    base = name.split(".")[0]
    for d in weight_search_dirs():
        for stem in (name, base):
            for ext in (".safetensors", ".pth", ".pt", ".bin"):
                if (d / f"{stem}{ext}").is_file():
                    return d / f"{stem}{ext}"
    return None


# The part-attention tap per architecture (timm features_only index). WS-DAN taps Inception-v3's Mixed_6e
# (stride 16) in the authors' release; its public ports tap the last stage of ResNet/VGG, and so does fgvc
# for every architecture not listed here.
PART_TAPS: dict[str, int] = {"inception_v3": 3, "tf_inception_v3": 3, "adv_inception_v3": 3, "gluon_inception_v3": 3}
# A pretrained 1x1 conv + BN + ReLU that reads the part tap, per architecture: its first M channels can start
# WS-DAN's attention maps (the authors take Inception-v3's Mixed_7a 3x3-branch reduction, 768 -> 192).
PART_ATTENTION_LAYERS: dict[str, str] = {name: "Mixed_7a.branch3x3_1" for name in PART_TAPS}

# timm modules whose models are token transformers with forward_intermediates(output_fmt="NCHW")
TRANSFORMER_MODULES = ("vision_transformer", "deit", "eva", "beit", "swin_transformer", "swin_transformer_v2")


# backbones that are not timm's, by the prefix of their name: prefix -> a Backbone subclass, registered by its module
# (``clip:`` -> fgvc.models.clip.ClipBackbone, imported with fgvc.models)
PREFIXED_BACKBONES: dict[str, type["Backbone"]] = {}


def prefixed_backbone(name: str) -> type["Backbone"] | None:
    """The :data:`PREFIXED_BACKBONES` class of ``name`` (e.g. ``clip:ViT-B-32``), None for a timm name."""
    return next((cls for prefix, cls in PREFIXED_BACKBONES.items() if str(name).startswith(prefix)), None)


def is_transformer_name(name: str) -> bool:
    """Whether timm builds ``name`` as a token transformer (ViT, DeiT, EVA, BEiT, Swin), or a prefixed backbone
    (:data:`PREFIXED_BACKBONES`, e.g. a CLIP ViT tower) is one."""
    cls = prefixed_backbone(name)
    if cls is not None:
        return bool(cls.is_transformer)
    try:
        module = timm.models.model_entrypoint(name.split(".")[0]).__module__
    except Exception:  # unknown or hub-only names
        return False
    return module.rsplit(".", 1)[-1] in TRANSFORMER_MODULES


def resolve_tap(name: str, out_index: int | str | None) -> int | None:
    """``None``/``"last"``: the last map; ``"parts"``: :data:`PART_TAPS` or the last map; an int: that stage."""
    if out_index is None or out_index == "last":
        return None
    if out_index == "parts":
        return PART_TAPS.get(name.split(".")[0])
    if isinstance(out_index, int) and not isinstance(out_index, bool):
        return out_index
    raise ConfigError(f"backbone out_index must be an integer stage, 'last' or 'parts'; got {out_index!r}")


class Backbone(nn.Module):
    """A timm model as a feature extractor: ``forward(x: B,3,H,W) -> B,C,h,w`` for CNNs and transformers."""

    is_transformer: bool = False  # set per instance from the timm model

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        pretrained_file: str | Path | None = None,
        drop_path_rate: float = 0.0,
        out_index: int | str | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if pretrained and pretrained_file == "auto":
            pretrained_file = find_local_weights(name)
            if pretrained_file is not None:
                log.info("%s: using local weights %s", name, pretrained_file)
        if name not in timm.list_models() and not timm.is_model(name):
            close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:5]
            raise ConfigError(f"unknown timm backbone '{name}' (model.backbone); similar names: {close}")
        self.name = name
        self.is_transformer = is_transformer_name(name)
        self.out_index = resolve_tap(name, out_index)
        kwargs: dict[str, Any] = dict(num_classes=0, **timm_kwargs)
        if self.is_transformer:  # keep timm's pooling (class token) for forward_pooled; any input size
            kwargs.setdefault("dynamic_img_size", True)
        elif self.out_index is None:
            kwargs["global_pool"] = ""
        else:  # a mid-level CNN feature map (e.g. stride 16, like WS-DAN's Inception Mixed_6e tap)
            kwargs = dict(features_only=True, out_indices=(self.out_index,), **timm_kwargs)
        if drop_path_rate:
            kwargs["drop_path_rate"] = drop_path_rate
        use_hub = bool(pretrained) and pretrained_file is None
        self.model = self._create(name, use_hub, kwargs)
        # where the pretrained weights came from: a file, the hub, or nowhere (None)
        self.weights_source: str | None = str(pretrained_file) if pretrained and pretrained_file else (
            "hub" if use_hub else None)
        self.num_features: int = self._channels()
        self._features: Callable[[Tensor], tuple[Tensor, Tensor | None]] = self._forward_impl
        self.missing_keys: list[str] = []
        if pretrained and pretrained_file is not None:
            self.load_weights(pretrained_file)

    @staticmethod
    def _create(name: str, use_hub: bool, kwargs: dict[str, Any]) -> nn.Module:
        if use_hub:
            kwargs["pretrained_strict"] = False  # inserted blocks (SE/CBAM) are not in the checkpoint
        try:
            try:
                return timm.create_model(name, pretrained=use_hub, **kwargs)
            except TypeError as exc:  # a transformer without dynamic_img_size (BEiT): a fixed input size
                if "dynamic_img_size" not in str(exc) or not kwargs.pop("dynamic_img_size", False):
                    raise
                return timm.create_model(name, pretrained=use_hub, **kwargs)
        except Exception as exc:  # hub/network errors come in many types
            if not use_hub:
                raise
            raise WeightsError(
                f"could not download pretrained weights for '{name}' ({type(exc).__name__}: {str(exc)[:200]}). "
                f"Offline? Put {name}.safetensors in one of {[str(d) for d in weight_search_dirs()]} and set "
                "model.pretrained_file=auto, or give model.pretrained_file=PATH, or train from scratch with "
                "model.pretrained=false."
            ) from exc

    def _channels(self) -> int:
        if self.out_index is None:
            return int(self.model.num_features)
        info = self.model.feature_info
        if self.is_transformer:  # a list of dicts, one per block (ViT) or stage (Swin)
            if not -len(info) <= self.out_index < len(info):
                raise ConfigError(f"out_index {self.out_index} out of range: {self.name} has {len(info)} blocks")
            return int(info[self.out_index]["num_chs"])
        return int(info.channels()[-1])

    def load_weights(self, path: str | Path) -> None:
        state = load_state_dict_file(path)
        if self.is_transformer:  # e.g. 224-px position embeddings resampled for a model built at img_size=448
            state = adapt_checkpoint(self.name, state, self.model)
        own = self.model.state_dict()
        # drop the classifier and anything whose shape differs (a new head, a changed stem)
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not usable:
            raise WeightsError(
                f"no tensor in {path} matches backbone '{self.name}' (first keys: {list(state)[:3]}); "
                "is it a checkpoint of a different architecture?"
            )
        result = self.model.load_state_dict(usable, strict=False)
        self.missing_keys = list(result.missing_keys)
        frac = len(usable) / max(len(own), 1)
        if self.missing_keys:
            log.warning(
                "%s: %d of %d backbone tensors not in %s (kept at their initialisation), e.g. %s",
                self.name, len(self.missing_keys), len(own), path, self.missing_keys[:3],
            )
        if frac < 0.5:
            raise WeightsError(f"only {frac:.0%} of backbone '{self.name}' matched {path}; wrong weight file?")

    def pretrained_tensors(self, prefix: str) -> dict[str, Tensor]:
        """The pretrained tensors under ``prefix`` (e.g. a layer the feature model dropped), keys without the
        prefix; empty when the backbone was not built from pretrained weights."""
        if self.weights_source is None:
            return {}
        if self.weights_source == "hub":
            state = self._create(self.name, True, {"num_classes": 0}).state_dict()
        else:
            state = load_state_dict_file(self.weights_source)
        return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}

    def data_config(self) -> dict[str, Any]:
        """mean/std/interpolation from the pretrained config (e.g. mean = std = 0.5 for tf_efficientnet_lite0)."""
        cfg = timm.data.resolve_model_data_config(self.model)
        return {"mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]), "interpolation": cfg.get("interpolation", "bilinear")}

    def compile_features(self, **kwargs: Any) -> None:
        """``torch.compile`` the feature extractor in place (parameter names and checkpoints are unchanged)."""
        self._features = torch.compile(self._forward_impl, **kwargs)

    # ---------------------------------------------------------------- forward
    def _forward_impl(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(feature map ``B, C, h, w``, the transformer's pooled token ``B, C`` or None for a CNN)."""
        if self.is_transformer:
            check_input_size(self.model, self.name, x.shape[-2], x.shape[-1])
            indices = [self.out_index] if self.out_index is not None else 1
            final, maps = self.model.forward_intermediates(x, indices=indices, norm=True, output_fmt="NCHW")
            return maps[-1], self.model.forward_head(final, pre_logits=True)
        fmap = self.model(x)[-1] if self.out_index is not None else self.model.forward_features(x)
        if fmap.ndim != 4:
            raise ConfigError(
                f"backbone '{self.name}' returns shape {tuple(fmap.shape)}, not a B, C, h, w feature map; fgvc maps "
                f"tokens to maps for the timm families {', '.join(TRANSFORMER_MODULES)}: choose one of those or a CNN")
        return fmap, None

    def forward(self, x: Tensor) -> Tensor:
        return self._features(x)[0]  # B, C, h, w

    def forward_pooled(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(feature map ``B, C, h, w``, image vector ``B, C``): the class token for a transformer, the
        spatial mean of the map for a CNN."""
        fmap, token = self._features(x)
        return fmap, token if token is not None else fmap.mean((2, 3))


@dataclass
class BackboneSpec:
    """What a recipe says about the backbone (``model.backbone``, ``.pretrained``, ``.pretrained_file``,
    ``.backbone_args``): the one factory every method builds its backbone(s) from."""

    name: str
    pretrained: bool = False
    pretrained_file: str | Path | None = None
    args: dict[str, Any] = field(default_factory=dict)

    def build(self, default_tap: str | None = None, **extra: Any) -> Backbone:
        """A new :class:`Backbone` (of :data:`PREFIXED_BACKBONES` for a prefixed name, e.g. ``clip:ViT-B-32``);
        ``default_tap`` (e.g. ``"parts"``) applies unless the recipe sets out_index."""
        args = {**self.args, **extra}
        if default_tap is not None:
            args.setdefault("out_index", default_tap)
        return (prefixed_backbone(self.name) or Backbone)(self.name, self.pretrained, self.pretrained_file, **args)
