import pytest
import torch

from fgvc.engine.optim import build_optimizer
from fgvc.config import DEFAULTS
from fgvc.engine.builder import resolve_amp, resolve_channels_last
from fgvc.errors import ConfigError
from fgvc.methods import build_method

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_amp_is_one_key():
    assert resolve_amp("auto", CPU) == "none" and resolve_amp("auto", CUDA) == "bf16"
    assert resolve_amp("bf16", CPU) == "bf16" and resolve_amp("none", CUDA) == "none"
    assert resolve_amp("fp16", CUDA) == "fp16"
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        resolve_amp("fp16", CPU)  # training
    assert resolve_amp("fp16", CPU, strict=False) == "none"  # evaluating a run trained on a GPU


def test_channels_last_auto_means_cnn_backbones():
    cnn = build_method({"name": "baseline", "backbone": "test_resnet.r160_in1k"}, 3)
    vit = build_method({"name": "baseline", "backbone": "test_vit"}, 3)
    assert resolve_channels_last("auto", cnn) and not resolve_channels_last("auto", vit)
    assert resolve_channels_last(True, vit) and not resolve_channels_last(False, cnn)


def test_optimizer_groups_scale_lr_and_skip_decay_on_1d():
    lin, head = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)
    groups = [{"params": list(lin.parameters()), "lr_scale": 0.1, "name": "backbone"},
              {"params": list(head.parameters()), "lr_scale": 1.0, "name": "head"}]
    opt = build_optimizer(groups, dict(DEFAULTS["train"], weight_decay=0.5), lr=0.2)
    got = {(g["name"], g["weight_decay"]): g["lr"] for g in opt.param_groups}
    assert got == {("backbone", 0.5): 0.2 * 0.1, ("backbone", 0.0): 0.2 * 0.1, ("head", 0.5): 0.2, ("head", 0.0): 0.2}


def test_part_backward_is_the_trainers_backward_and_off_under_ddp_or_distillation():
    from fgvc.engine.builder import part_backward
    from fgvc.engine.distributed import DistEnv

    w = torch.ones(3, requires_grad=True)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    backward = part_backward(scaler, 4, DistEnv())
    backward((w * 2).sum())  # scaled by 1 / grad_accum, as the trainer scales the step's loss
    torch.testing.assert_close(w.grad, torch.full((3,), 0.5))
    assert part_backward(scaler, 1, DistEnv(rank=0, world_size=2, local_rank=0)) is None
    assert part_backward(scaler, 1, DistEnv(), distill=object()) is None
