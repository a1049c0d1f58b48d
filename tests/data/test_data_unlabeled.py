"""``data.name: unlabeled`` (fgvc.data.unlabeled) and SimCLR's two-view augmentation (fgvc.data.views)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fgvc.data import build_dataset
from fgvc.data.base import DataError, DatasetNotFoundError
from fgvc.data.views import TwoViews, build_two_views


def _img(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


def test_a_folder_is_read_recursively_with_one_pseudo_class(tmp_path):
    want = [_img(tmp_path / "a.jpg"), _img(tmp_path / "x" / "y" / "b.png"), _img(tmp_path / "x" / "c.JPG")]
    _img(tmp_path / ".hidden" / "d.jpg")
    _img(tmp_path / "x" / ".e.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = build_dataset("unlabeled", tmp_path, "train")
    assert sorted(s.path for s in ds.samples) == sorted(want)
    assert ds.classes == ["unlabeled"] and {s.label for s in ds.samples} == {0}
    # a split folder, where there is one, is what the split holds
    split = [_img(tmp_path / "train" / "f.jpg")]
    assert [s.path for s in build_dataset("unlabeled", tmp_path, "train").samples] == split


def test_a_labelled_sets_split_without_its_labels(synthetic_set):
    root = synthetic_set()
    labelled = build_dataset("cub200", root, "test")
    ds = build_dataset("unlabeled", root, "test", source="cub200")
    assert [s.path for s in ds.samples] == [s.path for s in labelled.samples]
    assert len({s.label for s in labelled.samples}) == 3 and {s.label for s in ds.samples} == {0}
    assert ds.classes == ["unlabeled"]


def test_missing_or_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        build_dataset("unlabeled", tmp_path / "nope", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images; put images"):
        build_dataset("unlabeled", tmp_path / "empty", "train")


def _views(**kw) -> TwoViews:
    return build_two_views(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), **kw)


def test_two_views_differ_are_stacked_and_reproducible():
    image = np.random.default_rng(1).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    t = _views()
    t.set_random_seed(7)
    out = t(image)
    assert out.shape == (3, 64, 32) and out.dtype == torch.float32
    assert not torch.equal(out[:, :32], out[:, 32:])  # the views differ
    t.set_random_seed(7)
    assert torch.equal(t(image), out)  # the same seed, the same views (exact resume)
    u8 = t.as_uint8()
    u8.set_random_seed(7)
    assert isinstance(u8, TwoViews) and u8(image).dtype == torch.uint8 and u8(image).shape == (3, 64, 32)


def test_the_two_views_share_nothing_but_the_source_image():
    """Full-image crops, no colour change: each view is the image or its mirror, drawn independently per view."""
    image = np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    t = _views(scale=(1.0, 1.0), jitter_p=0.0, gray_p=0.0, blur_p=0.0, output="uint8")
    t.pipeline.transforms[0].ratio = (1.0, 1.0)
    flips = []
    for seed in range(40):
        t.set_random_seed(seed)
        out = t(image)
        plain, mirror = torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(image[:, ::-1].copy()).permute(2, 0, 1)
        both = []
        for view in (out[:, :32], out[:, 32:]):
            assert torch.equal(view, plain) or torch.equal(view, mirror)  # nothing but the source image
            both.append(torch.equal(view, mirror))
        flips.append(tuple(both))
    same = sum(a == b for a, b in flips)
    assert 8 <= same <= 32, flips  # independent coins agree about half the time (not always, never)
    assert 8 <= sum(a for a, _ in flips) <= 32


def test_bad_view_parameters_name_their_key():
    with pytest.raises(ValueError, match="data.augment.simclr.scale"):
        _views(scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="data.augment.simclr.gray_p"):
        _views(gray_p=1.5)
    with pytest.raises(ValueError, match="data.augment.simclr.jitter"):
        _views(jitter=(0.4, 0.4))
