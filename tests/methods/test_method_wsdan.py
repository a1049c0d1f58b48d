"""WS-DAN: BAP features, center update, attention crop / drop, three-view training, refined test."""
import pytest
import torch
import torch.nn.functional as F

from fgvc.methods import build_method
from fgvc.methods.wsdan import WSDAN, crop_and_resize

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


def test_augmented_views_use_detached_maps_and_are_reproducible():
    m = _model().train()
    x = torch.rand(2, 3, 32, 32)
    maps = torch.rand(2, 4, 4, 4, requires_grad=True)
    torch.manual_seed(7)
    c1, d1, area, dropped = m.augment(x, x, maps)
    torch.manual_seed(7)
    c2, d2, _, _ = m.augment(x, x, maps)
    assert not c1.requires_grad and not d1.requires_grad
    assert torch.equal(c1, c2) and torch.equal(d1, d2)
    assert c1.shape == x.shape and d1.shape == x.shape
    assert ((d1 == 0) | (d1 == x)).all() and (d1 == 0).any()
    assert area.shape == (2,) and bool(((0 < area) & (area <= 1)).all())
    torch.testing.assert_close(dropped, (d1 == 0).all(1).float().mean((1, 2)))


def test_training_logs_crop_area_and_dropped_share_after_the_warmup():
    m = _model(augment_warmup_steps=1).train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 1])
    first = m.training_step(x, y)  # warm-up: the raw view only
    assert "ce_crop" not in first and "crop_area" not in first
    torch.testing.assert_close(first["loss"].detach(), first["ce_raw"] + first["attn_center"])
    second = m.training_step(x, y)
    assert 0 < float(second["crop_area"]) <= 1 and 0 <= float(second["drop_frac"]) < 1
    assert int(m.steps_done) == 2 and "steps_done" in m.state_dict()  # checkpointed: exact resume


def test_top_channels_init_selects_the_most_active_feature_channels():
    m = _model(attention_init="top_channels").train()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        feats = m.backbone(x)
    top = set(feats.mean((0, 2, 3)).topk(4).indices.tolist())
    m.training_step(x, torch.tensor([0, 1, 2, 3]))
    w = m.attention[0].weight.detach()[:, :, 0, 0]  # M, C
    assert set(w.argmax(1).tolist()) == top and torch.equal(w.sum(1), torch.ones(4))  # one-hot at the step
    m.training_step(x, torch.tensor([0, 1, 2, 3]))  # later steps train it, never re-select


