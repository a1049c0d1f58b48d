"""The ``union`` reader: parts' classes in order with offset labels, per-part shots of the training splits in a fixed
seeded order, and its refusals (a class in two parts, a class short of shots, a nested union, a bad part)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_fakes import make_cub, write_image

from fgvc.data import DataError, build_dataset
from fgvc.registry import RegistryError


def make_folder(root: Path, counts: dict[str, int]) -> Path:
    """``root/{train,test}/<class>/``: ``n`` train and 1 test image per class."""
    for name, n in counts.items():
        for split, k in (("train", n), ("test", 1)):
            for j in range(k):
                write_image(root / split / name / f"{j}.png", (12, 10), (10 * j, 50, 90))
    return root


@pytest.fixture
def parts(tmp_path: Path) -> list[dict]:
    cub = make_cub(tmp_path / "cub", class_ids=(3, 7, 12), n_train=4, n_test=2)
    new = make_folder(tmp_path / "new", {"Kiwi": 5, "Emu": 3})
    return [{"name": "cub200", "root": str(cub), "args": {"val_fraction": 0.0}},
            {"name": "folder", "root": "new", "shots": 2, "seed": 1}]


def test_classes_in_part_order_with_offset_labels(parts, tmp_path):
    test = build_dataset("union", tmp_path, "test", parts=parts)  # relative part roots: under data.root
    assert test.classes == ["Bird_3", "Bird_7", "Bird_12", "Emu", "Kiwi"]
    assert np.bincount(test.targets).tolist() == [2, 2, 2, 1, 1]  # shots never limit the test split
    assert test.info["class_offsets"] == [0, 3]
    train = build_dataset("union", tmp_path, "train", parts=parts)
    assert np.bincount(train.targets).tolist() == [4, 4, 4, 2, 2]
    again = build_dataset("union", tmp_path, "train", parts=parts)
    assert [s.path for s in again.samples] == [s.path for s in train.samples]  # the same shots every time
    none = build_dataset("union", tmp_path, "train", parts=[dict(parts[0], shots=0), parts[1]])
    assert np.bincount(none.targets, minlength=5).tolist() == [0, 0, 0, 2, 2] and len(none.classes) == 5


def test_refusals(parts, tmp_path):
    clash = make_folder(tmp_path / "clash", {"bird 7": 2})
    with pytest.raises(DataError, match=r"class 'bird 7' of .*clash \(folder, data.args.parts\[1\]\) is also class "
                                        r"'Bird_7' of .*cub \(cub200, data.args.parts\[0\]\)"):
        build_dataset("union", tmp_path, "train", parts=[parts[0], {"name": "folder", "root": str(clash)}])
    with pytest.raises(DataError, match=r"1 class\(es\) of .*new have fewer training images than the 4 shots asked "
                                        r"for .*'Emu' \(3\); ask for at most 3 shots"):
        build_dataset("union", tmp_path, "train", parts=[dict(parts[1], shots=4)])
    with pytest.raises(DataError, match="list the parts of that union"):
        build_dataset("union", tmp_path, "train", parts=[{"name": "union", "root": "x"}])
    with pytest.raises(DataError, match="unknown key"):
        build_dataset("union", tmp_path, "train", parts=[dict(parts[1], shot=2)])
    with pytest.raises(DataError, match="needs data.args.parts"):
        build_dataset("union", tmp_path, "train")
    with pytest.raises(RegistryError, match=r"data.args.parts\[0\] .*val_fractoin"):
        build_dataset("union", tmp_path, "train", parts=[dict(parts[0], args={"val_fractoin": 0.1})])
