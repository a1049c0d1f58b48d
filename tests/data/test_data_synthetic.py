"""The synthetic fine-grained set: deterministic bytes, CUB-200-2011 layout, generate-on-first-use builder."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from fgvc.data import build_dataset, make_synthetic
from fgvc.data.base import DataError, DatasetNotFoundError
from fgvc.data.cub import CUB200
from fgvc.data.synthetic import PATTERNS, SyntheticFGVC, mirror

SMALL = dict(num_classes=3, images_per_class=4, img_size=32, progress=False)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = _digests(make_synthetic(tmp_path / "a", seed=1, **SMALL))
    b = _digests(make_synthetic(tmp_path / "b", seed=1, **SMALL))
    c = _digests(make_synthetic(tmp_path / "c", seed=2, **SMALL))
    assert a == b and len(a) == 3 * 4 + 9  # images + 7 annotation files + synthetic.json + README.md
    assert a != c


def test_layout_read_by_cub_reader(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "s", test_fraction=0.5, **SMALL)
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["num_classes"] == 3 and len(meta["classes"]) == 3
    class_patterns = {tuple(p) for p in meta["classes"].values()}
    assert not class_patterns & {tuple(p) for p in meta["distractor_patterns"]}
    trainval, test = CUB200(root, "trainval"), CUB200(root, "test")
    assert (len(trainval), len(test), trainval.num_classes) == (6, 6, 3)
    assert trainval.class_counts().tolist() == [2, 2, 2]
    s = trainval.samples[0]
    x, y, w, h = s.bbox
    assert 0 <= x and 0 <= y and x + w <= 32 and y + h <= 32 and w > 4 and h > 4
    parts = trainval.parts
    assert parts.shape == (6, 15, 3) and (parts[:, 0, 2] == 1).all() and (parts[:, 1:] == 0).all()
    assert ((parts[:, 0, :2] > 0) & (parts[:, 0, :2] < 32)).all()
    img = trainval.load_sample(0)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and img.std() > 10
    assert len(PATTERNS) == 48


def test_refuses_bad_arguments_and_real_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        make_synthetic(tmp_path / "x", num_classes=45, images_per_class=2, img_size=32, progress=False)
    (tmp_path / "real" / "CUB_200_2011").mkdir(parents=True)
    with pytest.raises(DataError, match="not a synthetic set"):
        make_synthetic(tmp_path / "real", **SMALL)


def test_builder_generates_once_and_regenerates_on_change(tmp_path: Path) -> None:
    root = tmp_path / "syn"
    args = dict(num_classes=3, images_per_class=4, img_size=32, val_fraction=0.5)
    ds = build_dataset("synthetic", root, "train", **args)
    assert isinstance(ds, SyntheticFGVC) and len(ds) == 3 and ds.num_classes == 3
    assert len(build_dataset("synthetic", root, "val", **args)) == 3
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    build_dataset("synthetic", root, "test", **args)
    assert (root / "synthetic.json").stat().st_mtime_ns == stamp  # read, not regenerated
    ds = build_dataset("synthetic", root, "test", **{**args, "images_per_class": 2})
    assert len(ds) == 3 and json.loads((root / "synthetic.json").read_text())["images_per_class"] == 2
    with pytest.raises(DatasetNotFoundError, match="make-synthetic"):
        SyntheticFGVC(root, "test", generate=False, num_classes=3, images_per_class=4, img_size=32)
    with pytest.raises(DatasetNotFoundError, match="make-synthetic"):
        SyntheticFGVC(tmp_path / "none", "test", generate=False)


def test_builder_refuses_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="holds other files"):
        SyntheticFGVC(tmp_path, "train", num_classes=3, images_per_class=4, img_size=32)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_hflip_problem_names_mirror_classes(tmp_path: Path) -> None:
    ds = SyntheticFGVC(tmp_path / "s", "train", num_classes=3, images_per_class=4, img_size=32)
    ds.meta = {"classes": {"001.a": ["Square", "Slash", "Plain"], "002.b": ["Square", "Backslash", "Plain"],
                           "003.c": ["Disk", "Dots", "Plain"]}, "distractor_patterns": [["Disk", "Checker", "Plain"]]}
    assert "001.a <-> 002.b" in ds.hflip_problem()
    ds.meta["classes"] = {"001.a": ["Diamond", "Slash", "Framed"], "003.c": ["Disk", "Dots", "Plain"]}
    ds.meta["distractor_patterns"] = [["Diamond", "Backslash", "Framed"]]
    assert "001.a -> a distractor" in ds.hflip_problem()
    ds.meta["classes"] = {"001.a": ["Square", "Hstripes", "Plain"], "003.c": ["Triangle", "Checker", "Framed"]}
    assert ds.hflip_problem() is None  # every shape and these textures are symmetric left-right
    assert mirror(("Triangle", "Slash", "Plain")) == ("Triangle", "Backslash", "Plain")
