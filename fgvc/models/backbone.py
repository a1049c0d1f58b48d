"""timm backbones by name, with offline weight files and feature maps.

``Backbone(name)`` wraps any timm model with its classifier and pooling removed, so
``backbone(x)`` returns the last feature map ``B, C, H, W`` and ``backbone.num_features``
is ``C``; ``out_index=k`` taps stage k of timm's ``features_only`` model instead of the last map. ``pretrained_file`` loads local weights (safetensors or a ``torch.save`` state dict,
always with ``weights_only=True``) and tolerates blocks the checkpoint does not have
(e.g. SE/CBAM inserted into a ResNet), reporting what was left at initialisation.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from fgvc.errors import WeightsError

log = logging.getLogger(__name__)

__all__ = ["Backbone", "load_state_dict_file", "WeightsError"]


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file, never unpickling code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weight file not found: {path}. Set model.pretrained_file to an existing .safetensors/.pth file, "
            "or model.pretrained_file=null to let timm download the weights."
        )
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


class Backbone(nn.Module):
    """A timm model as a feature extractor: ``forward(x: B,3,H,W) -> B,C,h,w``."""

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        pretrained_file: str | Path | None = None,
        drop_path_rate: float = 0.0,
        out_index: int | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if pretrained and pretrained_file == "auto":
            pretrained_file = find_local_weights(name)
            if pretrained_file is not None:
                log.info("%s: using local weights %s", name, pretrained_file)
        if name not in timm.list_models() and not timm.is_model(name):
            close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:5]
            raise ValueError(f"unknown timm backbone '{name}'; similar names: {close}")
        if out_index is None:
            kwargs: dict[str, Any] = dict(num_classes=0, global_pool="", **timm_kwargs)
        else:  # a mid-level feature map (e.g. stride 16, like WS-DAN's Inception Mixed_6e tap)
            kwargs = dict(features_only=True, out_indices=(out_index,), **timm_kwargs)
        if drop_path_rate:
            kwargs["drop_path_rate"] = drop_path_rate
        use_hub = bool(pretrained) and pretrained_file is None
        if use_hub:
            kwargs["pretrained_strict"] = False  # inserted blocks (SE/CBAM) are not in the checkpoint
        self.name = name
        try:
            self.model = timm.create_model(name, pretrained=use_hub, **kwargs)
        except Exception as exc:  # hub/network errors come in many types
            if not use_hub:
                raise
            raise WeightsError(
                f"could not download pretrained weights for '{name}' ({type(exc).__name__}: {str(exc)[:200]}). "
                f"Offline? Put {name}.safetensors in one of {[str(d) for d in weight_search_dirs()]} and set "
                "model.pretrained_file=auto, or give model.pretrained_file=PATH, or train from scratch with "
                "model.pretrained=false."
            ) from exc
        self.out_index = out_index
        self.num_features: int = int(
            self.model.num_features if out_index is None else self.model.feature_info.channels()[-1]
        )
        self.missing_keys: list[str] = []
        if pretrained and pretrained_file is not None:
            self.load_weights(pretrained_file)

    def load_weights(self, path: str | Path) -> None:
        state = load_state_dict_file(path)
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

    def data_config(self) -> dict[str, Any]:
        """mean/std/interpolation from the pretrained config (e.g. mean = std = 0.5 for tf_efficientnet_lite0)."""
        cfg = timm.data.resolve_model_data_config(self.model)
        return {"mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]), "interpolation": cfg.get("interpolation", "bilinear")}

    def compile_features(self, **kwargs: Any) -> None:
        """``torch.compile`` the feature extractor in place (parameter names and checkpoints are unchanged)."""
        if self.out_index is None:
            self.model.forward_features = torch.compile(self.model.forward_features, **kwargs)
        else:
            self.model.compile(**kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if self.out_index is not None:
            return self.model(x)[-1]  # B, C, h, w at the chosen stage
        return self.model.forward_features(x)  # B, C, h, w
