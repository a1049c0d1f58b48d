"""CLIP image-text models through open_clip, and CLIP's image tower as an fgvc backbone.

CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision") trains an image
tower and a text tower so that an image and its caption embed close together; open_clip (Ilharco et al. 2021,
https://github.com/mlfoundations/open_clip) implements the architectures and hosts the weights. open_clip is the
optional ``clip`` extra (``pip install -e '.[clip]'``), imported only inside these functions.

* :func:`create_clip` builds a model by open_clip name (``ViT-B-32``) or from a model config JSON file (registered
  under the file's stem), with weights from a local state-dict file (``torch.save(model.state_dict(), F)``, read by
  open_clip's own loader, never unpickling code) or else open_clip's pretrained tag (downloaded, as open_clip does).
* :class:`ClipBackbone` is ``model.backbone: clip:ViT-B-32`` (:meth:`fgvc.models.backbone.BackboneSpec.build`
  dispatches ``clip:`` names here): the image tower alone, with the contract of
  :class:`~fgvc.models.backbone.Backbone`. Its image vector is CLIP's image embedding (class token, final norm,
  projection: what zero-shot classification compares with text); its feature map is every patch token through the
  same norm and projection (``B, D, h, w``, ``D`` = CLIP's embedding width), so both have ``num_features = D``.
  ``model.pretrained_file`` takes a whole CLIP state dict (the ``visual.*`` tensors are used) or the image tower's
  own; ``model.backbone_args``: ``img_size`` (build for another input side, position embeddings resampled as
  open_clip does) and ``pretrained_tag`` (which open_clip weights to download; default the first it lists).
  Normalisation is CLIP's own mean and std. Image towers of the ViT family are supported (``ViT-*``); a tower with
  attention pooling (CoCa) or a ResNet/timm tower is refused with a :class:`~fgvc.errors.ConfigError`.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

from torch import Tensor, nn

from fgvc.errors import ConfigError, WeightsError
from fgvc.extras import require
from fgvc.models.backbone import PREFIXED_BACKBONES, Backbone, find_local_weights, weight_file

log = logging.getLogger(__name__)

__all__ = ["CLIP_PREFIX", "is_clip_name", "open_clip_module", "resolve_clip_name", "create_clip", "load_clip_weights",
           "ClipBackbone"]

CLIP_PREFIX = "clip:"


def is_clip_name(name: str) -> bool:
    """Whether a ``model.backbone`` names a CLIP image tower (``clip:ViT-B-32``)."""
    return str(name).startswith(CLIP_PREFIX)


def open_clip_module(feature: str = "CLIP models") -> ModuleType:
    """``open_clip``, or a :class:`~fgvc.errors.MissingExtraError` naming ``pip install -e '.[clip]'``."""
    return require("open_clip", "open-clip-torch", feature, extra="clip")


def resolve_clip_name(name: str) -> str:
    """The open_clip model name of ``name``: a built-in one (``ViT-B-32``, also ``ViT-B/32``), or a model config
    ``.json`` file, which is registered under its stem; a :class:`ConfigError` names close matches otherwise."""
    oc = open_clip_module()
    path = Path(name).expanduser()
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"CLIP model config {path} does not exist: give an open_clip model name (e.g. ViT-B-32) "
                              "or an existing open_clip model config .json file")
        oc.add_model_config(path)
        if path.stem not in oc.list_models():
            raise ConfigError(f"{path} is not an open_clip model config: it needs the keys embed_dim, vision_cfg "
                              "and text_cfg")
        return path.stem
    cleaned = name.replace("/", "-")
    if cleaned not in oc.list_models():
        close = difflib.get_close_matches(cleaned, oc.list_models(), n=5, cutoff=0.5)
        raise ConfigError(f"unknown CLIP model '{name}'; open_clip knows e.g. {close or oc.list_models()[:5]} "
                          "(open_clip.list_models() lists all), or give a model config .json file")
    return cleaned


class _DropRandomInitNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _weights_load_later() -> Iterator[None]:
    """Without open_clip's root-logger note that the model it built is random: fgvc loads the weights next."""
    note = _DropRandomInitNote()
    logging.getLogger().addFilter(note)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(note)


def default_tag(model_name: str) -> str | None:
    """open_clip's first pretrained tag for ``model_name`` (``openai`` for ViT-B-32), None when it has none."""
    tags = open_clip_module().list_pretrained_tags_by_model(model_name)
    return tags[0] if tags else None


