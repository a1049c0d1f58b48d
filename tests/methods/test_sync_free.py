"""No host-device synchronisation in a method's training step (issue 14): a step that reads a value back (``.item()``,
``.tolist()``, ``.numpy()``, ``.cpu()``, ``if tensor:``, ``int(tensor)``, a data-dependent shape such as
``torch.unique`` or ``nonzero``) makes the host wait for the device every step, so a GPU idles between kernels.

On the CPU those calls are patched to raise while ``training_step`` and its backward run, for every method and
every branch of WS-DAN (augmentation warm-up, crop and drop, the top-channels init); where CUDA exists the same
steps also run under ``torch.cuda.set_sync_debug_mode("error")``, which catches syncs made inside torch too.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import pytest
import torch
import torch.nn.functional as F

from fgvc.methods import build_method

TENSOR_SYNCS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__", "nonzero",
                "unique")
TORCH_SYNCS = ("nonzero", "unique", "unique_consecutive", "masked_select", "bincount")  # data-dependent shapes

CASES: dict[str, dict[str, Any]] = {  # name -> model section (each method on a timm test backbone)
    "baseline": {"name": "baseline", "backbone": "test_efficientnet.r160_in1k"},
    "baseline-arcface": {"name": "baseline", "backbone": "test_resnet.r160_in1k", "args": {"head": "arcface"}},
    "wsdan": {"name": "wsdan", "backbone": "test_efficientnet.r160_in1k", "args": {"num_attentions": 4}},
    "wsdan-warmup": {"name": "wsdan", "backbone": "test_resnet.r160_in1k",
                     "args": {"num_attentions": 4, "augment_warmup_steps": 1}},
    "wsdan-top-channels-zoom": {"name": "wsdan", "backbone": "test_resnet.r160_in1k",
                                "args": {"num_attentions": 4, "attention_init": "top_channels", "zoom_source": 1.5}},
    "wsdan-early-backward": {"name": "wsdan", "backbone": "test_resnet.r160_in1k", "args": {"num_attentions": 4},
                             "backward_part": True},  # the trainer's per-view backward (Method.backward_part)
    "bcnn": {"name": "bcnn", "backbone": "test_resnet.r160_in1k"},
    "racnn": {"name": "racnn", "backbone": "test_resnet.r160_in1k", "args": {"num_scales": 2}},
    "cbam": {"name": "cbam", "backbone": "test_resnet.r160_in1k"},
    "senet": {"name": "senet", "backbone": "test_resnet.r160_in1k"},
}


@contextlib.contextmanager
def host_reads_raise(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inside the block every Python-level way of reading a tensor's value back to the host raises."""
    with monkeypatch.context() as mp:
        for owner, names in ((torch.Tensor, TENSOR_SYNCS), (torch, TORCH_SYNCS)):
            for name in names:
                def boom(*args: Any, _name: str = name, **kwargs: Any) -> Any:
                    raise AssertionError(f"{_name}() in the training step: the host waits for the device here")

                mp.setattr(owner, name, boom)
        yield


def _model(case: str, device: str = "cpu") -> torch.nn.Module:
    torch.manual_seed(0)
    section = dict(CASES[case], pretrained=False)
    early = section.pop("backward_part", False)
    m = build_method(section, 5).to(device).train()
    if early:  # as fgvc.engine.builder.part_backward without AMP or accumulation
        m.backward_part = lambda part: part.float().backward()
    return m


def _batch(device: str = "cpu", soft: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    images, targets = torch.randn(4, 3, 48, 48, device=device), torch.tensor([0, 3, 3, 1], device=device)
    return images, (F.one_hot(targets, 5).float() if soft else targets)


@pytest.mark.parametrize("case", list(CASES))
def test_training_step_reads_nothing_back_on_the_cpu(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    m = _model(case)
    for step, soft in enumerate((False, True, False)):  # WS-DAN's warm-up step, then augmented steps
        images, targets = _batch(soft=soft)
        with host_reads_raise(monkeypatch):
            out = m(images, targets)
            out["loss"].backward()
        assert torch.isfinite(out["loss"]), (case, step)
    if case.startswith("wsdan"):
        assert "ce_crop" in out and int(m.steps_done) == 3  # the crop/drop branch ran


def test_the_patch_catches_a_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.ones(2)
    with host_reads_raise(monkeypatch), pytest.raises(AssertionError, match="waits for the device"):
        if x.sum() > 0:
            pass
    with host_reads_raise(monkeypatch), pytest.raises(AssertionError, match="unique"):
        torch.unique(x)
    assert x.sum().item() == 2.0  # restored afterwards


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (sync debug mode)")
@pytest.mark.parametrize("case", list(CASES))
def test_training_step_never_synchronises_on_cuda(case: str) -> None:
    m = _model(case, "cuda")
    for soft in (False, True, False):
        images, targets = _batch("cuda", soft)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = m(images, targets)
            out["loss"].backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out["loss"])