@pytest.mark.slow  # builds Inception-v3: ~1-4 s
def test_pretrained_layer_init_copies_inception_mixed7a_reduction(tmp_path):
    """Inception-v3 (the paper's backbone): the attention conv + BN are the first M channels of Mixed_7a's
    768 -> 192 reduction, read from the weight file (the features_only model drops Mixed_7a)."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(1)
    full = timm.create_model("inception_v3", pretrained=False, num_classes=0)
    with torch.no_grad():
        full.Mixed_7a.branch3x3_1.bn.bias.normal_()  # not the default init, so a copy is visible
    file = tmp_path / "inception_v3.safetensors"
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(file))
    cfg = {"name": "wsdan", "backbone": "inception_v3", "pretrained": True, "pretrained_file": str(file),
           "args": {"num_attentions": 8, "attention_init": "pretrained_layer"}}
    m = build_method(cfg, 3)
    src = full.Mixed_7a.branch3x3_1
    assert m.backbone.num_features == 768
    assert torch.equal(m.attention[0].weight, src.conv.weight[:8])
    assert torch.equal(m.attention[1].bias, src.bn.bias[:8])
    assert torch.equal(m.attention[1].running_var, src.bn.running_var[:8])
    rebuilt = build_method(dict(cfg, pretrained=False, pretrained_file=None), 3)  # loading a run: random, no error
    assert not torch.equal(rebuilt.attention[0].weight, src.conv.weight[:8])


def test_pretrained_layer_init_refuses_backbones_without_one():
    from fgvc.errors import ConfigError

    with pytest.raises(ConfigError, match="top_channels"):
        _model(attention_init="pretrained_layer")


def test_param_groups_give_attention_and_classifier_their_own_rates():
    m = _model(attention_lr_scale=0.5, classifier_lr_scale=0.1)
    groups = {g["name"]: g for g in m.param_groups("main", 0.2)}
    assert {k: g["lr_scale"] for k, g in groups.items()} == {"backbone": 0.2, "attention": 0.5, "classifier": 0.1}
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in m.parameters()}


def test_zoom_source_crops_from_the_larger_image():
    m = _model(zoom_source=2.0).eval()
    assert m.data_config()["input_scale"] == 2.0  # the loader then hands 2x images
    hi = torch.randn(2, 3, 128, 128)
    raw = m.raw_view(hi)
    assert raw.shape[-2:] == (64, 64)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [16.0, 16.0, 48.0, 48.0]])  # raw-view pixels
    torch.testing.assert_close(m.crop(hi, boxes, (64, 64))[0], crop_and_resize(hi, boxes * 2, (64, 64))[0])
    torch.testing.assert_close(m.crop(hi, boxes, (64, 64))[0], hi[0, :, :64, :64], rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        out = m.infer(hi)
    assert out.boxes.max() <= 128 and out.maps.shape[-1] == m.forward_features(raw)[1].shape[-1]
    with pytest.raises(ValueError, match="zoom_source"):
        _model(zoom_source=0.5)


def test_headline_and_test_norm_options():
    m = _model(headline="raw", test_norm="minmax").eval()
    with torch.no_grad():
        out = m.infer(torch.randn(2, 3, 64, 64))
    assert out.headline == "raw" and set(out.logits) == {"refined", "raw"}
    with pytest.raises(ValueError, match="attention_init"):
        _model(attention_init="pretrained_layer")


def test_build_method_with_args_and_typo():
    m = build_method({"name": "wsdan", "backbone": BACKBONE, "pretrained": False,
                      "args": {"num_attentions": 2, "crop_theta": [0.4, 0.6]}}, 3, torch.nn.CrossEntropyLoss())
    assert m.num_attentions == 2
    with pytest.raises(ValueError, match="num_attentions"):
        build_method({"name": "wsdan", "backbone": BACKBONE, "pretrained": False,
                      "args": {"num_attention": 2}}, 3, None)


def test_resumed_step_count_decides_the_warmup_without_reading_the_device():
    trained = _model(augment_warmup_steps=1).train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 1])
    trained.training_step(x, y)  # the warm-up step
    resumed = _model(augment_warmup_steps=1).train()
    resumed.load_state_dict(trained.state_dict())  # a resume: steps_done = 1, and its host copy follows
    assert "ce_crop" in resumed.training_step(x, y) and int(resumed.steps_done) == 2


def test_backpropagating_each_view_early_gives_the_same_step():
    """With the trainer's ``backward_part`` the raw and crop views are backpropagated as soon as their losses exist
    (one view's graph alive at a time); the gradients, the logged values, the returned loss value and the buffers
    (BatchNorm statistics, centers) equal the one-backward step's."""
    results = []
    for early in (False, True):
        m = _model().train()
        parts: list[float] = []
        if early:
            m.backward_part = lambda part: parts.append(float(part.detach())) or part.backward()
        torch.manual_seed(1)  # the same crop/drop draws
        x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 1, 3])
        out = m.training_step(x, y)
        out["loss"].backward()
        assert len(parts) == (2 if early else 0)
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        logged = {k: out[k].detach().clone() for k in ("loss", "ce_raw", "ce_crop", "ce_drop", "attn_center")}
        results.append((grads, logged, {n: b.clone() for n, b in m.named_buffers()}))
    (g0, l0, b0), (g1, l1, b1) = results
    assert g0.keys() == g1.keys() and len(g0) > 10
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-4, atol=1e-6, msg=name)
    for d0, d1 in ((l0, l1), (b0, b1)):
        for key in d0:
            torch.testing.assert_close(d1[key], d0[key], rtol=1e-5, atol=1e-6, msg=key)
