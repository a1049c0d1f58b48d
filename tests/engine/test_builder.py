import torch

from fgvc.config import DEFAULTS
from fgvc.engine.builder import build_optimizer, resolve_amp


def test_amp_is_cuda_only_unless_cpu_amp():
    tr = dict(DEFAULTS["train"], amp="bf16")
    assert resolve_amp(tr, torch.device("cpu")) == "none"
    assert resolve_amp(dict(tr, cpu_amp=True), torch.device("cpu")) == "bf16"
    assert resolve_amp(dict(tr, amp="fp16", cpu_amp=True), torch.device("cpu")) == "none"
    assert resolve_amp(tr, torch.device("cuda")) == "bf16"


def test_optimizer_groups_scale_lr_and_skip_decay_on_1d():
    lin, head = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)
    groups = [{"params": list(lin.parameters()), "lr_scale": 0.1, "name": "backbone"},
              {"params": list(head.parameters()), "lr_scale": 1.0, "name": "head"}]
    opt = build_optimizer(groups, dict(DEFAULTS["train"], weight_decay=0.5), lr=0.2)
    got = {(g["name"], g["weight_decay"]): g["lr"] for g in opt.param_groups}
    assert got == {("backbone", 0.5): 0.2 * 0.1, ("backbone", 0.0): 0.2 * 0.1, ("head", 0.5): 0.2, ("head", 0.0): 0.2}
