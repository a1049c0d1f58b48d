"""RA-CNN: differentiable boxcar zoom, APN constraints, stage parameter groups, multi-scale outputs."""
import pytest
import torch
import torch.nn.functional as F

from fgvc.methods import build_method
from fgvc.methods.racnn import RACNN, boxcar_crop, boxcar_masks, compose_boxes

BACKBONE = "test_resnet.r160_in1k"


def _model(**kw) -> RACNN:
    torch.manual_seed(0)
    args = {"share_backbone": True, "apn_hidden": 32, "apn_channels": 8, "apn_grid": 2, **kw}
    return build_method({"name": "racnn", "backbone": BACKBONE, "args": args}, 5)


def test_boxcar_crop_is_differentiable_wrt_box():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 16, 16)
    boxes = torch.tensor([[0.4, 0.6, 0.25], [0.5, 0.5, 0.3]], requires_grad=True)
    crops, masks = boxcar_crop(img, boxes, k=10.0)
    assert crops.shape == img.shape and masks.shape == (2, 16, 16)
    (crops * torch.rand_like(crops)).sum().backward()
    assert torch.isfinite(boxes.grad).all()
    assert (boxes.grad.abs() > 0).all()  # every one of tx, ty, tl gets a gradient


def test_boxcar_geometry():
    img = torch.rand(1, 1, 8, 8)
    # the whole image with a near-step mask is the identity
    crops, masks = boxcar_crop(img, torch.tensor([[0.5, 0.5, 0.5]]), k=1e4)
    torch.testing.assert_close(crops, img, atol=1e-4, rtol=1e-4)
    # the top-left quadrant zoomed x2 equals bilinear upsampling of that quadrant
    crops, _ = boxcar_crop(img, torch.tensor([[0.25, 0.25, 0.25]]), k=1e4)
    quad = F.interpolate(img[:, :, :4, :4], size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(crops[..., 1:-1, 1:-1], quad[..., 1:-1, 1:-1], atol=1e-3, rtol=1e-3)
    # k = 10 on normalised coordinates gives a soft mask: ~1 inside, ~0 far outside, not a step
    m = boxcar_masks(torch.tensor([[0.5, 0.5, 0.25]]), (64, 64), k=10.0)[0]
    assert m[32, 32] > 0.9 and m[0, 0] < 0.05 and 0.1 < m[32, 16] < 0.9


def test_compose_boxes():
    outer = torch.tensor([[0.5, 0.5, 0.25]])  # central half of the image
    inner = torch.tensor([[0.5, 0.5, 0.5]])  # the whole crop
    torch.testing.assert_close(compose_boxes(outer, inner), outer)
    torch.testing.assert_close(compose_boxes(outer, torch.tensor([[0.0, 1.0, 0.25]])), torch.tensor([[0.25, 0.75, 0.125]]))


def test_apn_boxes_respect_min_scale_and_stay_inside():
    m = _model(min_scale=0.4)
    for p in m.apns.parameters():
        torch.nn.init.normal_(p, std=5.0)
    boxes = m.apns[0](torch.randn(16, m.backbone.num_features, 2, 2))
    tx, ty, tl = boxes.unbind(1)
    assert (tl >= 0.2 - 1e-6).all() and (tl <= 0.5 + 1e-6).all()
    assert (tx - tl >= -1e-6).all() and (tx + tl <= 1 + 1e-6).all() and (ty - tl >= -1e-6).all()


def test_pretrain_targets_centre_on_the_peak():
    m = _model(pretrain_side=0.5)
    feats = torch.zeros(2, 3, 4, 4)
    feats[0, :, 1, 2] = 1.0  # peak at row 1, col 2 -> centre (0.625, 0.375)
    feats[1, :, 0, 0] = 1.0  # corner peak -> square pushed inside the image
    t = m.pretrain_targets(feats)
    torch.testing.assert_close(t[0], torch.tensor([0.625, 0.375, 0.25]))
    torch.testing.assert_close(t[1], torch.tensor([0.25, 0.25, 0.25]))


def test_stage_param_groups_disjoint_and_covering():
    m = _model()
    ids = lambda groups: [id(p) for g in groups for p in g["params"]]  # noqa: E731
    everything = {id(p) for p in m.parameters()}
    cls, apn = ids(m.param_groups("cls", 0.1)), ids(m.param_groups("apn", 0.1))
    assert len(set(cls)) == len(cls) and len(set(apn)) == len(apn)
    assert not set(cls) & set(apn) and set(cls) | set(apn) == everything
    assert set(ids(m.param_groups("apn_pretrain"))) == set(apn) == {id(p) for p in m.apns.parameters()}
    main = ids(m.param_groups("main", 0.1))
    assert sorted(main) == sorted(everything)
    assert {g["name"]: g["lr_scale"] for g in m.param_groups("main", 0.1)} == {"backbone": 0.1, "head": 1.0, "apn": 1.0}
    assert m.stages() == ["apn_pretrain", "cls", "apn", "main"]


@pytest.mark.parametrize("stage", ["apn_pretrain", "cls", "apn", "main"])
def test_training_step_each_stage(stage):
    m = _model()
    m.set_stage(stage)
    listed = {id(p) for g in m.param_groups(stage, 0.1) for p in g["params"]}
    for p in m.parameters():  # what the trainer does: parameters outside the stage's groups are frozen
        p.requires_grad_(id(p) in listed)
    m.train()
    out = m.training_step(torch.randn(2, 3, 64, 64), torch.tensor([1, 4]))
    assert out["logits"].shape == (2, 5) and torch.isfinite(out["loss"])
    out["loss"].backward()
    apn_grad = sum(p.grad.abs().sum() for p in m.apns.parameters() if p.grad is not None)
    cls_grad = [p.grad for p in m.classifiers.parameters() if p.grad is not None]
    if stage in ("apn_pretrain", "apn", "main"):
        assert apn_grad > 0
    if stage in ("cls", "main"):
        assert cls_grad and sum(g.abs().sum() for g in cls_grad) > 0
    if stage == "cls":
        assert apn_grad == 0  # boxes are detached while the classifiers train
    if stage in ("apn", "apn_pretrain"):
        assert not cls_grad and not m.backbone.training  # frozen sub-networks stay in eval mode
        assert "apn_pretrain" in out if stage == "apn_pretrain" else out["loss"] == out["rank"]


def test_infer_heads_embedding_masks_and_object_box():
    m = _model().eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        out = m.infer(x)
        res = m.forward_scales(x, detach_boxes=True)
    assert list(out.logits) == ["fused", "scale1", "scale2", "scale3"] and out.headline == "fused"
    assert out.embedding.shape == (2, 3 * m.backbone.num_features)
    assert out.maps.shape == (2, 2, 48, 48) and out.maps.min() >= 0 and out.maps.max() <= 1
    tx, ty, tl = res["boxes"][0].unbind(1)  # the first zoom's square, in input pixels
    torch.testing.assert_close(out.boxes, torch.stack([tx - tl, ty - tl, tx + tl, ty + tl], 1) * 48)
    inside = out.maps[:, 0] > 0.5  # the first mask is high inside that box
    ys, xs = torch.nonzero(inside[0], as_tuple=True)
    assert xs.min() >= out.boxes[0, 0] - 1 and xs.max() <= out.boxes[0, 2] + 1


def test_separate_backbones_per_scale():
    m = _model(share_backbone=False, num_scales=2)
    assert len(m.backbones) == 2 and m.net(0) is not m.net(1)
    out = m.training_step(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    assert set(out) >= {"ce_scale1", "ce_scale2", "ce_fused", "rank"}
