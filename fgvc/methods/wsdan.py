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
  logits of the raw image and the object crop are averaged (``refined``; ``raw`` is the first view alone).

Deviations from the authors' code, each deliberate: the center update averages the batch samples
of a class (the reference's fancy-indexed ``+=`` keeps only the last sample of a repeated label);
the crop is a ``roi_align`` of the continuous box (the reference slices integer pixels and resizes);
a map whose maximum is 0 crops the whole image and drops nothing (the reference would drop the
whole image). Attention maps and pooled features come from one backbone feature map, the backbone's
part tap (``out_index="parts"``, :data:`fgvc.models.backbone.PART_TAPS`): Inception-v3's Mixed_6e
(stride 16) as in the authors' release, the last feature map of any other backbone (as the public
ResNet/VGG ports do); ``model.backbone_args: {out_index: i}`` picks another stage.

Options beyond the paper (defaults reproduce it), measured in ``benchmarks/results/wsdan_tuning.md``:

* ``attention_init="pretrained_layer"``: the attention conv + BN start as the first ``M`` channels of a
  pretrained 1x1 layer on the part tap, as in the authors' release (Inception-v3: Mixed_7a's 768 -> 192
  reduction); only for backbones listed in :data:`fgvc.models.backbone.PART_ATTENTION_LAYERS`.
