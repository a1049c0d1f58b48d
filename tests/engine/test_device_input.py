"""fgvc.engine.device_input: the uint8 batches normalised on the device equal the float pipeline's output; float
batches pass through; the channels-last collate equals the default one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fgvc.data import build_transforms
from fgvc.engine.device_input import batch_format, collate_channels_last, to_model_input


@pytest.mark.parametrize("mean,std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                      ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
@pytest.mark.parametrize("train", [False, True])
def test_uint8_normalised_on_device_equals_float_pipeline(mean: tuple[float, ...], std: tuple[float, ...],
                                                          train: bool) -> None:
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    kw = dict(train=train, color_jitter=0.3 if train else 0.0)
    as_float = build_transforms(32, 40, mean, std, **kw)
    as_uint8 = build_transforms(32, 40, mean, std, output="uint8", **kw)
    as_float.set_random_seed(3)
    as_uint8.set_random_seed(3)  # the same crop, flip and jitter
    x, u = as_float(img), as_uint8(img)
    assert u.dtype == torch.uint8 and x.dtype == torch.float32
    contiguous = torch.stack([u, u])
    channels_last = collate_channels_last([(u, 0), (u, 1)])[0]  # both layouts the loaders hand over
    for batch in (contiguous, channels_last):
        out = to_model_input(batch, torch.device("cpu"), mean, std)
        assert out.dtype == torch.float32 and torch.allclose(out[0], x, atol=1e-5, rtol=0)
        assert out.is_contiguous(memory_format=torch.channels_last) == (batch is channels_last)


def test_float_batches_pass_through_unchanged() -> None:
    x = torch.randn(2, 3, 8, 8)
    out = to_model_input(x, torch.device("cpu"), (0.5,) * 3, (0.5,) * 3, channels_last=True)
    assert torch.equal(out, x) and out.is_contiguous(memory_format=torch.channels_last)
    assert batch_format(torch.device("cpu")) == "uint8" and batch_format(torch.device("cuda")) == "uint8"


def test_channels_last_collate_equals_default_collate() -> None:
    from torch.utils.data import default_collate

    t = build_transforms(16, 20, (0.5,) * 3, (0.5,) * 3, train=False)
    rng = np.random.default_rng(1)
    batch = [(t(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)), k) for k in range(3)]
    images, labels = collate_channels_last(batch)
    ref_images, ref_labels = default_collate(batch)
    assert images.shape == (3, 3, 16, 16) and images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)
