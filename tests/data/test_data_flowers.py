"""Oxford Flowers 102 reader (Nilsback and Zisserman 2008) on tiny fake .mat files, plus the real mini set."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from data_fakes import make_flowers

from fgvc.data import build_dataset
from fgvc.data.base import AnnotationError, DataError, DatasetNotFoundError, MissingImagesError

flowers = functools.partial(build_dataset, "flowers102")


def test_splits_and_contiguous_labels(fake_flowers: Path) -> None:
    sets = {s: flowers(fake_flowers, s) for s in ("train", "val", "test", "trainval")}
    assert [len(sets[s]) for s in ("train", "val", "test", "trainval")] == [3, 3, 3, 6]
    ds = sets["train"]
    # images 1..9 are listed: classes 5 (1-3), 9 (4-6), 2 (7-9); 7 (images 10-12) is not listed anywhere
    assert ds.info["class_ids"] == [2, 5, 9] and ds.num_classes == 3
    assert [s.image_id for s in ds.samples] == [1, 4, 7] and ds.targets == [1, 2, 0]
    assert ds.classes == ["class_2", "rose", "tulip"]
    assert ds.samples[0].path.name == "image_00001.jpg"
    assert all(d.classes == ds.classes for d in sets.values())
    x, y = ds[2]
    assert x.shape == (3, 20, 24) and y == 0


def test_names_file_argument(fake_flowers: Path, tmp_path: Path) -> None:
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"2": "daisy", "5": "rose", "9": "tulip"}))
    ds = build_dataset("flowers102", fake_flowers, "val", names_file=str(names))
    assert ds.classes == ["daisy", "rose", "tulip"]
    with pytest.raises(DatasetNotFoundError, match="names_file"):
        flowers(fake_flowers, "val", names_file=str(tmp_path / "none.json"))


def test_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as e:
        flowers(tmp_path / "x", "train")
    assert str(tmp_path / "x" / "imagelabels.mat") in str(e.value)
    assert f"fetch flowers102 --root {tmp_path / 'x'}" in str(e.value)


def test_missing_images(tmp_path: Path) -> None:
    root = make_flowers(tmp_path / "f", images=False)
    with pytest.raises(MissingImagesError, match=r"3 of 3 images .*image_00001\.jpg"):
        flowers(root, "train")


@pytest.mark.parametrize("mats,file,expected", [
    ({"labels": None}, "imagelabels.mat", "key 'labels' not found"),
    ({"labels": np.ones((2, 6), np.uint8)}, "imagelabels.mat", "key 'labels' has shape 2 x 6, expected 1 x n"),
    ({"trnid": None}, "setid.mat", "key 'trnid' not found (keys found: valid, tstid)"),
    ({"valid": np.ones((3, 3), np.uint16)}, "setid.mat", "key 'valid' has shape 3 x 3, expected 1 x n"),
    ({"tstid": np.array([[3, 6, 99]], np.uint16)}, "setid.mat", "outside 1..12"),
    ({"tstid": np.array([[3, 3]], np.uint16)}, "setid.mat", "more than once"),
    ({"tstid": np.array([[1, 6]], np.uint16)}, "setid.mat", "must not overlap"),
    ({"labels": np.array([["a"] * 12])}, "imagelabels.mat", "must hold integers"),
])
def test_mat_errors_name_file_key_and_shape(tmp_path: Path, mats: dict, file: str, expected: str) -> None:
    root = make_flowers(tmp_path / "f", mats=mats, images=False)
    with pytest.raises(AnnotationError) as e:
        flowers(root, "train")
    assert str(root / file) in str(e.value) and expected in str(e.value)


def test_unreadable_mat_and_split(fake_flowers: Path) -> None:
    (fake_flowers / "setid.mat").write_bytes(b"not a mat file")
    with pytest.raises(AnnotationError, match="setid.mat: not a readable MATLAB file"):
        flowers(fake_flowers, "train")
    with pytest.raises(DataError, match="unknown split"):
        flowers(fake_flowers, "dev")


@pytest.mark.shared
def test_shared_flowers_mini(shared_data: Path) -> None:
    root = shared_data / "flowers102-mini"
    sizes = {s: len(flowers(root, s)) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 120, "val": 120, "test": 341, "trainval": 240}
    ds = flowers(root, "train")
    assert ds.num_classes == 12 and ds.info["class_ids"] == [3, 5, 8, 22, 31, 50, 56, 65, 73, 79, 81, 86]
    assert ds.classes[0] == "canterbury bells" and ds.classes[-1] == "tree mallow"
    assert ds.class_counts().tolist() == [10] * 12
    img = ds.load_sample(0)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 500
