"""The synthetic fine-grained set: deterministic bytes, CUB-200-2011 layout, generate-on-first-use reader."""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from fgvc.data import build_dataset, make_synthetic
from fgvc.data.base import DataError, DatasetNotFoundError
from fgvc.data.synthetic import PATTERNS, hflip_problem, mirror
from fgvc.datasets import main
from fgvc.registry import RegistryError

SMALL = dict(num_classes=3, images_per_class=4, render_size=32, progress=False)
ARGS = dict(num_classes=3, images_per_class=4, render_size=32)  # the same set, as data.args
synthetic = functools.partial(build_dataset, "synthetic")
cub = functools.partial(build_dataset, "cub200")

# md5 of files of make_synthetic(seed=0, **SMALL), recorded before the generator was split into computing and
# writing: the boxes and part centres come from the rendering, so they change if any random draw does.
GOLDEN = {
    "CUB_200_2011/bounding_boxes.txt": "c975d984f6dd705b36e1fb4c0257d4a3",
    "CUB_200_2011/parts/part_locs.txt": "7d0f062b9ecb1111c998f21d39fbcb95",
    "CUB_200_2011/train_test_split.txt": "03bcf067c05e3c0e0d504e394f264ed7",
    "CUB_200_2011/images.txt": "2dc6fbca883e767ba7062824c3a0d5ab",
}


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = _digests(make_synthetic(tmp_path / "a", seed=0, **SMALL))
    b = _digests(make_synthetic(tmp_path / "b", seed=0, **SMALL))
    c = _digests(make_synthetic(tmp_path / "c", seed=2, **SMALL))
    assert a == b and len(a) == 3 * 4 + 9  # images + 7 annotation files + synthetic.json + README.md
    assert a != c
    assert {k: a[k] for k in GOLDEN} == GOLDEN


def test_layout_read_by_cub_reader(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "s", test_fraction=0.5, **SMALL)
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["num_classes"] == 3 and len(meta["classes"]) == 3 and meta["render_size"] == 32
    assert "img_size" not in meta
    class_patterns = {tuple(p) for p in meta["classes"].values()}
    assert not class_patterns & {tuple(p) for p in meta["distractor_patterns"]}
    trainval, test = cub(root, "trainval"), cub(root, "test")
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
        make_synthetic(tmp_path / "x", num_classes=45, images_per_class=2, render_size=32, progress=False)
    with pytest.raises(ValueError, match="render_size >= 32"):
        make_synthetic(tmp_path / "x", num_classes=2, images_per_class=2, render_size=16, progress=False)
    (tmp_path / "real" / "CUB_200_2011").mkdir(parents=True)
    with pytest.raises(DataError, match="not a synthetic set.*choose another --output"):
        make_synthetic(tmp_path / "real", **SMALL)


def test_reader_generates_once_and_regenerates_on_change(tmp_path: Path) -> None:
    root = tmp_path / "syn"
    ds = synthetic(root, "train", val_fraction=0.5, **ARGS)
    assert ds.name == "synthetic" and len(ds) == 3 and ds.num_classes == 3
    assert ds.info["meta"]["render_size"] == 32 and ds.info["class_ids"] == [1, 2, 3]
    assert len(synthetic(root, "val", val_fraction=0.5, **ARGS)) == 3
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    synthetic(root, "test", **ARGS)
    assert (root / "synthetic.json").stat().st_mtime_ns == stamp  # read, not regenerated
    ds = synthetic(root, "test", **{**ARGS, "images_per_class": 2})
    assert len(ds) == 3 and json.loads((root / "synthetic.json").read_text())["images_per_class"] == 2
    with pytest.raises(DatasetNotFoundError, match="make-synthetic --output .* --render-size 32"):
        synthetic(root, "test", generate=False, **ARGS)
    with pytest.raises(DatasetNotFoundError, match="make-synthetic"):
        synthetic(tmp_path / "none", "test", generate=False)
    with pytest.raises(DataError, match="synthetic has no official validation split"):
        synthetic(root, "val", val_fraction=0, **ARGS)


def test_set_made_before_the_rename_is_read_not_regenerated(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "old", seed=0, **SMALL)
    meta_path = root / "synthetic.json"
    old = json.loads(meta_path.read_text())
    old = {("img_size" if k == "render_size" else k): v for k, v in old.items()}  # what older versions wrote
    meta_path.write_text(json.dumps(old, indent=1) + "\n")
    before = _digests(root)
    ds = synthetic(root, "test", generate=False, **ARGS)  # generate=False: a mismatch would be an error
    assert len(ds) == 6 and ds.info["meta"]["render_size"] == 32
    synthetic(root, "train", **ARGS)
    after = _digests(root)
    after.pop(".synthetic.lock")  # the reader's lock between processes
    assert after == before  # nothing was rewritten


def test_old_data_args_key_says_it_was_renamed(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as e:
        synthetic(tmp_path / "s", "train", num_classes=3, images_per_class=4, img_size=32)
    msg = str(e.value)
    assert "data.args.img_size" in msg and "renamed to data.args.render_size" in msg
    assert "rendered at on disk" in msg and "data.img_size" in msg and "\n" not in msg
    assert not (tmp_path / "s").exists()  # refused before generating anything


def test_cli_output_flag_and_hidden_old_spellings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--num-classes", "2", "--images-per-class", "2", "--no-progress"]
    assert main(["make-synthetic", "--output", str(tmp_path / "new"), "--render-size", "32", *common]) == 0
    assert capsys.readouterr().err == ""
    assert main(["make-synthetic", "--out", str(tmp_path / "old"), "--img-size", "32", *common]) == 0
    err = capsys.readouterr().err
    assert "--out is deprecated; use --output DIR" in err and "--img-size is deprecated; use --render-size" in err
    assert _digests(tmp_path / "new") == _digests(tmp_path / "old")
    with pytest.raises(SystemExit) as e:
        main(["make-synthetic", *common])
    assert e.value.code == 2 and "one of the arguments --output is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["make-synthetic", "--help"])
    shown = capsys.readouterr().out
    assert "--output DIR" in shown and "--render-size" in shown and "--out " not in shown and "--img-size" not in shown


def test_reader_refuses_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="holds other files"):
        synthetic(tmp_path, "train", **ARGS)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_hflip_problem_names_mirror_classes(tmp_path: Path) -> None:
    meta = {"classes": {"001.a": ["Square", "Slash", "Plain"], "002.b": ["Square", "Backslash", "Plain"],
                        "003.c": ["Disk", "Dots", "Plain"]}, "distractor_patterns": [["Disk", "Checker", "Plain"]]}
    assert "001.a <-> 002.b" in hflip_problem(meta, tmp_path)
    meta["classes"] = {"001.a": ["Diamond", "Slash", "Framed"], "003.c": ["Disk", "Dots", "Plain"]}
    meta["distractor_patterns"] = [["Diamond", "Backslash", "Framed"]]
    assert "001.a -> a distractor" in hflip_problem(meta, tmp_path)
    meta["classes"] = {"001.a": ["Square", "Hstripes", "Plain"], "003.c": ["Triangle", "Checker", "Framed"]}
    assert hflip_problem(meta, tmp_path) is None  # every shape and these textures are symmetric left-right
    assert mirror(("Triangle", "Slash", "Plain")) == ("Triangle", "Backslash", "Plain")
    ds = synthetic(tmp_path / "s", "train", **ARGS)  # the reader hands the set's own answer to the data set
    assert ds.hflip_problem() == hflip_problem(ds.info["meta"], tmp_path / "s")