def create_clip(name: str, weights: str | Path | None = None, pretrained_tag: str | None = None,
                image_size: int | None = None) -> tuple[nn.Module, Callable[..., Tensor]]:
    """``(model, tokenizer)`` in eval mode. ``weights``: a local state-dict file loaded strictly by open_clip's own
    loader; without it, open_clip's ``pretrained_tag`` (default: its first tag for the model), downloaded by
    open_clip; ``image_size``: build for that input side (position embeddings resampled when weights load)."""
    oc = open_clip_module()
    model_name = resolve_clip_name(name)
    force = {"force_image_size": image_size} if image_size else {}
    if weights is not None:
        path = weight_file(weights, "give a state dict written by torch.save(model.state_dict(), FILE) (or a "
                                    ".safetensors file)", what="CLIP weight file")
        with _weights_load_later():
            model = oc.create_model(model_name, pretrained=None, **force)
        try:
            oc.load_checkpoint(model, str(path), strict=True)
        except Exception as exc:  # wrong architecture, a pickle with code, a damaged file
            raise WeightsError(f"could not load {path} into CLIP model '{model_name}': {str(exc)[:300]}; is it a state "
                               f"dict of {model_name} (torch.save(model.state_dict(), FILE))?") from exc
        source = str(path)
    else:
        tag = pretrained_tag or default_tag(model_name)
        if tag is None:
            raise WeightsError(f"open_clip has no pretrained weights for '{model_name}': give a weight file")
        try:
            model = oc.create_model(model_name, pretrained=tag, **force)
        except Exception as exc:  # offline, unknown tag, hub errors
            raise WeightsError(f"could not get open_clip's '{tag}' weights for {model_name} ({type(exc).__name__}: "
                               f"{str(exc)[:200]}). Offline? Give a local state-dict file (--weights FILE, or "
                               "model.pretrained_file for a clip: backbone)") from exc
        source = f"open_clip:{tag}"
    model.fgvc_weights = source  # what the results name as the weights
    return model.eval(), oc.get_tokenizer(model_name)


