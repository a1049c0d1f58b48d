"""build_transforms: output shapes, normalisation, validation, seeding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fgvc.data import build_transforms

HALF = (0.5, 0.5, 0.5)


@pytest.mark.parametrize("train,rrc", [(False, False), (True, False), (True, True)])
def test_output_shape_and_dtype(train: bool, rrc: bool) -> None:
    t = build_transforms(32, 40, HALF, HALF, train=train, random_resized_crop=rrc, color_jitter=0.2)
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    x = t(img)
    assert isinstance(x, torch.Tensor) and x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_normalisation_maps_white_to_one() -> None:
    t = build_transforms(16, 16, HALF, HALF, train=False)
    assert torch.allclose(t(np.full((20, 16, 3), 255, np.uint8)), torch.ones(3, 16, 16))
    assert torch.allclose(t(np.zeros((16, 20, 3), np.uint8)), -torch.ones(3, 16, 16))
    imagenet = build_transforms(16, None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), train=False)
    x = imagenet(np.full((18, 18, 3), 255, np.uint8))
    assert torch.allclose(x[:, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))


def test_eval_is_resize_shorter_side_then_centre_crop() -> None:
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 18:22] = 255  # a vertical bar in the middle survives the centre crop
    x = build_transforms(10, 10, HALF, HALF, train=False)(img)
    assert x.shape == (3, 10, 10) and float(x[0, :, 4:6].mean()) > 0.9 and float(x[0, :, 0].max()) < -0.9


def test_default_resize_and_repr() -> None:
    t = build_transforms(224, None, HALF, HALF, train=False)
    assert "256" in repr(t) and "centre crop 224" in repr(t)
    t = build_transforms(64, 72, HALF, HALF, train=True, color_jitter=0.4)
    assert repr(t).startswith("Transform(train:") and "hflip" in repr(t) and "color_jitter=0.4" in repr(t)


def test_crop_larger_than_resize_names_keys() -> None:
    with pytest.raises(ValueError) as e:
        build_transforms(448, 400, HALF, HALF, train=True)
    assert "data.img_size=448" in str(e.value) and "data.resize=400" in str(e.value) and "512" in str(e.value)
    with pytest.raises(ValueError, match="rrc_scale"):
        build_transforms(32, None, HALF, HALF, train=True, rrc_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="std"):
        build_transforms(32, None, HALF, (0.5, 0.0, 0.5), train=True)


def test_seeded_augmentation_is_reproducible() -> None:
    t = build_transforms(24, 32, HALF, HALF, train=True, random_resized_crop=True, color_jitter=0.3)
    img = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    t.set_random_seed(5)
    a = t(img)
    t.set_random_seed(5)
    assert torch.equal(a, t(img))


def test_rejects_non_uint8_rgb() -> None:
    t = build_transforms(16, None, HALF, HALF, train=False)
    with pytest.raises(TypeError, match="uint8"):
        t(np.zeros((20, 20), np.uint8))


def _coordinates(h: int, w: int) -> np.ndarray:
    """Red = column x 10, green = row x 10: a crop's corner pixels give its offset and whether it was flipped."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0], img[:, :, 1] = np.arange(w)[None, :] * 10, np.arange(h)[:, None] * 10
    return img


def test_crop_and_flip_draw_independently() -> None:
    """Every step draws from one reseeded stream: with a generator per step, all started from the same seed, the
    crop's vertical offset decided the flip (every crop from the top half flipped, none from the bottom half)."""
    t = build_transforms(8, 12, HALF, HALF, train=True, output="uint8")
    img = _coordinates(12, 12)
    top, flipped = [], []
    for seed in range(400):
        t.set_random_seed(seed)
        out = t(img).numpy()
        top.append(int(out[1, 0, 0]) // 10)
        flipped.append(bool(out[0, 0, 0] > out[0, 0, -1]))
    top_a, flip_a = np.array(top), np.array(flipped)
    for rows in (top_a <= 1, top_a >= 3):
        assert rows.sum() > 100 and 0.3 < flip_a[rows].mean() < 0.7
    assert 0.4 < flip_a.mean() < 0.6 and len(set(top)) == 5


def test_copies_reseed_alike() -> None:
    """A pickled transform (what a DataLoader worker gets) keeps its steps on the one stream."""
    import pickle

    t = build_transforms(16, 20, HALF, HALF, train=True, color_jitter=0.2)
    img = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    copy = pickle.loads(pickle.dumps(t))
    outs = []
    for tf in (t, copy):
        tf.set_random_seed(11)
        outs.append(tf(img))
    assert torch.equal(outs[0], outs[1])


def test_as_uint8_is_the_same_pipeline_without_normalize() -> None:
    from fgvc.engine.device_input import to_model_input

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    t = build_transforms(16, 20, mean, std, train=False)
    u = t.as_uint8()
    assert u.output == "uint8" and u.as_uint8() is u and t.output == "float" and "uint8" in repr(u)
    img = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    x = to_model_input(u(img)[None], torch.device("cpu"), u.mean, u.std)[0]
    assert u(img).dtype == torch.uint8 and torch.allclose(x, t(img), atol=1e-5, rtol=0)