* ``attention_init="top_channels"`` (any backbone): on the first training batch, the 1x1 attention conv becomes a one-hot
  selection of the ``M`` feature channels with the largest mean activation, so the maps start as pretrained,
  part-like responses (the authors take the first ``M`` channels of Inception's pretrained Mixed_7a branch)
  instead of dense random projections. ``augment_warmup_steps``: train on the raw view only for that many steps.
* ``attention_lr_scale`` / ``classifier_lr_scale``: the attention head's and the classifier's learning rates
  relative to ``train.lr`` (the backbone has ``train.backbone_lr_scale``). The x100 feature scale was tuned for
  SGD; under AdamW, whose step ignores the gradient's size, each logit of the unit-norm ``M*C`` feature moves by
  about ``lr * feature_scale * sqrt(M*C)`` per step, so the classifier wants a ~10x smaller rate there.
* ``zoom_source``: the loader hands the method images ``zoom_source`` times the input size; the raw view is an
  antialiased downsample to the input size, while the attention crop is cut from the larger image, so the zoomed
  view carries detail the raw view lacks (without it a crop only upsamples pixels the network has seen).
* ``head`` / ``head_args``: the classifier on the scaled part features (bias-free ``linear`` by default;
  ``cosine | arcface | cosface``, :mod:`fgvc.models.heads`), margins in the training step only.
* ``test_norm="minmax"``: the test-time box thresholds the min-max normalised mean map; ``headline``: which view
  is scored (``refined`` as in the paper, or ``raw``).
"""
from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.methods.base import Method, MethodSetup, Outputs, hard_labels
from fgvc.models.attention_crop import (
    attention_crop_boxes, attention_drop_masks, box_areas, crop_and_resize, upsample_maps,
)
from fgvc.models.backbone import PART_ATTENTION_LAYERS
from fgvc.models.heads import create_head
from fgvc.models.pooling import bilinear_attention_pool, signed_sqrt
from fgvc.registry import METHODS

__all__ = ["WSDAN", "attention_crop_boxes", "attention_drop_masks", "crop_and_resize"]

log = logging.getLogger(__name__)
EPS = 1e-12
ATTENTION_INITS = ("random", "top_channels", "pretrained_layer")


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
        test_norm: str = "max",
        headline: str = "refined",
        attention_init: str = "random",
        augment_warmup_steps: int = 0,
        attention_lr_scale: float = 1.0,
        classifier_lr_scale: float = 1.0,
        zoom_source: float = 1.0,
        head: str = "linear",
        head_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(setup)
        for name, rng in (("crop_theta", crop_theta), ("drop_theta", drop_theta)):
            if len(rng) != 2 or not 0.0 <= rng[0] <= rng[1] <= 1.0:
                raise ConfigError(f"model.args.{name} must be a range [lo, hi] within [0, 1], got {rng}")
        for name, value, choices in (("attention_init", attention_init, ATTENTION_INITS),
                                     ("test_norm", test_norm, ("max", "minmax")), ("headline", headline, ("refined", "raw"))):
            if value not in choices:
                raise ConfigError(f"model.args.{name} must be one of {list(choices)}, got {value!r}")
        if zoom_source < 1.0:
            raise ConfigError(f"model.args.zoom_source must be >= 1 (a factor on the input size), got {zoom_source}")
        self.backbone = setup.backbone.build(default_tap="parts")  # Mixed_6e on Inception-v3, else the last map
        c, m = self.backbone.num_features, num_attentions
        self.num_attentions, self.feature_scale = m, float(feature_scale)
        self.center_beta, self.center_weight = float(center_beta), float(center_weight)
        self.crop_theta, self.drop_theta = tuple(map(float, crop_theta)), tuple(map(float, drop_theta))
        self.crop_padding, self.test_theta, self.test_padding = float(crop_padding), float(test_theta), float(test_padding)
        self.test_norm, self.headline, self.attention_init = test_norm, headline, attention_init
        self.augment_warmup_steps, self.zoom_source = int(augment_warmup_steps), float(zoom_source)
        self.lr_scales = {"attention": float(attention_lr_scale), "classifier": float(classifier_lr_scale)}
        self.attention = nn.Sequential(  # B, C, h, w -> B, M, h, w
            nn.Conv2d(c, m, kernel_size=1, bias=False), nn.BatchNorm2d(m, eps=1e-3), nn.ReLU(inplace=True)
        )
        # B, M*C -> B, K: bias-free linear as in the paper, or a cosine / margin head (fgvc.models.heads)
        default_args = {"bias": False} if head == "linear" else {}  # cosine heads have no bias to turn off
        self.fc = create_head(head, m * c, setup.num_classes, head_args if head_args is not None else default_args)
        if attention_init == "pretrained_layer":
            self._copy_pretrained_layer(setup.backbone.name)
        self.register_buffer("centers", torch.zeros(setup.num_classes, m * c))  # K, M*C feature centers
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))  # checkpointed: exact resume
        self._steps = 0  # steps_done on the host, so the step's warm-up branch never waits for the device
        self.add_feature_losses(m * c)  # on the raw view's part features

    def data_config(self) -> dict[str, Any]:
        """The backbone's normalisation, and ``input_scale``: images come ``zoom_source`` x the input size."""
        return {**self.backbone.data_config(), "input_scale": self.zoom_source}

    def param_groups(self, stage: str = "main", backbone_lr_scale: float = 1.0) -> list[dict[str, Any]]:
        groups = [{"params": list(self.backbone.parameters()), "lr_scale": backbone_lr_scale, "name": "backbone"},
                  {"params": list(self.attention.parameters()), "lr_scale": self.lr_scales["attention"],
                   "name": "attention"},
                  {"params": list(self.fc.parameters()), "lr_scale": self.lr_scales["classifier"], "name": "classifier"}]
        if len(self.aux_losses):
            groups.append({"params": list(self.aux_losses.parameters()), "lr_scale": 1.0, "name": "head"})
        return groups

    # --------------------------------------------------------------- forward
    def raw_view(self, images: Tensor) -> Tensor:
        """The network's input: ``images`` (``zoom_source`` x the input size) downsampled, antialiased."""
        if self.zoom_source == 1.0:
            return images
        size = (round(images.shape[-2] / self.zoom_source), round(images.shape[-1] / self.zoom_source))
        return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)

    def forward_features(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``images: B, 3, H, W`` -> (normalised part features ``B, M*C``, attention maps ``B, M, h, w``,
        the backbone's feature map ``B, C, h, w``)."""
        feats = self.backbone(images)  # B, C, h, w
        if self.training and self.attention_init == "top_channels" and self._steps == 0:
            self._select_top_channels(feats)
        maps = self.attention(feats)  # B, M, h, w
        parts = bilinear_attention_pool(feats, maps)  # B, M, C
        parts = signed_sqrt(rearrange(parts, "b m c -> b (m c)"), EPS)  # B, M*C
        return F.normalize(parts, dim=-1), maps, feats

    def classify(self, parts: Tensor, labels: Tensor | None = None) -> Tensor:
        """``B, M*C -> B, K``; ``labels`` (training only) let a margin head apply its margin."""
        return self.fc(parts * self.feature_scale, labels)  # B, K

    def crop(self, images: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
        """``boxes: B, 4`` in raw-view pixels, cut from ``images`` (the larger source) and resized to ``size``."""
        return crop_and_resize(images, boxes * (images.shape[-1] / size[1]), size)

    # --------------------------------------------------------------- training
    @torch.no_grad()
    def _copy_pretrained_layer(self, name: str) -> None:
        """The attention conv + BN start as the first ``M`` channels of the backbone's pretrained 1x1 layer
        that reads the part tap (:data:`PART_ATTENTION_LAYERS`, e.g. Inception-v3's Mixed_7a reduction)."""
        layer = PART_ATTENTION_LAYERS.get(name.split(".")[0])
        if layer is None:
            raise ConfigError(
                f"model.args.attention_init=pretrained_layer: backbone '{name}' has no known pretrained layer on its "
                f"part tap (known: {sorted(PART_ATTENTION_LAYERS)}); use attention_init=top_channels, which works "
                "for any backbone, or random")
        state = self.backbone.pretrained_tensors(layer)
        if not state:  # from scratch, or rebuilt to load a checkpoint (which holds the trained weights)
            log.info("WS-DAN attention_init=pretrained_layer: no pretrained weights to copy; random init")
            return
        conv, bn = self.attention[0], self.attention[1]
        m, weight = self.num_attentions, state["conv.weight"]  # O, C, 1, 1
        if weight.shape[0] < m or weight.shape[1:] != conv.weight.shape[1:]:
            raise ConfigError(
                f"model.args.attention_init=pretrained_layer: {layer}.conv is {tuple(weight.shape)}, the attention "
                f"conv needs {m} x {tuple(conv.weight.shape[1:])}: keep the default part tap (no backbone_args."
                "out_index) and num_attentions <= its channels")
        conv.weight.copy_(weight[:m])
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, key).copy_(state[f"bn.{key}"][:m])

    @torch.no_grad()
    def _select_top_channels(self, feats: Tensor) -> None:
        """The attention conv selects the ``M`` channels of largest mean activation on this batch (one-hot)."""
        score = feats.detach().float().mean((0, 2, 3))  # C
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(score)  # every rank picks the same channels
        top = score.topk(self.num_attentions).indices  # M
        conv = self.attention[0]
        conv.weight.zero_()
        conv.weight[:, :, 0, 0].scatter_(1, top[:, None], 1.0)  # M, C one-hot rows (on the device: no sync)

    @torch.no_grad()
    def update_centers(self, parts: Tensor, labels: Tensor) -> Tensor:
        """Move each present class's center towards the mean of its samples; returns ``norm(c_y)`` (pre-update).

        Each sample adds ``beta * (P_i - norm(c_y)) / n_y`` (``n_y``: the samples of its class in the batch), which
        sums to ``beta * (mean_{i: y_i = y} P_i - norm(c_y))`` per class: only the batch's rows are read and written,
        and no shape depends on the labels' values (``torch.unique`` would wait for the device)."""
        batch_centers = F.normalize(self.centers[labels], dim=-1)  # B, M*C
        ones = torch.ones_like(labels, dtype=self.centers.dtype)
        counts = torch.zeros_like(self.centers[:, 0]).index_add_(0, labels, ones)[labels]  # B: n_y of each sample
        delta = (parts.detach().to(self.centers.dtype) - batch_centers) * (self.center_beta / counts[:, None])
        self.centers.index_add_(0, labels, delta)
        return batch_centers.to(parts.dtype)

    def _choose_maps(self, maps: Tensor) -> tuple[Tensor, Tensor]:
        """One map for cropping and one for dropping per sample, p ~ sqrt(mass): ``B, M, h, w -> 2 x B, h, w``."""
        weights = torch.sqrt(maps.sum((2, 3)).float() + EPS)  # B, M
        weights = weights / weights.sum(1, keepdim=True)
        idx = torch.multinomial(weights, 2, replacement=True)  # B, 2
        chosen = maps.gather(1, idx[:, :, None, None].expand(-1, -1, *maps.shape[-2:]))  # B, 2, h, w
        return chosen[:, 0], chosen[:, 1]

    def augment(self, images: Tensor, raw: Tensor, maps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Attention crop (cut from ``images``, the larger source) and attention drop (on ``raw``, the input view)
        views from detached ``maps: B, M, h, w``; also each crop box's share of the image and the dropped share."""
        b, size = raw.shape[0], (raw.shape[-2], raw.shape[-1])
        crop_map, drop_map = self._choose_maps(maps.detach().float())
        lo, hi = self.crop_theta
        theta_c = torch.rand(b, device=raw.device) * (hi - lo) + lo  # B
        boxes = attention_crop_boxes(upsample_maps(crop_map, size), theta_c, self.crop_padding)  # B, 4
        lo, hi = self.drop_theta
        theta_d = torch.rand(b, device=raw.device) * (hi - lo) + lo
        keep = attention_drop_masks(upsample_maps(drop_map, size), theta_d)  # B, H, W
        drops = raw * keep[:, None].to(raw.dtype)
        return self.crop(images, boxes, size), drops, box_areas(boxes, size), 1.0 - keep.mean((1, 2))

    def training_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Raw, crop and drop views; loss ``(ce_raw + ce_crop + ce_drop) / 3 + w * center``. No host-device
        synchronisation: no value is read back. With the trainer's :attr:`backward_part` each view is backpropagated
        as soon as its loss exists, one view's graph alive at a time (measured on this CPU: the peak memory of a
        training run 40 % lower, a short cub200-mini run 7-14 % faster); without it the three views' part features go
        through the classifier as one batch and the returned loss holds all three."""
        hard = hard_labels(targets)
        raw = self.raw_view(images)  # B, 3, H, W: the input size
        parts, maps, _ = self.forward_features(raw)  # B, M*C ; B, M, h, w
        self.steps_done += 1
        self._steps += 1
        batch_centers = self.update_centers(parts, hard)
        center = (parts - batch_centers).pow(2).sum() / parts.shape[0]
        if self._steps <= self.augment_warmup_steps:  # warm-up: the raw view only
            logits = self.classify(parts, hard)  # B, K
            ce_raw = self.criterion(logits, targets)
            out = {"logits": logits, "ce_raw": ce_raw.detach(), "attn_center": center.detach()}
            out["loss"] = ce_raw + self.center_weight * center + self.feature_loss_terms(parts, targets, out)
            return out
        crops, drops, crop_area, drop_frac = self.augment(images, raw, maps)
        early = self.backward_part
        if early is None:
            views = torch.cat([parts, self.forward_features(crops)[0], self.forward_features(drops)[0]])  # 3B, M*C
            logits, crop_logits, drop_logits = self.classify(views, hard.repeat(3)).chunk(3)  # 3 x B, K
        else:
            logits = self.classify(parts, hard)  # B, K
        ce_raw = self.criterion(logits, targets)
        out = {"logits": logits, "ce_raw": ce_raw.detach(), "attn_center": center.detach(),
               "crop_area": crop_area.mean(), "drop_frac": drop_frac.mean()}
        raw_loss = ce_raw / 3 + self.center_weight * center + self.feature_loss_terms(parts, targets, out)
        if early is None:
            ce_crop, ce_drop = self.criterion(crop_logits, targets), self.criterion(drop_logits, targets)
            out["loss"] = raw_loss + (ce_crop + ce_drop) / 3
        else:
            early(raw_loss)  # the raw view's graph is freed here
            ce_crop = self.criterion(self.classify(self.forward_features(crops)[0], hard), targets)
            early(ce_crop / 3)
            ce_drop = self.criterion(self.classify(self.forward_features(drops)[0], hard), targets)
            out["loss"] = (raw_loss + ce_crop / 3).detach() + ce_drop / 3  # the whole value, the drop view's graph
        out.update(ce_crop=ce_crop.detach(), ce_drop=ce_drop.detach())
        return out

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        if prefix + "steps_done" in state_dict:  # a resumed run: the host copy follows the checkpoint (read once)
            self._steps = int(state_dict[prefix + "steps_done"])

    # -------------------------------------------------------------- inference
    def localise(self, raw: Tensor, maps: Tensor) -> Tensor:
        """Object boxes ``B, 4`` (raw-view pixels) from the mean attention map (test-time theta, norm, padding)."""
        mean_map = upsample_maps(maps.mean(1).float(), (raw.shape[-2], raw.shape[-1]))  # B, H, W
        thr = torch.full((raw.shape[0],), self.test_theta, device=raw.device)
        return attention_crop_boxes(mean_map, thr, self.test_padding, self.test_norm)

    def infer(self, images: Tensor) -> Outputs:
        """Raw view, object box from the mean map, object-crop view; ``refined`` = mean of the two views' logits.
        ``boxes`` are in the pixels of ``images`` (the loader's size, ``zoom_source`` x the input)."""
        raw = self.raw_view(images)
        size = (raw.shape[-2], raw.shape[-1])
        parts, maps, feats = self.forward_features(raw)  # B, M*C ; B, M, h, w ; B, C, h, w
        raw_logits = self.classify(parts)  # B, K
        boxes = self.localise(raw, maps.detach())  # B, 4
        refined = (raw_logits + self.classify(self.forward_features(self.crop(images, boxes, size))[0])) / 2
        boxes = boxes * (images.shape[-1] / size[1])
        return Outputs({"refined": refined, "raw": raw_logits}, self.headline, parts, feats, maps, boxes)
