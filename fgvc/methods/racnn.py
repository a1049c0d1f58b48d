"""RA-CNN: recurrent attention CNN (Fu, Zheng & Mei 2017, "Look Closer to See Better: Recurrent
Attention Convolutional Neural Network for Fine-grained Image Recognition", CVPR 2017).

Scale 1 classifies the image; an attention proposal network (APN) on its features predicts a
square ``(tx, ty, tl)`` (centre and half side, as fractions of the scale's image side); the square
is cut out with a differentiable boxcar mask and zoomed to the input size, and scale 2 classifies
that, and so on for ``num_scales`` scales. Each scale has its own classifier (global average
pooling + linear) and, by default, its own backbone (``share_backbone=True`` shares one).

Losses: cross-entropy per scale, and the pairwise ranking loss ``max(0, p_t^(s) - p_t^(s+1) +
margin)`` (:mod:`fgvc.losses.ranking`) that trains the APNs to find regions on which the finer
scale is more confident. Training alternates, as recipe stages:

* ``apn_pretrain``: APNs regress the square of side ``pretrain_side`` (half the image, as in the
  paper) centred on the strongest response (channel sum, argmax) of the previous scale's last
  feature map - the paper's initialisation. Loss: squared error on ``(tx, ty, tl)``.
* ``cls``: backbones, classifiers and the fusion layer with the cross-entropies (boxes detached).
* ``apn``: APNs only, with the ranking loss.
* ``main``: everything on ``sum CE + ranking`` at once (the paper's total objective, without the
  alternation), for one-stage recipes.

During ``apn_pretrain`` and ``apn`` the classification sub-networks stay in eval mode, so their
BatchNorm statistics do not move while they are frozen.

Choices where the paper leaves room (documented deviations):

* Boxcar mask: ``M(x, y) = [h(x - tx + tl) - h(x - tx - tl)] [h(y - ty + tl) - h(y - ty - tl)]`` with
  ``h(z) = 1 / (1 + exp(-k z))`` evaluated on grid_sample's normalised coordinates ``[-1, 1]`` (the
  paper uses pixel coordinates, where ``k = 10`` is practically a step and its gradient lives on
  the border pixels only). With ``k = 10`` the 10-90 % edge spans ~0.44 units, ~11 % of the side.
  The masked image is zoomed with ``affine_grid`` + ``grid_sample`` (bilinear), so gradients reach
  ``(tx, ty, tl)`` through both the mask and the sampling grid.
* The square stays inside the image: ``tl in [min_scale/2, 1/2]`` (its side is at least
  ``min_scale`` of the previous scale's side) and ``tx, ty in [tl, 1 - tl]``, by sigmoid
  re-parameterisation of the APN output.
* The APN (paper: two fc layers on the flattened 14x14x512 conv5_4) is a 1x1 conv to
  ``apn_channels``, average pooling to ``apn_grid x apn_grid``, then fc ``-> apn_hidden -> tanh ->
  3 -> sigmoid``; the conv keeps the fc small for 2048-channel backbones.
* Classifiers pool globally instead of VGG's fc6/fc7. Every scale sees the input size.
* Vision transformers (ViT, DeiT, EVA, Swin): the APN reads the NCHW patch-token map, each scale's classifier the
  backbone's own pooling (a ViT's class token; the map mean for CNNs and Swin), and the zoomed square is resampled to
  the input size, which a ViT built with ``dynamic_img_size`` takes like the first scale.
* ``fused``: the paper's multi-scale fusion (concatenated L2-normalised descriptors -> fc); its
  input is detached so it never changes the per-scale networks.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.losses.ranking import RankingLoss
from fgvc.methods.base import Method, MethodSetup, Outputs
from fgvc.models.backbone import Backbone
from fgvc.registry import METHODS

__all__ = ["RACNN", "APN", "boxcar_masks", "boxcar_crop", "compose_boxes"]


class APN(nn.Module):
    """Attention proposal network: ``feats: B, C, h, w -> boxes B, 3`` as ``(tx, ty, tl)`` in ``[0, 1]``."""

    def __init__(self, in_dim: int, channels: int = 64, grid: int = 7, hidden: int = 1024, min_scale: float = 1 / 3) -> None:
        super().__init__()
        if not 0.0 < min_scale <= 1.0:
            raise ConfigError(f"racnn model.args.min_scale must be in (0, 1], got {min_scale}")
        self.min_half = min_scale / 2
        self.reduce = nn.Sequential(nn.Conv2d(in_dim, channels, 1), nn.ReLU(inplace=True))  # B, c, h, w
        self.pool = nn.AdaptiveAvgPool2d(grid)  # B, c, g, g
        self.fc1 = nn.Linear(channels * grid * grid, hidden)
        self.fc2 = nn.Linear(hidden, 3)
        nn.init.zeros_(self.fc2.weight)  # start at a centred square of side (1 + min_scale) / 2
        nn.init.zeros_(self.fc2.bias)

    def forward(self, feats: Tensor) -> Tensor:
        x = self.pool(self.reduce(feats)).flatten(1)  # B, c*g*g
        a = torch.sigmoid(self.fc2(torch.tanh(self.fc1(x))))  # B, 3
        tl = self.min_half + (0.5 - self.min_half) * a[:, 2]
        tx = tl + (1 - 2 * tl) * a[:, 0]
        ty = tl + (1 - 2 * tl) * a[:, 1]
        return torch.stack([tx, ty, tl], 1)  # B, 3


def _edges(n: int, centre: Tensor, half: Tensor, k: float) -> Tensor:
    """1-D boxcar ``B, n`` on pixel centres in ``[-1, 1]`` (``centre``, ``half``: B, in those units)."""
    u = (torch.arange(n, device=centre.device, dtype=centre.dtype) * 2 + 1) / n - 1  # n
    u = u[None]
    c, h = centre[:, None], half[:, None]
    return torch.sigmoid(k * (u - c + h)) - torch.sigmoid(k * (u - c - h))


def boxcar_masks(boxes: Tensor, size: tuple[int, int], k: float = 10.0) -> Tensor:
    """Soft square masks ``B, H, W`` for ``boxes: B, 3`` ``(tx, ty, tl)`` in ``[0, 1]`` image units."""
    tx, ty, tl = boxes.unbind(1)
    mx = _edges(size[1], 2 * tx - 1, 2 * tl, k)  # B, W
    my = _edges(size[0], 2 * ty - 1, 2 * tl, k)  # B, H
    return my[:, :, None] * mx[:, None, :]  # B, H, W


def boxcar_crop(images: Tensor, boxes: Tensor, k: float = 10.0) -> tuple[Tensor, Tensor]:
    """Mask ``images: B, 3, H, W`` with the boxcar of ``boxes: B, 3`` and zoom the square to ``H, W``.

    Returns ``(crops B, 3, H, W, masks B, H, W)``; differentiable w.r.t. ``boxes``.
    """
    b, _, h, w = images.shape
    boxes = boxes.to(images.dtype)
    masks = boxcar_masks(boxes, (h, w), k)  # B, H, W
    tx, ty, tl = boxes.unbind(1)
    zero = torch.zeros_like(tx)
    theta = torch.stack([torch.stack([2 * tl, zero, 2 * tx - 1], 1), torch.stack([zero, 2 * tl, 2 * ty - 1], 1)], 1)  # B, 2, 3
    grid = F.affine_grid(theta, [b, images.shape[1], h, w], align_corners=False)  # B, H, W, 2
    crops = F.grid_sample(images * masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops, masks


def compose_boxes(outer: Tensor, inner: Tensor) -> Tensor:
    """``inner`` (in the coordinates of the crop ``outer``) in the coordinates of ``outer``'s image: ``B, 3``."""
    ox, oy, ol = outer.unbind(1)
    ix, iy, il = inner.unbind(1)
    return torch.stack([ox - ol + 2 * ol * ix, oy - ol + 2 * ol * iy, 2 * ol * il], 1)


