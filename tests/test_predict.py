"""fgvc.predict: top-k classes of new photos through TrainedRun; bad files are reported, never a crash."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from fgvc.data.base import load_image
from fgvc.engine.builder import build_transform
from fgvc.engine.inference import TrainedRun
from fgvc.predict import find_images, main as predict_main


@pytest.fixture(scope="module")
def data_root(synthetic_set) -> Path:
    return synthetic_set(4)


@pytest.fixture(scope="module")
def run_dir(data_root, tiny_run) -> Path:
    return tiny_run(data_root, "train.max_steps=2")


@pytest.fixture()
def photos(data_root, tmp_path) -> Path:
    """good jpgs, a PNG (upper-case extension) in a subfolder, a corrupt and a truncated .jpg, a .txt file."""
    src = sorted((data_root / "CUB_200_2011" / "images").rglob("*.jpg"))
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, f in enumerate(src[:3]):
        (folder / f"good{i}.jpg").write_bytes(f.read_bytes())
    Image.open(src[3]).save(folder / "sub" / "deep.PNG")
    (folder / "corrupt.jpg").write_bytes(os.urandom(2000))
    data = src[4].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not a photo")
    return folder


def _json_lines(text: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {Path(r["path"]).name: r for r in rows}


def test_predicts_good_images_and_reports_bad_ones(run_dir, photos, capsys):
    assert predict_main([str(run_dir), str(photos), "--json", "--topk", "2", "--batch-size", "2"]) == 0
    got = _json_lines(capsys.readouterr().out)
    assert set(got) == {"good0.jpg", "good1.jpg", "good2.jpg", "deep.PNG", "corrupt.jpg", "truncated.jpg", "notes.txt"}
    for bad in ("corrupt.jpg", "truncated.jpg", "notes.txt"):
        assert "topk" not in got[bad] and got[bad]["error"], bad
    assert "truncated" in got["truncated.jpg"]["error"] and "not an image file" in got["notes.txt"]["error"]
    run = TrainedRun.load(run_dir)
    transform = build_transform(run.cfg, False, run.data_config)
    good = ["good0.jpg", "good1.jpg", "good2.jpg", "deep.PNG"]
    paths = [photos / n for n in good[:3]] + [photos / "sub" / "deep.PNG"]
    probs = run.infer(torch.stack([transform(load_image(p)) for p in paths])).prediction.float().softmax(1).cpu()
    for name, p in zip(good, probs):
        topk = got[name]["topk"]
        assert len(topk) == 2 and sum(t["prob"] for t in topk) <= 1 + 1e-6
        values, indices = p.topk(2)
        assert [t["class"] for t in topk] == [run.class_names[i] for i in indices.tolist()]
        assert [t["prob"] for t in topk] == pytest.approx(values.tolist(), abs=1e-5)


def test_readable_output_and_order(run_dir, photos, capsys):
    assert predict_main([str(run_dir), str(photos / "good1.jpg"), str(photos / "notes.txt"), "--topk", "9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(photos / "good1.jpg") + "  ")
    assert lines[0].count("%") == 3  # --topk larger than the 3 classes: all of them
    assert lines[1].startswith(str(photos / "notes.txt") + "  error: ")  # given explicitly: tried and refused


def test_all_bad_exits_1_and_missing_path_exits_2(run_dir, photos, tmp_path, capsys):
    assert predict_main([str(run_dir), str(photos / "corrupt.jpg"), str(photos / "notes.txt")]) == 1
    capsys.readouterr()
    missing = tmp_path / "nowhere.jpg"
    assert predict_main([str(run_dir), str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert predict_main([str(tmp_path / "no_run"), str(photos)]) == 2
    assert "no_run" in capsys.readouterr().err
    assert predict_main([str(run_dir), str(photos), "--topk", "0"]) == 2


def test_find_images_recurses_and_skips_hidden(photos):
    (photos / ".DS_Store").write_bytes(b"x")
    items = find_images([photos])
    assert [str(i.path) for i in items] == sorted(str(i.path) for i in items)
    names = [i.path.name for i in items]
    assert ".DS_Store" not in names and "deep.PNG" in names
    assert [i.path.name for i in items if i.error] == ["notes.txt"]