def load_clip_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load the image tower of ``model`` (a whole open_clip model) from ``path``: a whole CLIP state dict or the
    tower's own (keys without ``visual.``); returns the tower's keys left at initialisation."""
    oc = open_clip_module()
    path = weight_file(path, "set model.pretrained_file to a CLIP state dict (torch.save(model.state_dict(), FILE)), "
                             "or model.pretrained_file=null to download open_clip's weights")
    try:
        state = oc.factory.load_state_dict(str(path), weights_only=True)
    except Exception as exc:
        raise WeightsError(f"could not read weights from {path}: {str(exc)[:200]}; only tensors are loaded "
                           "(weights_only=True)") from exc
    if not any(k.startswith("visual.") for k in state):
        state = {f"visual.{k}": v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k.startswith("visual.")}
    oc.model.resize_pos_embed(state, model)  # e.g. a 224-px checkpoint for a tower built at img_size=448
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    tower = [k for k in own if k.startswith("visual.")]
    if len(usable) < 0.5 * len(tower):
        raise WeightsError(f"only {len(usable)} of the {len(tower)} image-tower tensors of this CLIP model match "
                           f"{path} (first keys: {list(state)[:3]}); is it a checkpoint of another architecture?")
    model.load_state_dict(usable, strict=False)
    return [k for k in tower if k not in usable]


def _tower_group_matcher(coarse: bool = False) -> dict[str, Any]:
    """timm's layer grouping of an open_clip ViT tower (what ``train.layer_decay`` reads), as timm's own ViT has it:
    the patch embedding, then one group per block, then the final norm and projection."""
    return {"stem": r"^conv1|^class_embedding|^positional_embedding|^ln_pre",
            "blocks": [(r"^transformer\.resblocks\.(\d+)", None), (r"^ln_post|^proj", (99999,))]}


class ClipBackbone(Backbone):
    """A CLIP image tower as a backbone: ``forward(x) -> B, D, h, w`` (projected patch tokens),
    ``forward_pooled(x) -> (map, CLIP image embedding B, D)``; see the module docstring."""

    is_transformer = True

    def __init__(self, name: str, pretrained: bool = False, pretrained_file: str | Path | None = None,
                 out_index: int | str | None = None, img_size: int | None = None,
                 pretrained_tag: str | None = None) -> None:
        nn.Module.__init__(self)  # not timm's: Backbone's own constructor builds a timm model
        if out_index not in (None, "last", "parts"):
            raise ConfigError(f"{name}: a CLIP image tower gives its last block only; drop "
                              f"model.backbone_args.out_index ({out_index!r})")
        self.name, self.out_index = name, None
        oc = open_clip_module(f"model.backbone {name}")
        model_name = resolve_clip_name(name[len(CLIP_PREFIX):])
        if pretrained and pretrained_file == "auto":  # <model>.safetensors/.pt in the weight folders, else download
            pretrained_file = find_local_weights(model_name)
        force = {"force_image_size": img_size} if img_size else {}
        self.missing_keys: list[str] = []
        if pretrained and pretrained_file is None:
            clip, _ = create_clip(model_name, pretrained_tag=pretrained_tag, image_size=img_size)
            self.weights_source: str | None = "hub"
        else:
            with _weights_load_later():
                clip = oc.create_model(model_name, pretrained=None, **force)
            self.weights_source = str(pretrained_file) if pretrained else None
            if pretrained:
                self.missing_keys = load_clip_weights(clip, pretrained_file)  # type: ignore[arg-type]
        self.model: nn.Module = clip.visual  # the text tower is not kept
        self._check_tower()
        self.model.group_matcher = _tower_group_matcher  # train.layer_decay groups it as timm's ViT
        self.num_features: int = int(self.model.output_dim)
        self._features = self._forward_impl
        if self.missing_keys:
            log.warning("%s: %d image-tower tensors not in %s (kept at initialisation), e.g. %s", name,
                        len(self.missing_keys), pretrained_file, self.missing_keys[:3])

    def _check_tower(self) -> None:
        v = self.model
        ok = (hasattr(v, "forward_intermediates") and getattr(v, "attn_pool", None) is None
              and getattr(v, "proj", None) is not None and getattr(v, "pool_type", "") in ("tok", "avg")
              and not getattr(v, "final_ln_after_pool", False))
        if not ok:
            raise ConfigError(f"{self.name}: its image tower ({type(v).__name__}) is not a plain CLIP ViT; clip: "
                              "backbones take open_clip's ViT models (e.g. clip:ViT-B-32, clip:ViT-B-16); use "
                              "python -m fgvc.zeroshot for the others")

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.model.image_size)  # type: ignore[return-value]

    def data_config(self) -> dict[str, Any]:
        """CLIP's own normalisation (OpenAI's mean and std unless the weights say otherwise) and interpolation."""
        cfg = getattr(self.model, "preprocess_cfg", None) or {}
        oc = open_clip_module()
        return {"mean": tuple(cfg.get("mean", oc.OPENAI_DATASET_MEAN)),
                "std": tuple(cfg.get("std", oc.OPENAI_DATASET_STD)),
                "interpolation": cfg.get("interpolation", "bicubic")}

    def load_weights(self, path: str | Path) -> None:
        """Load the tower from a CLIP (or image-tower) state dict; see :func:`load_clip_weights`."""
        holder = nn.Module()
        holder.visual = self.model  # load_clip_weights reads "visual.*" keys
        self.missing_keys = load_clip_weights(holder, path)

    def pretrained_tensors(self, prefix: str) -> dict[str, Tensor]:
        """No timm layer is dropped from a CLIP tower: nothing to hand back."""
        return {}

    def _forward_impl(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(projected patch tokens ``B, D, h, w``, CLIP's image embedding ``B, D``)."""
        v = self.model
        if tuple(x.shape[-2:]) != self.image_size:
            side = self.image_size[0]
            raise ConfigError(f"{self.name} takes {side} x {side} inputs, got {x.shape[-2]} x {x.shape[-1]}: set "
                              f"data.img_size={side}, or model.backbone_args.img_size={x.shape[-1]} to resample its "
                              "position embeddings")
        out = v.forward_intermediates(x, indices=1, normalize_intermediates=True, output_fmt="NLC")
        tokens = out["image_intermediates"][-1] @ v.proj  # B, h*w, D: every patch as CLIP embeds the class token
        h, w = x.shape[-2] // v.patch_size[0], x.shape[-1] // v.patch_size[1]
        fmap = tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        return fmap, out["image_features"]


PREFIXED_BACKBONES[CLIP_PREFIX] = ClipBackbone  # model.backbone: clip:<open_clip name>
