"""Bad data end to end, through ``fgvc.train`` and ``fgvc.datasets check`` on real files in tmp dirs.

Corrupt, truncated, zero-byte, missing and over-large images stop training with one ``error:`` line naming the
file (exit 2, no traceback, also from DataLoader worker processes), or with ``data.on_bad_image: skip`` are
skipped with a warning, listed in bad_images.tsv and counted in final.json and train.log. Grayscale, CMYK, RGBA,
palette, 16-bit and 10x10 images train fine. Malformed CUB lines and label ids outside the class list name the
file and line; malformed Flowers .mat files name the file, key and shape. ``python -m fgvc.datasets check``
lists every problem of a tree in one run and exits 1."""
from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rel_helpers import (
    base_recipe, copy_data, cub_dir, image_paths, one_line_error, run_module, torch_globals, train_inprocess,
    write_recipe,
)

assert torch_globals  # a fixture, used by name below


# ---------------------------------------------------------------------------------------------- bad files
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb(path: Path, side: int = 20_000) -> Path:
    """A 100-byte PNG that claims to be side x side pixels (400 M > 2 x PIL's 89 M limit): a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _png_chunk(b"IEND", b""))
    return path


def write_truncated(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path


BAD = {  # kind -> (damage the file, the start of what the user reads after the path)
    "corrupt": (lambda p: p.write_bytes(np.random.default_rng(1).bytes(700)), "not a readable image (Unidentified"),
    "truncated": (write_truncated, "the file is truncated"),
    "empty": (lambda p: p.write_bytes(b""), "the file is empty (0 bytes)"),
    "bomb": (write_bomb, "refusing a possible decompression bomb (Image size (400000000 pixels) exceeds limit"),
    "missing": (lambda p: p.unlink(), None),
}


def _recipe(tmp_path: Path, root: Path, **train) -> Path:
    cfg = base_recipe(root)
    cfg["train"].update(train)
    return write_recipe(tmp_path / "r.yaml", cfg)


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_image_stops_training_with_one_line_naming_the_file(tmp_path, capsys, torch_globals, kind):
    root = copy_data(tmp_path / "data")
    bad = image_paths(root, "train")[5]
    damage, expected = BAD[kind]
    damage(bad)
    run = tmp_path / "run"
    rc, err = train_inprocess([_recipe(tmp_path, root), "--output", run], capsys)
    assert rc == 2
    line = one_line_error(err)
    if kind == "missing":  # found when the data set is built, before any training
        assert line.startswith(f"error: 1 of 21 images listed by {cub_dir(root)} for split 'train' are missing "
                               f"(first: {bad}); the annotation files are there but not the images")
        assert not run.exists() or not (run / "checkpoints").exists()
    else:
        assert line.startswith(f"error: bad image {bad}: {expected}"), line
        assert line.endswith(f"run `python -m fgvc.datasets check cub200 {root}` to list every bad file, "
                             "or set data.on_bad_image=skip") or kind == "bomb"
    assert not (run / "final.json").exists()


def test_bad_images_skipped_and_counted_when_recipe_allows(tmp_path, capsys, torch_globals):
    root = copy_data(tmp_path / "data")
    train, test = image_paths(root, "train"), image_paths(root, "test")
    damaged = {}
    for path, kind in zip([train[2], train[9], train[15], train[20], test[0]],
                          ["corrupt", "truncated", "empty", "missing", "bomb"]):
        BAD[kind][0](path)
        damaged[str(path)] = kind
    run = tmp_path / "run"
    with pytest.warns(UserWarning) as warned:
        rc, err = train_inprocess([_recipe(tmp_path, root), "--output", run, "--set", "data.on_bad_image=skip"],
                                  capsys)
    assert rc == 0, err
    msgs = [str(w.message) for w in warned]
    assert any(m.startswith("1 of 21 images listed by") and "they will be skipped" in m for m in msgs)
    assert sum(m.startswith("skipping bad image") for m in msgs) == 5
    final = json.loads((run / "final.json").read_text())
    assert final["bad_images"] == 5 and final["n_images"] == 24
    listed = dict(line.split("\t") for line in (run / "bad_images.tsv").read_text().splitlines())
    assert set(listed) == set(damaged)
    log = (run / "train.log").read_text()
    assert (f"WARNING skipped 5 bad image(s) (data.on_bad_image=skip); they are listed in {run / 'bad_images.tsv'}"
            in log)


@pytest.mark.slow
def test_bad_image_in_dataloader_worker_is_one_line(tmp_path, capsys, torch_globals):
    root = copy_data(tmp_path / "data")
    bad = image_paths(root, "train")[3]
    BAD["corrupt"][0](bad)
    recipe = _recipe(tmp_path, root, epochs=1)
    args = [recipe, "--output", tmp_path / "run", "--set", "data.num_workers=2"]
    rc, err = train_inprocess(args, capsys)
    assert rc == 2
    assert one_line_error(err).startswith(f"error: bad image {bad}: not a readable image")
    rc, err = train_inprocess([recipe, "--output", tmp_path / "skip", "--set", "data.num_workers=2",
                               "data.on_bad_image=skip"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "skip" / "final.json").read_text())["bad_images"] == 1


# ---------------------------------------------------------------------------------------------- odd images
def _odd_images(paths: list[Path]) -> dict[str, str]:
    """Overwrite ``paths`` with unusual but valid images; returns name -> expected check note."""
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    img.convert("L").save(paths[0], format="JPEG")
    img.convert("CMYK").save(paths[1], format="JPEG")
    rgba = img.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)))
    rgba.save(paths[2], format="PNG")
    pal = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(paths[3], format="PNG", transparency=0)
    Image.fromarray((rng.integers(0, 65536, (40, 48))).astype(np.uint16)).save(paths[4], format="PNG")
    Image.fromarray(rgb[:10, :10]).save(paths[5], format="JPEG")
    Image.fromarray(np.repeat(np.repeat(rgb, 40, 0), 40, 1)).save(paths[6], format="JPEG")  # 1920 x 1600
    return {paths[0].name: "mode L (grayscale)", paths[1].name: "mode CMYK (CMYK)",
            paths[2].name: "mode RGBA (RGBA (composited on white))", paths[3].name: "mode P (palette)",
            paths[4].name: "mode I;16 (16-bit grayscale)", paths[5].name: "tiny image (10x10 px, < 32 px on a side)"}


def test_unusual_but_valid_images_train_and_check_reports_them(tmp_path, capsys, torch_globals):
    root = copy_data(tmp_path / "data")
    train = image_paths(root, "train")
    expected = _odd_images([train[i] for i in (0, 3, 6, 9, 12, 15, 18)])
    run = tmp_path / "run"
    rc, err = train_inprocess([_recipe(tmp_path, root), "--output", run], capsys)
    assert rc == 0, err
    assert json.loads((run / "final.json").read_text())["bad_images"] == 0
    from fgvc.datasets import main as datasets_main

    assert datasets_main(["check", "auto", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for name, note in expected.items():
        assert any(name in ln and note in ln for ln in out.splitlines()), (name, note, out)
    assert "0 error(s): ok" in out


# ---------------------------------------------------------------------------------------------- annotations
CUB_EDITS = [  # (file, line, new text or None to delete, the problem the user reads)
    ("images.txt", 3, "3", "expected 2 space-separated fields (image_id path) for images.txt, found 1"),
    ("train_test_split.txt", 4, "4 x", "field 'is_train' is not an integer ('x')"),
    ("train_test_split.txt", 4, "4 2", "is_train must be 0 or 1, found 2"),
    ("image_class_labels.txt", 5, "5 99", "class id 99 is not in classes.txt"),
    ("image_class_labels.txt", 5, "5 0", "class id 0 is not in classes.txt"),
    ("bounding_boxes.txt", 2, "2 1.0 1.0 -5.0 3.0", "box width and height must be positive"),
    ("classes.txt", 3, "2 002.Duplicate", "duplicate class id 2 (first on line 2)"),
    ("images.txt", 7, "6 001.x/y.jpg", "duplicate image id 6 (first on line 6)"),
]


def _edit(path: Path, line: int, text: str | None) -> None:
    rows = path.read_text().splitlines()
    rows[line - 1: line] = [] if text is None else [text]
    path.write_text("".join(r + "\n" for r in rows))


@pytest.mark.parametrize("file,line,text,problem", CUB_EDITS, ids=[f"{e[0]}:{e[2]}" for e in CUB_EDITS])
def test_malformed_cub_line_names_file_and_line(tmp_path, capsys, torch_globals, file, line, text, problem):
    root = copy_data(tmp_path / "data")
    _edit(cub_dir(root) / file, line, text)
    rc, err = train_inprocess([_recipe(tmp_path, root), "--output", tmp_path / "run"], capsys)
    assert rc == 2
    expect = f"error: {cub_dir(root) / file}, line {line}: {problem}: '{text}' (fix or delete this line)"
    assert one_line_error(err) == expect
    assert not (tmp_path / "run" / "checkpoints").exists()


def _flowers(root: Path, mats: dict | None = None) -> Path:
    """Flowers 102 layout from the synthetic images: 3 classes (ids 4, 8, 9) x 6 images, 2/2/2 per split."""
    from scipy.io import savemat

    src = image_paths(copy_data(root.parent / "src"), "train")
    (root / "jpg").mkdir(parents=True)
    labels, sets = [], {"trnid": [], "valid": [], "tstid": []}
    for c, cid in enumerate((4, 8, 9)):
        for j in range(6):
            i = len(labels) + 1
            shutil.copy(src[7 * c + j], root / "jpg" / f"image_{i:05d}.jpg")
            labels.append(cid)
            sets[("trnid", "valid", "tstid")[j // 2]].append(i)
    lab = {"labels": np.asarray(labels, dtype=np.uint8)[None, :]}
    setid = {k: np.asarray(v, dtype=np.uint16)[None, :] for k, v in sets.items()}
    for k, v in (mats or {}).items():
        target = lab if k == "labels" else setid
        if v is None:
            target.pop(k)
        else:
            target[k] = v
    savemat(root / "imagelabels.mat", lab)
    savemat(root / "setid.mat", setid)
    return root


FLOWERS_BAD = [
    ({"labels": np.ones((3, 6), dtype=np.uint8)}, "imagelabels.mat", "key 'labels' has shape 3 x 6, expected 1 x n"),
    ({"labels": np.zeros((1, 0), dtype=np.uint8)}, "imagelabels.mat", "key 'labels' has shape 1 x 0, expected 1 x n"),
    ({"labels": np.full((1, 18), 1.5)}, "imagelabels.mat", "key 'labels' must hold integers, found dtype float64"),
    ({"tstid": None}, "setid.mat", "key 'tstid' not found (keys found: trnid, valid); expected 'tstid' of shape 1 x n"),
    ({"trnid": np.array([[1, 2], [3, 99]], dtype=np.uint16)}, "setid.mat",
     "key 'trnid' has shape 2 x 2, expected 1 x n"),
    ({"trnid": np.array([[1, 2, 99]], dtype=np.uint16)}, "setid.mat",
     "key 'trnid' holds image indices outside 1..18 (imagelabels.mat has 18 labels): [99]"),
]


@pytest.mark.parametrize("mats,file,problem", FLOWERS_BAD, ids=[p[2][:30] for p in FLOWERS_BAD])
def test_malformed_flowers_mat_names_file_key_and_shape(tmp_path, capsys, torch_globals, mats, file, problem):
    root = _flowers(tmp_path / "flowers", mats)
    cfg = base_recipe(root, data={"name": "flowers102"})
    rc, err = train_inprocess([write_recipe(tmp_path / "r.yaml", cfg), "--output", tmp_path / "run"], capsys)
    assert rc == 2
    assert one_line_error(err) == f"error: {root / file}: {problem}"


def test_valid_flowers_tree_trains(tmp_path, capsys, torch_globals):  # the control of the test above
    root = _flowers(tmp_path / "flowers")
    cfg = base_recipe(root, data={"name": "flowers102"}, train={"epochs": 1, "batch_size": 2})
    rc, err = train_inprocess([write_recipe(tmp_path / "r.yaml", cfg), "--output", tmp_path / "run"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "run" / "final.json").read_text())["n_images"] == 6


# ---------------------------------------------------------------------------------------------- pre-flight check
@pytest.mark.slow
def test_datasets_check_lists_every_problem_at_once(tmp_path):
    root = copy_data(tmp_path / "data")
    d = cub_dir(root)
    train, test = image_paths(root, "train"), image_paths(root, "test")
    bad = {"corrupt": train[1], "truncated": train[4], "empty": test[2], "missing": test[5], "bomb": train[8]}
    for kind, path in bad.items():
        BAD[kind][0](path)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).convert("CMYK").save(train[11], format="JPEG")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(train[12], format="JPEG")
    _edit(d / "train_test_split.txt", 4, "4 x")
    _edit(d / "image_class_labels.txt", 5, "5 99")
    _edit(d / "bounding_boxes.txt", 6, "6 1 2 3")
    res = run_module("fgvc.datasets", ["check", "auto", root, "--no-progress"], timeout=120)
    assert res.returncode == 1, res.stderr
    out = res.stdout.splitlines()

    def has(*parts: str) -> bool:
        return any(all(p in ln for p in parts) for ln in out)

    assert has("ERROR", "[annotation]", f"{d / 'train_test_split.txt'}:4", "field 'is_train' is not an integer")
    assert has("ERROR", "[annotation]", f"{d / 'image_class_labels.txt'}:5", "class id 99 is not in classes.txt")
    assert has("ERROR", "[annotation]", f"{d / 'bounding_boxes.txt'}:6", "expected 5 space-separated fields")
    for kind, path in bad.items():
        assert has("ERROR", f"[{kind}]", str(path)), kind
    assert has("NOTE", "[mode]", str(train[11]), "CMYK")
    assert has("WARNING", "[tiny]", str(train[12]), "10x10")
    assert res.stderr.strip().splitlines() == [
        f"checking cub200 at {root}",
        f"error: 10 error(s) in {root}: fix them, or set data.on_bad_image=skip to skip bad images"]
