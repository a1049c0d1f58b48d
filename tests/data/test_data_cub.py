"""CUB-200-2011 reader (Wah et al. 2011) on tiny fake trees, plus the real annotation files in ../shared."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fakes import edit_line, make_cub, write_image

from fgvc.data import build_dataset
from fgvc.data.annotations import Problems
from fgvc.data.base import AnnotationError, DataError, DatasetNotFoundError, MissingImagesError
from fgvc.data.cub import parse_cub, read_annotations, read_parts, stratified_holdout
from fgvc.registry import RegistryError

cub = functools.partial(build_dataset, "cub200")


def test_noncontiguous_ids_map_to_sorted_labels(fake_cub: Path) -> None:
    ds = cub(fake_cub, "trainval")
    assert ds.num_classes == 3 and ds.info["class_ids"] == [3, 7, 12]
    assert ds.classes == ["Bird_3", "Bird_7", "Bird_12"]
    assert ds.info["class_folders"] == ["003.Bird_3", "007.Bird_7", "012.Bird_12"]
    assert sorted(set(ds.targets)) == [0, 1, 2]
    assert all(s.path.parent.name == ds.info["class_folders"][s.label] for s in ds.samples)
    assert ds.class_counts().tolist() == [4, 4, 4]
    assert "images=12" in repr(ds) and "classes=3" in repr(ds)


def test_root_may_be_the_cub_folder_itself(fake_cub: Path) -> None:
    assert len(cub(fake_cub / "CUB_200_2011", "test")) == 6


def test_splits_partition_and_holdout(fake_cub: Path) -> None:
    sets = {s: cub(fake_cub, s, val_fraction=0.25) for s in ("train", "val", "test", "trainval")}
    ids = {s: {x.image_id for x in d.samples} for s, d in sets.items()}
    assert len(ids["trainval"]) == 12 and len(ids["test"]) == 6
    assert ids["train"] | ids["val"] == ids["trainval"] and not ids["train"] & ids["val"]
    assert not ids["trainval"] & ids["test"]
    assert sets["val"].class_counts().tolist() == [1, 1, 1]  # stratified: one of 4 per class
    again = {x.image_id for x in cub(fake_cub, "val", val_fraction=0.25).samples}
    assert again == ids["val"]
    other = [{x.image_id for x in cub(fake_cub, "val", val_fraction=0.25, seed=s).samples} for s in range(1, 6)]
    assert any(o != ids["val"] for o in other)


def test_stratified_holdout_keeps_every_class() -> None:
    labels = np.repeat([0, 1, 2, 5], [10, 2, 1, 30])
    held = stratified_holdout(labels, 0.1, seed=0)
    assert held[labels == 0].sum() == 1 and held[labels == 1].sum() == 1 and held[labels == 2].sum() == 0
    assert held[labels == 5].sum() == 3
    assert (held == stratified_holdout(labels, 0.1, seed=0)).all()


def test_val_fraction_zero(fake_cub: Path) -> None:
    assert len(cub(fake_cub, "train", val_fraction=0)) == 12
    with pytest.raises(DataError, match="val_fraction"):
        cub(fake_cub, "val", val_fraction=0)
    with pytest.raises(DataError, match="unknown split 'valid'"):
        cub(fake_cub, "valid")


def test_bbox_crop_and_parts(tmp_path: Path) -> None:
    root = make_cub(tmp_path, class_ids=(1, 2), n_train=2, n_test=1)
    ds = cub(root, "test", crop_to_bbox=True)
    img = np.zeros((30, 40, 3), np.uint8)
    img[4:14, 5:25] = 255  # exactly the box (5, 4, 20, 10)
    from PIL import Image

    Image.fromarray(img).save(ds.samples[0].path, format="PNG")  # lossless, whatever the suffix
    crop = ds.load_sample(0)
    assert crop.shape == (10, 20, 3) and crop.min() == 255
    x, label = ds[0]
    assert x.shape == (3, 10, 20) and x.dtype == torch.float32 and float(x.max()) == 1.0 and label == 0
    assert ds.samples[0].bbox == (5.0, 4.0, 20.0, 10.0)
    parts = ds.parts
    assert parts is not None and parts.shape == (2, 15, 3)
    i = ds.samples[0].image_id
    assert parts[0, 2].tolist() == [float(i), 3.0, 1.0] and parts[0, 1, 2] == 0
    assert ds.info["part_names"][0] == "part1"
    assert cub(root, "test", load_parts=False).parts is None


def test_read_annotations_and_parts_without_images(tmp_path: Path) -> None:
    root = make_cub(tmp_path, images=False)
    table = read_annotations(root)
    assert list(table.columns[:9]) == ["image_id", "path", "class_id", "label", "is_train", "x", "y", "w", "h"]
    assert len(table) == 18 and table["label"].tolist()[:7] == [0] * 6 + [1]
    assert read_parts(root).shape == (18, 15, 3)
    with pytest.raises(MissingImagesError, match=r"12 of 12 images .* missing .*fetch cub200"):
        cub(root, "trainval")


def test_missing_dataset_names_path_and_fetch(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as e:
        cub(tmp_path / "nowhere", "train")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "CUB_200_2011") in msg
    assert f"python -m fgvc.datasets fetch cub200 --root {tmp_path / 'nowhere'}" in msg


def test_no_boxes_and_crop_request(tmp_path: Path) -> None:
    root = make_cub(tmp_path, boxes=False, parts=False)
    ds = cub(root, "test")
    assert ds.samples[0].bbox is None and ds.parts is None
    with pytest.raises(DataError, match="crop_to_bbox"):
        cub(root, "test", crop_to_bbox=True)


MALFORMED = [
    ("images.txt", 2, "2", "expected 2 space-separated fields"),
    ("images.txt", 2, "x 003.Bird_3/a.jpg", "field 'image_id' is not an integer"),
    ("images.txt", 3, "1 003.Bird_3/dup.jpg", "duplicate image id 1 (first on line 1)"),
    ("classes.txt", 2, "3 003.Again", "duplicate class id 3"),
    ("classes.txt", 1, "three 003.Bird_3", "field 'class_id' is not an integer"),
    ("image_class_labels.txt", 2, "2 99", "class id 99 is not in classes.txt"),
    ("image_class_labels.txt", 2, "2 7 1", "expected 2 space-separated fields"),
    ("image_class_labels.txt", 2, "999 3", "image id 999 is not in images.txt"),
    ("image_class_labels.txt", 2, None, "have no line in this file"),
    ("train_test_split.txt", 4, "4 2", "is_train must be 0 or 1"),
    ("train_test_split.txt", 4, "4 1.0", "field 'is_train' is not an integer"),
    ("bounding_boxes.txt", 5, "5 1 2 3", "expected 5 space-separated fields"),
    ("bounding_boxes.txt", 5, "5 1 2 -3 4", "width and height must be positive"),
    ("bounding_boxes.txt", 5, "5 1 2 a 4", "field 'w' is not a number"),
    ("parts/part_locs.txt", 7, "1 7 1.0 2.0 5", "visible must be 0 or 1"),
    ("parts/part_locs.txt", 7, "1 16 1.0 2.0 1", "part id 16 is not in 1..15"),
    ("parts/part_locs.txt", 7, "1 1 1.0 2.0 1", "duplicate (image id, part id) = (1, 1) (first on line 1)"),
    ("parts/part_locs.txt", 7, "1 7 1.0", "expected 5 space-separated fields"),
    ("parts/parts.txt", 3, "2 again", "duplicate part id 2"),
]


@pytest.mark.parametrize("name,line,text,expected", MALFORMED)
def test_malformed_lines_name_file_and_line(fake_cub: Path, name: str, line: int, text: str | None,
                                            expected: str) -> None:
    path = fake_cub / "CUB_200_2011" / name
    edit_line(path, line, text)
    with pytest.raises(AnnotationError) as e:
        cub(fake_cub, "train")
    msg = str(e.value)
    assert str(path) in msg and expected in msg
    if text is not None:
        assert f"line {line}" in msg and repr(text) in msg


def test_collect_mode_reports_every_problem(fake_cub: Path) -> None:
    d = fake_cub / "CUB_200_2011"
    edit_line(d / "images.txt", 2, "2")
    edit_line(d / "image_class_labels.txt", 3, "3 99")
    edit_line(d / "train_test_split.txt", 4, "4 7")
    problems: list = []
    ann = parse_cub(fake_cub, Problems.collecting(problems))
    assert {(p.path.name, p.line) for p in problems} >= {("images.txt", 2), ("image_class_labels.txt", 3),
                                                         ("train_test_split.txt", 4)}
    assert len(ann.table) == 15  # the three bad images are left out


def test_build_dataset_checks_args(fake_cub: Path) -> None:
    ds = build_dataset("cub200", fake_cub, "val", val_fraction=0.5, seed=3)
    assert ds.name == "cub200" and len(ds) == 6
    with pytest.raises(RegistryError, match="data.args.*val_fraction") as e:
        build_dataset("cub200", fake_cub, "val", val_fracton=0.5)
    assert str(e.value).endswith("it takes: crop_to_bbox, val_fraction, seed, load_parts")  # data.args only
    with pytest.raises(RegistryError, match="takes no argument 'root' in data.args"):
        build_dataset("cub200", fake_cub, "val", root=fake_cub)


def test_getitem_with_transform(fake_cub: Path) -> None:
    from fgvc.data import build_transforms

    t = build_transforms(16, 18, (0.5,) * 3, (0.5,) * 3, train=False)
    ds = cub(fake_cub, "test", transform=t)
    x, y = ds[-1]
    assert x.shape == (3, 16, 16) and y == 2
    with pytest.raises(IndexError):
        ds[6]
    write_image(ds.samples[0].path, (8, 8), (0, 0, 0), mode="L", fmt="JPEG")
    assert ds[0][0].shape == (3, 16, 16)


def test_empty_images_txt(fake_cub: Path) -> None:
    (fake_cub / "CUB_200_2011" / "images.txt").write_text("")
    with pytest.raises(AnnotationError, match="images.txt: lists no images"):
        cub(fake_cub, "train")


# ---- the real files (../shared) ----


@pytest.mark.shared
def test_shared_cub_mini(shared_data: Path) -> None:
    root = shared_data / "cub200-mini"
    trainval, test = cub(root, "trainval"), cub(root, "test")
    assert (len(trainval), len(test), trainval.num_classes) == (600, 588, 20)
    assert trainval.info["class_ids"][:2] == [41, 57] and trainval.classes[0] == "Scissor_tailed_Flycatcher"
    train, val = cub(root, "train"), cub(root, "val")
    assert len(train) + len(val) == 600 and val.class_counts().min() >= 1
    x, y = train[0]
    assert x.shape == (3, 227, 227) and 0 <= y < 20


@pytest.mark.shared
def test_shared_cub_annotations_parse(shared_data: Path) -> None:
    import time

    root = shared_data / "cub200-annotations"
    t0 = time.perf_counter()
    table = read_annotations(root)
    parts = read_parts(root)
    assert time.perf_counter() - t0 < 5.0
    assert len(table) == 11788 and table["class_id"].nunique() == 200 and table["label"].max() == 199
    assert int(table["is_train"].sum()) == 5994 and int((table["is_train"] == 0).sum()) == 5794
    assert table[["x", "y", "w", "h"]].notna().all().all() and (table["w"] > 0).all()
    assert table.iloc[0][["x", "y", "w", "h"]].tolist() == [60.0, 27.0, 325.0, 304.0]
    assert parts.shape == (11788, 15, 3) and set(np.unique(parts[..., 2])) == {0.0, 1.0}
    assert parts[0, 1].tolist() == [312.0, 182.0, 1.0]
    with pytest.raises(MissingImagesError, match=r"5,994 of 5,994 images .* missing \(first: .*\.jpg"):
        cub(root, "trainval")
