"""WS-DAN: weakly supervised data augmentation network (Hu, Qi, Huang & Lu 2019, "See Better
Before Looking Closer: Weakly Supervised Data Augmentation Network for Fine-Grained Visual
Classification", arXiv:1901.09891).

* ``M`` attention maps from a 1x1 conv + BN + ReLU on the backbone's feature map.
* Bilinear attention pooling (BAP): part features ``P: B, M, C``, flattened to ``B, M*C``, signed
  square root, L2 normalisation; the classifier (no bias) sees ``feature_scale * P`` (100 in the
  authors' code).
* Attention regularisation: a center loss pulling ``P`` towards a per-class feature center
  ``c_y`` (a buffer, updated by moving average ``c_y += beta * (mean_{i: y_i = y} P_i - norm(c_y))``).
* Attention-guided augmentation: per sample one map (drawn with probability ~ sqrt of its mass)
  is used to *crop* (zoom into the box of the map above ``theta_c * max``) and one to *drop*
  (erase the region above ``theta_d * max``); the loss averages the cross-entropies of the raw,
  cropped and dropped views.
* Test time: the mean attention map localises the object (``theta = 0.1``, padding 5 %), and the
  logits of the raw image and the object crop are averaged.

Deviations from the authors' code, each deliberate: the center update averages the batch samples
of a class (the reference's fancy-indexed ``+=`` keeps only the last sample of a repeated label);
the crop is a ``roi_align`` of the continuous box (the reference slices integer pixels and resizes);
a map whose maximum is 0 crops the whole image and drops nothing (the reference would drop the
whole image). Attention maps and pooled features come from one backbone feature map, the backbone's
part tap (``out_index="parts"``, :data:`fgvc.models.backbone.PART_TAPS`): Inception-v3's Mixed_6e
(stride 16) as in the authors' release, the last feature map of any other backbone (as the public
ResNet/VGG ports do); ``model.backbone_args: {out_index: i}`` picks another stage.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchvision.ops import roi_align

from fgvc.errors import ConfigError
from fgvc.methods.base import Method, MethodSetup, Outputs, hard_labels
from fgvc.models.pooling import bilinear_attention_pool, signed_sqrt
from fgvc.registry import METHODS

__all__ = ["WSDAN", "attention_crop_boxes", "attention_drop_masks", "crop_and_resize"]

EPS = 1e-12


def _normalise_maps(maps: Tensor) -> Tensor:
    """``maps: B, H, W`` divided by their per-sample maximum (a map with max <= 0 becomes all 0)."""
    peak = maps.flatten(1).amax(1).clamp_min(EPS)  # B
    return maps / peak[:, None, None]


def attention_crop_boxes(maps: Tensor, thresholds: Tensor, padding: float) -> Tensor:
    """Boxes around the region where ``maps >= thresholds * max``, padded by ``padding`` of the side.

    ``maps: B, H, W`` (at image resolution), ``thresholds: B`` -> boxes ``B, 4`` as
    ``(x1, y1, x2, y2)`` in continuous pixel coordinates (pixel ``j`` spans ``[j, j+1)``), so the
    box of a region spanning columns ``a..b`` is ``[a - pad*W, b + 1 + pad*W]`` clipped to
    ``[0, W]``. An empty region (a map that is all 0) gives the whole image.
    """
    b, h, w = maps.shape
    mask = _normalise_maps(maps) >= thresholds.to(maps.dtype)[:, None, None]  # B, H, W
    rows, cols = mask.any(2), mask.any(1)  # B, H and B, W
    ar_h = torch.arange(h, device=maps.device, dtype=maps.dtype)
    ar_w = torch.arange(w, device=maps.device, dtype=maps.dtype)
    y1 = torch.where(rows, ar_h, float(h)).amin(1)
    y2 = torch.where(rows, ar_h, -1.0).amax(1) + 1
    x1 = torch.where(cols, ar_w, float(w)).amin(1)
    x2 = torch.where(cols, ar_w, -1.0).amax(1) + 1
    pad_h, pad_w = padding * h, padding * w
    boxes = torch.stack(
        [(x1 - pad_w).clamp(0, w), (y1 - pad_h).clamp(0, h), (x2 + pad_w).clamp(0, w), (y2 + pad_h).clamp(0, h)], 1
    )  # B, 4
    empty = ~rows.any(1)
    full = torch.tensor([0.0, 0.0, float(w), float(h)], device=maps.device, dtype=maps.dtype)
    return torch.where(empty[:, None], full, boxes)


def attention_drop_masks(maps: Tensor, thresholds: Tensor) -> Tensor:
    """Keep-masks ``B, H, W`` (1 = keep, 0 = drop) that erase where ``maps >= thresholds * max``.

    A map whose maximum is 0 drops nothing.
    """
    peak = maps.flatten(1).amax(1)  # B
    drop = (_normalise_maps(maps) >= thresholds.to(maps.dtype)[:, None, None]) & (peak > 0)[:, None, None]
    return (~drop).to(maps.dtype)


def crop_and_resize(images: Tensor, boxes: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Bilinear crop of ``boxes: B, 4`` (x1, y1, x2, y2 pixels) from ``images: B, 3, H, W``, resized to ``size``."""
    size = size or (images.shape[-2], images.shape[-1])
    rois = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None], boxes], 1)
    return roi_align(images, rois.to(images.dtype), output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def _upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """``maps: B, H', W'`` -> ``B, H, W`` bilinear."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


@METHODS.register("wsdan")
class WSDAN(Method):
    def __init__(
        self,
        setup: MethodSetup,
        num_attentions: int = 32,
        feature_scale: float = 100.0,
        center_beta: float = 0.05,
        center_weight: float = 1.0,
        crop_theta: tuple[float, float] = (0.4, 0.6),
        drop_theta: tuple[float, float] = (0.2, 0.5),
        crop_padding: float = 0.1,
        test_theta: float = 0.1,
        test_padding: float = 0.05,
    ) -> None:
        super().__init__(setup)
        for name, rng in (("crop_theta", crop_theta), ("drop_theta", drop_theta)):
            if len(rng) != 2 or not 0.0 <= rng[0] <= rng[1] <= 1.0:
                raise ConfigError(f"model.args.{name} must be a range [lo, hi] within [0, 1], got {rng}")
        self.backbone = setup.backbone.build(default_tap="parts")  # Mixed_6e on Inception-v3, else the last map
        c, m = self.backbone.num_features, num_attentions
        self.num_attentions, self.feature_scale = m, float(feature_scale)
        self.center_beta, self.center_weight = float(center_beta), float(center_weight)
        self.crop_theta, self.drop_theta = tuple(map(float, crop_theta)), tuple(map(float, drop_theta))
        self.crop_padding, self.test_theta, self.test_padding = float(crop_padding), float(test_theta), float(test_padding)
        self.attention = nn.Sequential(  # B, C, h, w -> B, M, h, w
            nn.Conv2d(c, m, kernel_size=1, bias=False), nn.BatchNorm2d(m, eps=1e-3), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(m * c, setup.num_classes, bias=False)
        self.register_buffer("centers", torch.zeros(setup.num_classes, m * c))  # K, M*C feature centers
        self.add_feature_losses(m * c)  # on the raw view's part features

    # --------------------------------------------------------------- forward
    def forward_features(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``images: B, 3, H, W`` -> (normalised part features ``B, M*C``, attention maps ``B, M, h, w``,
        the backbone's feature map ``B, C, h, w``)."""
        feats = self.backbone(images)  # B, C, h, w
        maps = self.attention(feats)  # B, M, h, w
        parts = bilinear_attention_pool(feats, maps)  # B, M, C
        parts = signed_sqrt(rearrange(parts, "b m c -> b (m c)"), EPS)  # B, M*C
        return F.normalize(parts, dim=-1), maps, feats

    def classify(self, parts: Tensor) -> Tensor:
        return self.fc(parts * self.feature_scale)  # B, K

    # --------------------------------------------------------------- training
    @torch.no_grad()
    def update_centers(self, parts: Tensor, labels: Tensor) -> Tensor:
        """Move each present class's center towards the mean of its samples; returns ``norm(c_y)`` (pre-update)."""
        normed = F.normalize(self.centers, dim=-1)  # K, M*C
        batch_centers = normed[labels].to(parts.dtype)  # B, M*C
        classes, inverse = torch.unique(labels, return_inverse=True)  # U, B
        sums = parts.new_zeros(len(classes), parts.shape[1]).index_add_(0, inverse, parts.detach())  # U, M*C
        counts = torch.bincount(inverse, minlength=len(classes)).to(sums.dtype)  # U
        delta = sums / counts[:, None] - normed[classes].to(sums.dtype)
        self.centers.index_add_(0, classes, (self.center_beta * delta).to(self.centers.dtype))
        return batch_centers

    def _choose_maps(self, maps: Tensor) -> tuple[Tensor, Tensor]:
        """One map for cropping and one for dropping per sample, p ~ sqrt(mass): ``B, M, h, w -> 2 x B, h, w``."""
        weights = torch.sqrt(maps.sum((2, 3)).float() + EPS)  # B, M
        weights = weights / weights.sum(1, keepdim=True)
        idx = torch.multinomial(weights, 2, replacement=True)  # B, 2
        chosen = maps.gather(1, idx[:, :, None, None].expand(-1, -1, *maps.shape[-2:]))  # B, 2, h, w
        return chosen[:, 0], chosen[:, 1]

    def augment(self, images: Tensor, maps: Tensor) -> tuple[Tensor, Tensor]:
        """Attention crop and attention drop views of ``images: B, 3, H, W`` from detached ``maps: B, M, h, w``."""
        b, size = images.shape[0], images.shape[-2:]
        crop_map, drop_map = self._choose_maps(maps.detach().float())
        lo, hi = self.crop_theta
        theta_c = torch.rand(b, device=images.device) * (hi - lo) + lo  # B
        boxes = attention_crop_boxes(_upsample(crop_map, size), theta_c, self.crop_padding)  # B, 4
        crops = crop_and_resize(images, boxes)  # B, 3, H, W
        lo, hi = self.drop_theta
        theta_d = torch.rand(b, device=images.device) * (hi - lo) + lo
        keep = attention_drop_masks(_upsample(drop_map, size), theta_d)  # B, H, W
        return crops, images * keep[:, None].to(images.dtype)

    def training_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        hard = hard_labels(targets)
        parts, maps, _ = self.forward_features(images)  # B, M*C ; B, M, h, w
        logits = self.classify(parts)
        batch_centers = self.update_centers(parts, hard)
        center = (parts - batch_centers).pow(2).sum() / parts.shape[0]
        crops, drops = self.augment(images, maps)
        ce_raw = self.criterion(logits, targets)
        ce_crop = self.criterion(self.classify(self.forward_features(crops)[0]), targets)
        ce_drop = self.criterion(self.classify(self.forward_features(drops)[0]), targets)
        out = {"logits": logits, "ce_raw": ce_raw.detach(), "ce_crop": ce_crop.detach(),
               "ce_drop": ce_drop.detach(), "attn_center": center.detach()}
        loss = (ce_raw + ce_crop + ce_drop) / 3 + self.center_weight * center
        out["loss"] = loss + self.feature_loss_terms(parts, targets, out)
        return out

    # -------------------------------------------------------------- inference
    def localise(self, images: Tensor, maps: Tensor) -> Tensor:
        """Object boxes ``B, 4`` from the mean attention map (test-time theta and padding)."""
        mean_map = _upsample(maps.mean(1).float(), images.shape[-2:])  # B, H, W
        thr = torch.full((images.shape[0],), self.test_theta, device=images.device)
        return attention_crop_boxes(mean_map, thr, self.test_padding)

    def infer(self, images: Tensor) -> Outputs:
        """Raw view, object box from the mean map, object-crop view; ``refined`` = mean of the two views' logits."""
        parts, maps, feats = self.forward_features(images)  # B, M*C ; B, M, h, w ; B, C, h, w
        raw = self.classify(parts)  # B, K
        boxes = self.localise(images, maps.detach())  # B, 4
        crops = crop_and_resize(images, boxes)  # B, 3, H, W
        refined = (raw + self.classify(self.forward_features(crops)[0])) / 2
        return Outputs({"refined": refined, "raw": raw}, "refined", parts, feats, maps, boxes)
