"""Attention rollout of the class token (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers",
ACL 2020, arXiv:2005.00928): where in the image a vision transformer's class token gathers its information from.

Per block ``l`` the attention probabilities ``A_l: B, heads, N, N`` are averaged over heads, the residual path is
added as the identity and the rows renormalised, ``Â_l = norm(mean_h A_l + I)`` (rows sum to 1), and the blocks are
multiplied through, ``R = Â_L ... Â_2 Â_1``. Row 0 of ``R`` (the class token) over the patch-token columns, reshaped
to the ``h x w`` patch grid, is the map: non-negative, and with the prefix-token columns (class, distillation,
register tokens) it sums to 1.

The attention is captured by forward hooks during one pass of the backbone: timm's ``Attention`` (ViT, DeiT),
``EvaAttention`` and BEiT's ``Attention`` compute ``softmax(q k^T / sqrt(d))`` explicitly and pass it through their
``attn_drop`` module when ``fused_attn`` is off (with it on, ``scaled_dot_product_attention`` never materialises it),
so :class:`AttentionRollout` turns ``fused_attn`` off for the pass, reads ``attn_drop``'s input, folds each block
into ``R`` at once (memory ``B x N x N``, not per block and head) and restores the flags.

Rollout of the class token needs one: Swin's attention is windowed and it pools the mean of its tokens, CNNs have no
attention, and ``*_gap`` / ``avg``-pooled transformers do not classify the class token. :func:`rollout_unsupported`
says which, and ``fgvc.visualize`` draws the feature map's channel mean for them instead.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

__all__ = ["fold", "rollout", "rollout_unsupported", "AttentionRollout", "class_token_maps", "ROLLOUT_NOTE", "ROLLOUT_LABEL"]

ROLLOUT_NOTE = "attention rollout of the class token (Abnar & Zuidema 2020)"  # the figure's title
ROLLOUT_LABEL = "attention rollout"  # the overlay panel's caption (a panel is too narrow for the note)


def fold(acc: Tensor | None, attn: Tensor) -> Tensor:
    """One block of rollout: ``attn: B, heads, N, N`` (rows sum to 1) -> ``norm(mean_h attn + I) @ acc``, ``B, N, N``
    (``acc`` None: the first block)."""
    a = attn.detach().float().mean(1)  # B, N, N
    a = a + torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
    a = a / a.sum(-1, keepdim=True)
    return a if acc is None else a @ acc


def rollout(attentions: Sequence[Tensor]) -> Tensor:
    """``B, N, N`` rollout of the blocks' attention ``B, heads, N, N`` (first block first); every row sums to 1."""
    acc: Tensor | None = None
    for attn in attentions:
        acc = fold(acc, attn)
    if acc is None:
        raise ValueError("rollout needs the attention of at least one block")
    return acc


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every block of a timm ViT-family model (ViT, DeiT, EVA, BEiT)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return []
    mods = [getattr(b, "attn", None) for b in blocks]
    return [m for m in mods
            if m is not None and hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)]


def rollout_unsupported(backbone: Any) -> str | None:
    """Why rollout of the class token does not apply to ``backbone`` (a :class:`fgvc.models.backbone.Backbone`), or
    None when it does."""
    name, model = backbone.name, backbone.model
    if not backbone.is_transformer:
        return f"'{name}' is a CNN: it has no self-attention to roll out"
    if getattr(model, "cls_token", None) is None or getattr(model, "global_pool", "") != "token":
        what = "Swin's attention is windowed and it" if hasattr(model, "layers") and not hasattr(model, "blocks") else \
            f"'{name}'"
        return (f"{what} pools the mean of its patch tokens (global_pool={getattr(model, 'global_pool', '')!r}), not a "
                "class token: rollout of the class token does not apply")
    if not _attention_modules(model):
        return f"'{name}' has no timm attention modules with an explicit softmax to capture"
    return None


class AttentionRollout:
    """``with AttentionRollout(model) as r: model(x)`` then ``r.result``: the rollout ``B, N, N`` of that pass."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = _attention_modules(model)
        self.result: Tensor | None = None
        self._hooks: list[Any] = []
        self._fused: list[bool] = []

    def _hook(self, _module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        self.result = fold(self.result, inputs[0])  # inputs[0]: softmax(q k^T), B, heads, N, N

    def __enter__(self) -> "AttentionRollout":
        self.result = None
        for m in self.modules:
            self._fused.append(bool(m.fused_attn))
            m.fused_attn = False  # materialise the attention probabilities (the same outputs, computed unfused)
            self._hooks.append(m.attn_drop.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._hooks:
            h.remove()
        for m, fused in zip(self.modules, self._fused):
            m.fused_attn = fused
        self._hooks, self._fused = [], []


@torch.no_grad()
def class_token_maps(backbone: Any, images: Tensor) -> Tensor:
    """Rollout maps ``B, 1, h, w`` of the class token over the patch grid of ``images: B, 3, H, W`` for a
    :class:`~fgvc.models.backbone.Backbone` that :func:`rollout_unsupported` accepts (a ``ValueError`` otherwise)."""
    reason = rollout_unsupported(backbone)
    if reason:
        raise ValueError(reason)
    model = backbone.model
    with AttentionRollout(model) as rec:
        backbone(images)
    if rec.result is None:
        raise ValueError(f"no attention was captured in a pass of '{backbone.name}'")
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    row = rec.result[:, 0, prefix:]  # B, h*w: what the class token gathered from each patch
    ph, pw = model.patch_embed.patch_size
    h, w = images.shape[-2] // ph, images.shape[-1] // pw
    if h * w != row.shape[1]:
        raise ValueError(f"{row.shape[1]} patch tokens do not form the {h} x {w} grid of a "
                         f"{tuple(images.shape[-2:])} input")
    return row.reshape(row.shape[0], 1, h, w)