@METHODS.register("racnn")
class RACNN(Method):
    def __init__(
        self,
        setup: MethodSetup,
        num_scales: int = 3,
        share_backbone: bool = False,
        k: float = 10.0,
        min_scale: float = 1 / 3,
        margin: float = 0.05,
        pretrain_side: float = 0.5,
        apn_channels: int = 64,
        apn_grid: int = 7,
        apn_hidden: int = 1024,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(setup)
        if num_scales < 2:
            raise ConfigError(f"racnn needs model.args.num_scales >= 2, got {num_scales}")
        self.num_scales, self.share_backbone, self.k = num_scales, share_backbone, float(k)
        self.min_scale, self.pretrain_side = float(min_scale), float(pretrain_side)
        self.backbones = nn.ModuleList([setup.backbone.build() for _ in range(1 if share_backbone else num_scales)])
        dim = self.backbones[0].num_features
        self.dropout = nn.Dropout(drop_rate)
        self.classifiers = nn.ModuleList([nn.Linear(dim, setup.num_classes) for _ in range(num_scales)])
        self.fusion = nn.Linear(dim * num_scales, setup.num_classes)
        self.apns = nn.ModuleList(
            [APN(dim, apn_channels, apn_grid, apn_hidden, min_scale) for _ in range(num_scales - 1)]
        )
        self.ranking = RankingLoss(margin)
        # feature losses on the fused descriptor (the embedding), trained with the classifiers ("cls", "main")
        self.add_feature_losses(dim * num_scales)

    @property
    def backbone(self) -> Backbone:  # type: ignore[override]
        return self.backbones[0]

    def net(self, s: int) -> Backbone:
        return self.backbones[0 if self.share_backbone else s]

    # ------------------------------------------------------------------ stages
    def stages(self) -> list[str]:
        return ["apn_pretrain", "cls", "apn", "main"]

    def set_stage(self, stage: str) -> None:
        super().set_stage(stage)
        self.train(self.training)

    def train(self, mode: bool = True) -> "RACNN":
        super().train(mode)
        if mode and self.stage in ("apn_pretrain", "apn"):
            self.backbones.eval()  # frozen classification sub-networks keep their BN statistics
            self.dropout.eval()
        return self

    def _cls_params(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        head = [*self.classifiers.parameters(), *self.fusion.parameters(), *self.aux_losses.parameters()]
        return list(self.backbones.parameters()), head

    def param_groups(self, stage: str = "main", backbone_lr_scale: float = 1.0) -> list[dict[str, Any]]:
        backbone, head = self._cls_params()
        cls = [{"params": backbone, "lr_scale": backbone_lr_scale, "name": "backbone"},
               {"params": head, "lr_scale": 1.0, "name": "head"}]
        apn = [{"params": list(self.apns.parameters()), "lr_scale": 1.0, "name": "apn"}]
        if stage == "cls":
            return cls
        if stage in ("apn", "apn_pretrain"):
            return apn
        if stage == "main":
            return cls + apn
        raise ValueError(f"RACNN has no training stage '{stage}'; its stages are {self.stages()}")

    # --------------------------------------------------------------- forward
    def forward_scales(self, images: Tensor, detach_boxes: bool = False) -> dict[str, Any]:
        """Run all scales: per-scale ``feats`` (B, C, h, w), ``pooled`` (B, C), ``logits`` (B, K), ``boxes`` (B, 3)."""
        x = images
        out: dict[str, list[Tensor]] = {"feats": [], "pooled": [], "logits": [], "boxes": []}
        for s in range(self.num_scales):
            feats, pooled = self.net(s).forward_pooled(x)  # B, C, h, w ; B, C (map mean, or a ViT's class token)
            out["feats"].append(feats)
            out["pooled"].append(pooled)
            out["logits"].append(self.classifiers[s](self.dropout(pooled)))  # B, K
            if s < self.num_scales - 1:
                boxes = self.apns[s](feats)  # B, 3
                if detach_boxes:
                    boxes = boxes.detach()
                out["boxes"].append(boxes)
                x = boxcar_crop(x, boxes, self.k)[0]  # B, 3, H, W
        return out

    def fuse(self, pooled: list[Tensor]) -> Tensor:
        desc = torch.cat([F.normalize(p.detach(), dim=1) for p in pooled], 1)  # B, S*C
        return self.fusion(self.dropout(desc))  # B, K

    def pretrain_targets(self, feats: Tensor) -> Tensor:
        """Square of side ``pretrain_side`` on the strongest response of ``feats: B, C, h, w`` -> ``B, 3``."""
        b, _, h, w = feats.shape
        idx = feats.detach().float().sum(1).flatten(1).argmax(1)  # B
        cy = ((idx // w).float() + 0.5) / h
        cx = ((idx % w).float() + 0.5) / w
        tl = torch.full_like(cx, self.pretrain_side / 2).clamp(self.min_scale / 2, 0.5)
        return torch.stack([cx.clamp(min=tl, max=1 - tl), cy.clamp(min=tl, max=1 - tl), tl], 1)

    def training_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        stage = self.stage
        if stage == "apn_pretrain":
            return self._pretrain_step(images, targets)
        res = self.forward_scales(images, detach_boxes=stage == "cls")
        logits = res["logits"]
        out: dict[str, Tensor] = {}
        ce = torch.zeros((), device=images.device)
        for s, lg in enumerate(logits):
            ce_s = self.criterion(lg, targets)
            out[f"ce_scale{s + 1}"] = ce_s.detach()
            ce = ce + ce_s
        fused = self.fuse(res["pooled"])
        ce_fused = self.criterion(fused, targets)
        rank = self.ranking(logits, targets)
        out.update(ce_fused=ce_fused.detach(), rank=rank.detach(), logits=fused.detach())
        if stage != "apn" and len(self.aux_losses):
            desc = torch.cat([F.normalize(p, dim=1) for p in res["pooled"]], 1)  # B, S*C
            ce = ce + self.feature_loss_terms(desc, targets, out)
        if stage == "cls":
            out["loss"] = ce + ce_fused
        elif stage == "apn":
            out["loss"] = rank
        else:  # main
            out["loss"] = ce + ce_fused + rank
        return out

    def _pretrain_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        x, loss, pooled = images, torch.zeros((), device=images.device), []
        for s in range(self.num_scales):
            with torch.no_grad():
                feats, vec = self.net(s).forward_pooled(x)  # B, C, h, w ; B, C
            pooled.append(vec)
            if s < self.num_scales - 1:
                boxes = self.apns[s](feats)  # B, 3
                loss = loss + F.mse_loss(boxes.float(), self.pretrain_targets(feats), reduction="sum") / len(boxes)
                with torch.no_grad():
                    x = boxcar_crop(x, boxes.detach(), self.k)[0]
        with torch.no_grad():
            fused = self.fuse(pooled)
        return {"loss": loss, "logits": fused, "apn_pretrain": loss.detach()}

    # -------------------------------------------------------------- inference
    def infer(self, images: Tensor) -> Outputs:
        """Every scale's logits and the fusion (headline); ``maps``: the boxcar mask of every zoom in input
        coordinates ``B, S-1, H, W``; ``boxes``: the first zoom (the object, in pixels); ``feature_map``: scale 1's."""
        res = self.forward_scales(images, detach_boxes=True)
        logits = {"fused": self.fuse(res["pooled"])}
        logits.update({f"scale{s + 1}": lg for s, lg in enumerate(res["logits"])})
        embedding = torch.cat([F.normalize(p, dim=1) for p in res["pooled"]], 1)  # B, S*C
        h, w = images.shape[-2:]
        squares, acc = [], res["boxes"][0]
        for s, b in enumerate(res["boxes"]):
            acc = b if s == 0 else compose_boxes(acc, b)
            squares.append(acc.float())
        maps = torch.stack([boxcar_masks(sq, (h, w), self.k) for sq in squares], 1)  # B, S-1, H, W
        tx, ty, tl = squares[0].unbind(1)
        boxes = torch.stack([(tx - tl) * w, (ty - tl) * h, (tx + tl) * w, (ty + tl) * h], 1)  # B, 4
        return Outputs(logits, "fused", embedding, res["feats"][0], maps, boxes)
