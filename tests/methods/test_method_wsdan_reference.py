"""WS-DAN's fast training step against a slow reference: the step as it was before the speed work (one classifier
pass per view, a ``torch.unique`` center update over every class's normalised center, the empty-map box filled from
a host tensor). The same seed must give the same loss, logs, gradients and center update, up to float rounding."""
import copy

import pytest
import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torchvision.ops import roi_align

from fgvc.methods import build_method
from fgvc.methods.base import hard_labels
from fgvc.methods.wsdan import WSDAN
from fgvc.models.attention_crop import attention_drop_masks, upsample_maps

EPS = 1e-12


def _reference_features(m: WSDAN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    feats = m.backbone(x)  # B, C, h, w
    maps = m.attention(feats)  # B, M, h, w
    parts = einsum(maps.float(), feats.float(), "b m h w, b c h w -> b m c") / float(feats.shape[-2] * feats.shape[-1])
    parts = rearrange(parts, "b m c -> b (m c)")
    parts = torch.sign(parts) * torch.sqrt(torch.abs(parts) + EPS)
    return F.normalize(parts, dim=-1), maps


def _reference_boxes(maps: torch.Tensor, thresholds: torch.Tensor, padding: float) -> torch.Tensor:
    b, h, w = maps.shape
    mask = maps / maps.flatten(1).amax(1).clamp_min(EPS)[:, None, None] >= thresholds[:, None, None]
    rows, cols = mask.any(2), mask.any(1)
    ar_h = torch.arange(h, dtype=maps.dtype, device=maps.device)
    ar_w = torch.arange(w, dtype=maps.dtype, device=maps.device)
    y1, y2 = torch.where(rows, ar_h, float(h)).amin(1), torch.where(rows, ar_h, -1.0).amax(1) + 1
    x1, x2 = torch.where(cols, ar_w, float(w)).amin(1), torch.where(cols, ar_w, -1.0).amax(1) + 1
    pad_h, pad_w = padding * h, padding * w
    boxes = torch.stack([(x1 - pad_w).clamp(0, w), (y1 - pad_h).clamp(0, h), (x2 + pad_w).clamp(0, w),
                         (y2 + pad_h).clamp(0, h)], 1)
    full = torch.tensor([0.0, 0.0, float(w), float(h)], device=maps.device)
    return torch.where(~rows.any(1)[:, None], full, boxes)


def reference_step(m: WSDAN, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """The pre-speed-work WS-DAN training step (after the augmentation warm-up), written out in full."""
    hard = hard_labels(targets)
    raw = m.raw_view(images)
    size = (raw.shape[-2], raw.shape[-1])
    parts, maps = _reference_features(m, raw)
    logits = m.fc(parts * m.feature_scale, hard)
    with torch.no_grad():  # center update: per present class, the batch mean minus the normalised center
        normed = F.normalize(m.centers, dim=-1)
        batch_centers = normed[hard]
        classes, inverse = torch.unique(hard, return_inverse=True)
        sums = parts.new_zeros(len(classes), parts.shape[1]).index_add_(0, inverse, parts.detach())
        counts = torch.bincount(inverse, minlength=len(classes)).float()
        m.centers.index_add_(0, classes, m.center_beta * (sums / counts[:, None] - normed[classes]))
    center = (parts - batch_centers).pow(2).sum() / parts.shape[0]
    ce_raw = m.criterion(logits, targets)
    detached = maps.detach().float()
    weights = torch.sqrt(detached.sum((2, 3)) + EPS)
    idx = torch.multinomial(weights / weights.sum(1, keepdim=True), 2, replacement=True)
    chosen = detached.gather(1, idx[:, :, None, None].expand(-1, -1, *detached.shape[-2:]))
    b = raw.shape[0]
    theta_c = torch.rand(b, device=raw.device) * (m.crop_theta[1] - m.crop_theta[0]) + m.crop_theta[0]
    boxes = _reference_boxes(upsample_maps(chosen[:, 0], size), theta_c, m.crop_padding)
    theta_d = torch.rand(b, device=raw.device) * (m.drop_theta[1] - m.drop_theta[0]) + m.drop_theta[0]
    drops = raw * attention_drop_masks(upsample_maps(chosen[:, 1], size), theta_d)[:, None]
    index = torch.arange(b, dtype=boxes.dtype, device=raw.device)[:, None]
    rois = torch.cat([index, boxes * (images.shape[-1] / size[1])], 1)
    crops = roi_align(images, rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    ce_crop = m.criterion(m.fc(_reference_features(m, crops)[0] * m.feature_scale, hard), targets)
    ce_drop = m.criterion(m.fc(_reference_features(m, drops)[0] * m.feature_scale, hard), targets)
    loss = (ce_raw + ce_crop + ce_drop) / 3 + m.center_weight * center
    return {"logits": logits, "ce_raw": ce_raw, "ce_crop": ce_crop, "ce_drop": ce_drop, "attn_center": center,
            "loss": loss}


CASES = {  # backbone, model args, soft targets, channels-last, input size
    "lite-cl": ("test_efficientnet.r160_in1k", {}, False, True, 64),
    "resnet-arcface-mixup-zoom": ("test_resnet.r160_in1k", {"head": "arcface", "zoom_source": 1.5}, True, False, 96),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_step_matches_the_reference_step(case: str) -> None:
    backbone, args, soft, channels_last, size = CASES[case]
    torch.manual_seed(0)
    fast = build_method({"name": "wsdan", "backbone": backbone, "args": {"num_attentions": 4, **args}}, 5).train()
    before = fast.centers.normal_().clone()
    ref = copy.deepcopy(fast)
    images = torch.randn(6, 3, size, size)
    targets = torch.tensor([0, 2, 2, 4, 2, 0])  # repeated labels: per-class means in the center update
    if soft:
        targets = 0.7 * F.one_hot(targets, 5).float() + 0.3 * F.one_hot(targets.roll(1), 5).float()
    if channels_last:
        fast, ref = fast.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(1)
    got = fast.training_step(images, targets)
    torch.manual_seed(1)
    want = reference_step(ref, images, targets)
    for key, value in want.items():
        torch.testing.assert_close(got[key].detach(), value.detach(), rtol=1e-4, atol=1e-5, msg=key)
    torch.testing.assert_close(fast.centers - before, ref.centers - before, rtol=1e-4, atol=1e-6)  # the update
    got["loss"].backward()
    want["loss"].backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=name)
