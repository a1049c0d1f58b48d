"""B-CNN: bilinear / compact pooling head and the two-stage (frozen backbone, then fine-tune) schedule."""
import pytest
import torch

from fgvc.methods import build_method
from fgvc.methods.bcnn import BCNN

BACKBONE = "test_resnet.r160_in1k"


def _model(**kw) -> BCNN:
    torch.manual_seed(0)
    return build_method({"name": "bcnn", "backbone": BACKBONE, "args": kw}, 4)


@pytest.mark.parametrize("kw,dim", [({"reduce_dim": 8}, 64), ({"pooling": "compact", "compact_dim": 128}, 128)])
def test_forward_backward_shapes(kw, dim):
    m = _model(**kw).train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 3])
    out = m.training_step(x, y)
    assert out["logits"].shape == (2, 4) and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert m.fc.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        emb = m.embed(x)
    assert emb.shape == (2, dim)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))


def test_full_bilinear_dim_without_reduction():
    m = _model()
    assert m.out_dim == m.backbone.num_features ** 2


def test_stages_and_param_groups():
    m = _model(reduce_dim=8)
    assert m.stages() == ["classifier", "finetune", "main"]
    backbone_ids = {id(p) for p in m.backbone.parameters()}
    groups = m.param_groups("classifier", 0.1)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped and not grouped & backbone_ids
    assert grouped == {id(p) for p in m.parameters()} - backbone_ids
    groups = {g["name"]: g for g in m.param_groups("finetune", 0.1)}
    assert groups["backbone"]["lr_scale"] == 0.1 and groups["head"]["lr_scale"] == 1.0
    assert {id(p) for p in groups["backbone"]["params"]} == backbone_ids
    with pytest.raises(ValueError):
        m.set_stage("warmup")


def _step(m: BCNN, stage: str) -> None:
    """What the trainer does: freeze parameters outside the stage's groups, one SGD step."""
    m.set_stage(stage)
    groups = m.param_groups(stage, 0.1)
    listed = {id(p) for g in groups for p in g["params"]}
    for p in m.parameters():
        p.requires_grad_(id(p) in listed)
    opt = torch.optim.SGD([{"params": g["params"], "lr": 0.5 * g["lr_scale"]} for g in groups], lr=0.5)
    m.train()
    out = m.training_step(torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3]))
    opt.zero_grad()
    out["loss"].backward()
    opt.step()


def test_classifier_stage_freezes_backbone_weights_and_bn_stats():
    m = _model(reduce_dim=8)
    before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    head_before = m.fc.weight.detach().clone()
    _step(m, "classifier")
    assert not m.backbone.training and m.fc.training  # backbone BN in eval during stage 1
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, before[k]), f"backbone {k} changed in the classifier stage"
    assert not torch.equal(m.fc.weight, head_before)
    # stage 2 trains the backbone, BN statistics included
    _step(m, "finetune")
    assert m.backbone.training
    changed = [k for k, v in m.backbone.state_dict().items() if not torch.equal(v, before[k])]
    params = {k for k, _ in m.backbone.named_parameters()}
    assert any("running_mean" in k for k in changed) and any(k in params for k in changed)
