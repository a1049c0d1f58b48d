"""WS-DAN: BAP features, center update, attention crop / drop, three-view training, refined test."""
import pytest
import torch
import torch.nn.functional as F

from fgvc.methods import build_method
from fgvc.methods.wsdan import WSDAN, attention_crop_boxes, attention_drop_masks, crop_and_resize

BACKBONE = "test_resnet.r160_in1k"


def _model(**kw) -> WSDAN:
    torch.manual_seed(0)
    args = dict(num_attentions=4, **kw)
    return build_method({"name": "wsdan", "backbone": BACKBONE, "args": args}, 5)


def test_training_step_shapes_and_backward():
    m = _model().train()
    x, y = torch.randn(3, 3, 64, 64), torch.tensor([0, 1, 1])
    out = m.training_step(x, y)
    assert out["logits"].shape == (3, 5)
    for key in ("loss", "ce_raw", "ce_crop", "ce_drop", "attn_center"):
        assert out[key].ndim == 0 and torch.isfinite(out[key]), key
    torch.testing.assert_close(out["loss"].detach(), (out["ce_raw"] + out["ce_crop"] + out["ce_drop"]) / 3 + out["attn_center"])
    out["loss"].backward()
    assert m.attention[0].weight.grad.abs().sum() > 0 and m.fc.weight.grad.abs().sum() > 0
    # soft (Mixup) targets
    soft = F.one_hot(y, 5).float()
    assert torch.isfinite(m.training_step(x, soft)["loss"])


def test_infer_heads_embedding_maps_and_box():
    m = _model().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = m.infer(x)
        parts, maps, _ = m.forward_features(x)
        refined = (m.classify(parts) + m.classify(m.forward_features(crop_and_resize(x, out.boxes))[0])) / 2
    assert list(out.logits) == ["refined", "raw"] and out.headline == "refined"
    torch.testing.assert_close(out.logits["refined"], refined)  # raw and object-crop views, averaged
    assert out.embedding.shape == (2, 4 * m.backbone.num_features)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))  # signed sqrt + L2
    assert out.maps.shape == (2, 4, 2, 2)
    torch.testing.assert_close(out.boxes, m.localise(x, maps))
    assert "centers" in m.state_dict() and m.centers.shape == (5, 4 * m.backbone.num_features)


def test_part_tap_is_a_property_of_the_backbone():
    assert _model().backbone.out_index is None  # any CNN but Inception-v3: the last feature map
    assert build_method({"name": "wsdan", "backbone": BACKBONE, "backbone_args": {"out_index": 2},
                         "args": {"num_attentions": 2}}, 3).backbone.out_index == 2  # a recipe may ask


def test_center_update_with_repeated_labels_is_per_class_mean():
    m = _model(center_beta=0.5)
    d = m.centers.shape[1]
    m.centers.copy_(torch.randn(5, d))
    before = m.centers.clone()
    parts = F.normalize(torch.randn(4, d), dim=1)
    labels = torch.tensor([2, 2, 2, 0])
    batch_centers = m.update_centers(parts, labels)
    normed = F.normalize(before, dim=1)
    torch.testing.assert_close(batch_centers, normed[labels])
    exp2 = before[2] + 0.5 * (parts[:3].mean(0) - normed[2])
    exp0 = before[0] + 0.5 * (parts[3] - normed[0])
    torch.testing.assert_close(m.centers[2], exp2)
    torch.testing.assert_close(m.centers[0], exp0)
    torch.testing.assert_close(m.centers[[1, 3, 4]], before[[1, 3, 4]])


