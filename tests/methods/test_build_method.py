"""Every method registers and builds by name; build_method validates model.args."""
import pytest
import torch

import fgvc.methods  # noqa: F401  (registers the methods)
from fgvc.methods import Method, build_method
from fgvc.registry import METHODS, RegistryError

BACKBONE = "test_resnet.r160_in1k"
SMALL_ARGS = {
    "baseline": {},
    "wsdan": {"num_attentions": 2},
    "bcnn": {"reduce_dim": 8},
    "racnn": {"share_backbone": True, "apn_hidden": 16, "apn_channels": 4, "apn_grid": 2},
    "senet": {},
    "cbam": {},
}


def test_all_methods_registered():
    assert set(SMALL_ARGS) <= set(METHODS.names())


@pytest.mark.parametrize("name", sorted(SMALL_ARGS))
def test_build_by_name_and_predict(name):
    torch.manual_seed(0)
    cfg = {"name": name, "backbone": BACKBONE, "pretrained": False, "pretrained_file": None, "args": SMALL_ARGS[name]}
    m = build_method(cfg, num_classes=3, criterion=torch.nn.CrossEntropyLoss())
    assert isinstance(m, Method) and m.num_classes == 3 and m.stages()
    for stage in m.stages():
        m.set_stage(stage)
        assert m.param_groups(stage, 0.1)
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        preds = m.predict_all(x)
        torch.testing.assert_close(m.predict(x), next(iter(preds.values())))
        assert all(v.shape == (2, 3) for v in preds.values())
        assert m.embed(x).shape[0] == 2


def test_build_method_rejects_typos_and_conflicts():
    with pytest.raises(RegistryError, match="did you mean 'pooling'"):
        build_method({"name": "bcnn", "backbone": BACKBONE, "args": {"poolng": "compact"}}, 3)
    with pytest.raises(RegistryError, match="both set"):
        build_method({"name": "bcnn", "backbone": BACKBONE, "args": {"backbone": BACKBONE}}, 3)
    with pytest.raises(RegistryError, match="unknown method"):
        build_method({"name": "wsdna", "backbone": BACKBONE}, 3)


@pytest.mark.parametrize("name", sorted(SMALL_ARGS))
def test_aux_losses_accepted_by_every_method(name):
    """The trainer passes loss.aux as model.args.aux_losses to whichever method a recipe names."""
    torch.manual_seed(0)
    args = dict(SMALL_ARGS[name], aux_losses=[{"name": "center", "weight": 0.1}, {"name": "triplet"}])
    m = build_method({"name": name, "backbone": BACKBONE, "pretrained": False, "args": args}, 3,
                     torch.nn.CrossEntropyLoss())
    m.set_stage("cls" if name == "racnn" else m.stages()[-1])
    m.train()
    out = m.training_step(torch.randn(4, 3, 32, 32), torch.tensor([0, 0, 1, 1]))
    assert "center" in out and "triplet" in out and torch.isfinite(out["loss"])
    out["loss"].backward()
