"""The generic 'folder' (root/<split>/<class>/*.jpg) and 'csv' (path,label,split manifest) readers."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
from data_fakes import write_image

from fgvc.data import build_dataset
from fgvc.data.base import AnnotationError, DataError, DatasetNotFoundError, MissingImagesError

folder = functools.partial(build_dataset, "folder")
csv = functools.partial(build_dataset, "csv")


def _folder(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    for split, classes in layout.items():
        for cls, n in classes.items():
            for i in range(n):
                write_image(root / split / cls / f"{i}.png", (16, 16), (10 * i, 50, 90))
    return root


def test_folder_splits_share_train_classes(tmp_path: Path) -> None:
    layout = {"train": {"b_sparrow": 2, "a_wren": 3, "c_owl": 1}, "val": {"c_owl": 2}, "test": {"a_wren": 1}}
    root = _folder(tmp_path, layout)
    (root / "train" / "a_wren" / "notes.txt").write_text("not an image")
    train = folder(root, "train")
    assert train.classes == ["a_wren", "b_sparrow", "c_owl"] and len(train) == 6
    assert train.class_counts().tolist() == [3, 2, 1]
    val = build_dataset("folder", root, "val")
    assert val.classes == train.classes and val.targets == [2, 2]
    assert len(folder(root, "trainval")) == 8
    x, y = val[1]
    assert x.shape == (3, 16, 16) and y == 2


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "train")):
        folder(tmp_path, "train")
    root = _folder(tmp_path, {"train": {"a": 1}, "val": {"zebra": 1}})
    with pytest.raises(AnnotationError, match="class folder 'zebra' of split 'val' is not a class of the train split"):
        folder(root, "train")
    (root / "val" / "zebra" / "0.png").unlink()
    (root / "val" / "zebra").rmdir()
    with pytest.raises(DatasetNotFoundError, match="split folder .*test does not exist"):
        folder(root, "test")
    (root / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="split 'val' .* has no images"):
        folder(root, "val")


def _manifest(path: Path, rows: list[str], header: str = "path,label,split") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_csv_names_relative_and_absolute(tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "a.jpg", fmt="JPEG")
    write_image(tmp_path / "img" / "b.jpg", fmt="JPEG")
    abs_img = write_image(tmp_path / "elsewhere" / "c.png")
    _manifest(tmp_path / "manifest.csv", ["img/a.jpg,wren,train", "img/b.jpg,owl,train", f"{abs_img},owl,test", ""])
    train = csv(tmp_path, "train")
    assert train.classes == ["owl", "wren"] and train.targets == [1, 0]
    test = build_dataset("csv", tmp_path, "test")
    assert test.samples[0].path == abs_img and test.targets == [0]
    assert len(csv(tmp_path / "manifest.csv", "train")) == 2  # root may be the manifest itself


def test_csv_integer_labels_and_custom_columns(tmp_path: Path) -> None:
    for n in "abc":
        write_image(tmp_path / f"{n}.png")
    _manifest(tmp_path / "data" / "list.csv", ["../a.png,10,train", "../b.png,2,train", "../c.png,10,val"],
              header="file,cls,subset")
    ds = csv(tmp_path, "trainval", manifest="data/list.csv", path_column="file", label_column="cls",
                     split_column="subset")
    assert ds.classes == ["2", "10"] and ds.targets == [1, 0, 1]


@pytest.mark.parametrize("rows,header,expected", [
    (["a.png,,train"], "path,label,split", "line 2: empty 'label'"),
    (["a.png,x,train", ",x,train"], "path,label,split", "line 3: empty 'path'"),
    (["a.png,x,train"], "path,label,fold", "missing column(s) 'split' (data.args.split_column)"),
])
def test_csv_errors_name_file_and_row(tmp_path: Path, rows: list[str], header: str, expected: str) -> None:
    write_image(tmp_path / "a.png")
    path = _manifest(tmp_path / "manifest.csv", rows, header)
    with pytest.raises(AnnotationError) as e:
        csv(tmp_path, "train")
    assert str(path) in str(e.value) and expected in str(e.value)


def test_csv_missing_manifest_split_and_images(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="manifest.csv does not exist"):
        csv(tmp_path, "train")
    _manifest(tmp_path / "manifest.csv", ["gone.png,x,train"])
    with pytest.raises(DataError, match="no rows with split='test'"):
        csv(tmp_path, "test")
    with pytest.raises(MissingImagesError, match="1 of 1 images .*gone.png"):
        csv(tmp_path, "train")