def test_crop_boxes_contain_thresholded_region_with_padding():
    maps = torch.zeros(2, 20, 40)
    maps[0, 5:9, 10:21] = 1.0  # rows 5..8, cols 10..20
    maps[0, 6, 12] = 2.0  # the max: region >= 0.5*2 is all of the block
    maps[1, 0, 0] = 1.0  # second sample: a single corner pixel
    boxes = attention_crop_boxes(maps, torch.tensor([0.5, 0.5]), padding=0.1)
    # x: [10 - 4, 21 + 4], y: [5 - 2, 9 + 2] (10 % of W = 4, of H = 2)
    torch.testing.assert_close(boxes[0], torch.tensor([6.0, 3.0, 25.0, 11.0]))
    torch.testing.assert_close(boxes[1], torch.tensor([0.0, 0.0, 5.0, 3.0]))  # clipped at the border
    # a higher threshold keeps only the peak
    tight = attention_crop_boxes(maps[:1], torch.tensor([0.9]), padding=0.0)
    torch.testing.assert_close(tight[0], torch.tensor([12.0, 6.0, 13.0, 7.0]))
    # an all-zero map crops the whole image
    torch.testing.assert_close(attention_crop_boxes(torch.zeros(1, 20, 40), torch.tensor([0.5]), 0.1)[0],
                               torch.tensor([0.0, 0.0, 40.0, 20.0]))


def test_crop_boxes_random_maps_contain_region():
    torch.manual_seed(3)
    maps = torch.rand(4, 16, 16) ** 4
    thr = torch.rand(4) * 0.5 + 0.3
    boxes = attention_crop_boxes(maps, thr, padding=0.0)
    for b in range(4):
        ys, xs = torch.nonzero(maps[b] >= thr[b] * maps[b].max(), as_tuple=True)
        x1, y1, x2, y2 = boxes[b].tolist()
        assert x1 == xs.min() and y1 == ys.min() and x2 == xs.max() + 1 and y2 == ys.max() + 1


def test_drop_masks_zero_exactly_the_thresholded_region():
    torch.manual_seed(1)
    maps = torch.rand(3, 8, 8)
    thr = torch.tensor([0.2, 0.5, 0.9])
    keep = attention_drop_masks(maps, thr)
    for b in range(3):
        expected = (maps[b] < thr[b] * maps[b].max()).float()
        assert torch.equal(keep[b], expected)
    assert torch.equal(attention_drop_masks(torch.zeros(1, 4, 4), torch.tensor([0.3])), torch.ones(1, 4, 4))


def test_crop_and_resize_geometry():
    img = torch.arange(64.0).reshape(1, 1, 8, 8)
    full = crop_and_resize(img, torch.tensor([[0.0, 0.0, 8.0, 8.0]]))
    torch.testing.assert_close(full, img)
    quad = crop_and_resize(img, torch.tensor([[4.0, 0.0, 8.0, 4.0]]), size=(4, 4))
    torch.testing.assert_close(quad, img[:, :, :4, 4:])


def test_augmented_views_use_detached_maps_and_are_reproducible():
    m = _model().train()
    x = torch.rand(2, 3, 32, 32)
    maps = torch.rand(2, 4, 4, 4, requires_grad=True)
    torch.manual_seed(7)
    c1, d1 = m.augment(x, maps)
    torch.manual_seed(7)
    c2, d2 = m.augment(x, maps)
    assert not c1.requires_grad and not d1.requires_grad
    assert torch.equal(c1, c2) and torch.equal(d1, d2)
    assert c1.shape == x.shape and d1.shape == x.shape
    assert ((d1 == 0) | (d1 == x)).all() and (d1 == 0).any()


def test_build_method_with_args_and_typo():
    m = build_method({"name": "wsdan", "backbone": BACKBONE, "pretrained": False,
                      "args": {"num_attentions": 2, "crop_theta": [0.4, 0.6]}}, 3, torch.nn.CrossEntropyLoss())
    assert m.num_attentions == 2
    with pytest.raises(ValueError, match="num_attentions"):
        build_method({"name": "wsdan", "backbone": BACKBONE, "pretrained": False,
                      "args": {"num_attention": 2}}, 3, None)
