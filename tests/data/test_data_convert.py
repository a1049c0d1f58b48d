"""``python -m fgvc.datasets convert``: any layout -> class folders or CUB-200-2011 text files, and back."""
from __future__ import annotations

from pathlib import Path

import pytest
from data_fakes import write_image

from fgvc.data import build_dataset
from fgvc.data.convert import convert, safe_name
from fgvc.datasets import main


def _triples(name: str, root: Path, splits: dict[str, str]) -> set[tuple[str, str, str]]:
    """(file name, class name, split) of every image, read through the reader; ``splits`` maps the reader's split
    to the name it is compared as."""
    out = set()
    for split, as_split in splits.items():
        ds = build_dataset(name, root, split)
        out |= {(s.path.name, ds.classes[s.label], as_split) for s in ds.samples}
    return out


def _folder(root: Path, layout: dict[str, dict[str, list[str]]]) -> Path:
    for split, classes in layout.items():
        for cls, files in classes.items():
            for i, f in enumerate(files):
                write_image(root / split / cls / f, (16, 16), (10 * i, 50, 90))
    return root


@pytest.fixture(scope="module")
def syn(synthetic_set) -> Path:  # type: ignore[no-untyped-def]
    return synthetic_set(images_per_class=4)


def test_cub_to_folder_to_cub_keeps_every_file_class_and_split(syn: Path, tmp_path: Path) -> None:
    cub = {"trainval": "train", "test": "test"}
    before = _triples("cub200", syn, cub)
    assert main(["convert", "auto", str(syn), "--to", "folder", "--output", str(tmp_path / "f")]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["test", "train"]  # the CUB holdout is no split
    assert _triples("folder", tmp_path / "f", {"train": "train", "test": "test"}) == before
    assert main(["convert", "auto", str(tmp_path / "f"), "--to", "cub200", "--output", str(tmp_path / "c")]) == 0
    assert _triples("cub200", tmp_path / "c", cub) == before
    back = build_dataset("cub200", tmp_path / "c", "test")
    assert back.classes == sorted(build_dataset("cub200", syn, "test").classes)  # the folder layout sorts them
    assert back[0][0].shape[0] == 3  # the linked image decodes


def test_links_by_default_copies_with_copy(syn: Path, tmp_path: Path) -> None:
    linked = convert("cub200", syn, "folder", tmp_path / "l")
    copied = convert("cub200", syn, "folder", tmp_path / "c", copy=True)
    assert linked.counts == copied.counts and sum(linked.counts.values()) == 12
    files = {p.relative_to(tmp_path / "l") for p in (tmp_path / "l").rglob("*.jpg")}
    assert files == {p.relative_to(tmp_path / "c") for p in (tmp_path / "c").rglob("*.jpg")} and len(files) == 12
    for rel in files:
        link, copy = tmp_path / "l" / rel, tmp_path / "c" / rel
        assert link.is_symlink() and link.resolve().is_relative_to(syn.resolve())
        assert not copy.is_symlink() and copy.read_bytes() == link.read_bytes()


def test_folder_val_goes_to_cub_train_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _folder(tmp_path / "src", {"train": {"Song Sparrow": ["a.png"], "wren": ["b.png"]},
                                     "val": {"wren": ["b.png"]}, "test": {"Song Sparrow": ["c.png"]}})
    assert main(["convert", "folder", str(src), "--to", "cub200", "--output", str(tmp_path / "o")]) == 0
    assert "the val split (1 images) goes to train" in capsys.readouterr().out
    d = tmp_path / "o" / "CUB_200_2011"
    assert (d / "classes.txt").read_text() == "1 001.Song_Sparrow\n2 002.wren\n"
    assert (d / "train_test_split.txt").read_text() == "1 1\n2 1\n3 1\n4 0\n"
    assert (d / "images.txt").read_text().splitlines()[2] == "3 002.wren/val_b.png"  # same name, other split
    assert _triples("cub200", tmp_path / "o", {"trainval": "train", "test": "test"}) == {
        ("a.png", "Song_Sparrow", "train"), ("b.png", "wren", "train"), ("val_b.png", "wren", "train"),
        ("c.png", "Song_Sparrow", "test")}


def test_folder_output_from_flowers_has_its_val_split(fake_flowers: Path, tmp_path: Path) -> None:
    done = convert("auto", fake_flowers, "folder", tmp_path / "o")
    assert done.layout == "flowers102" and list(done.counts) == ["train", "val", "test"]
    assert _triples("folder", tmp_path / "o", {"val": "val"}) == {
        (s.path.name, safe_name(c), "val") for c, s in
        ((ds.classes[s.label], s) for ds in [build_dataset("flowers102", fake_flowers, "val")] for s in ds.samples)}


def test_safe_name() -> None:
    assert safe_name("Black-footed Albatross") == "Black-footed_Albatross"
    assert safe_name("a/b\\c  d") == "a_b_c_d" and safe_name(".hidden") == "hidden" and safe_name("///") == "_"


@pytest.mark.parametrize("case,message", [
    ("non-empty output", "already exists and is not empty"),
    ("unknown layout", "unknown dataset 'bogus'"),
    ("no layout found", "image-folder data set not found"),
    ("class clash", "classes 'a b' and 'a_b' both become 'a_b'"),
])
def test_refusals_are_one_error_line(case: str, message: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = _folder(tmp_path / "src", {"train": {"a b": ["1.png"], "c": ["2.png"]}})
    out = tmp_path / "out"
    name = "auto"
    if case == "non-empty output":
        out.mkdir()
        (out / "x").write_text("mine")
    elif case == "unknown layout":
        name = "bogus"
    elif case == "no layout found":
        src = tmp_path / "empty"
        src.mkdir()
    else:
        (src / "train" / "a_b").mkdir()
        write_image(src / "train" / "a_b" / "3.png", (16, 16), (1, 2, 3))
    assert main(["convert", name, str(src), "--to", "folder", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert case == "non-empty output" or not out.exists()  # nothing written
