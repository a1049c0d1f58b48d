"""Robust image loading (every PIL mode, every kind of bad file), skip mode, check_dataset and the CLI."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from data_fakes import make_cub, write_image
from PIL import Image

from fgvc.data.base import BadImageError, load_image
from fgvc.data.check import check_dataset, detect_layout, inspect_image
from fgvc.data import build_dataset
from fgvc.datasets import main


def _rgb(path: Path) -> np.ndarray:
    img = load_image(path)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.flags.writeable
    return img


def test_modes_become_rgb(tmp_path: Path) -> None:
    gray = _rgb(write_image(tmp_path / "g.jpg", (20, 10), (90, 90, 90), mode="L", fmt="JPEG"))
    assert gray.shape == (10, 20, 3) and abs(int(gray[5, 5, 0]) - 90) <= 2
    cmyk = _rgb(write_image(tmp_path / "c.jpg", (16, 16), (255, 0, 0), mode="CMYK", fmt="JPEG"))
    assert cmyk[8, 8, 0] > 200 and cmyk[8, 8, 1] < 60
    one = _rgb(write_image(tmp_path / "b.png", (16, 16), (255, 255, 255), mode="1"))
    assert one.min() == 255
    tiny = _rgb(write_image(tmp_path / "t.png", (10, 10)))
    assert tiny.shape == (10, 10, 3)


def test_rgba_and_palette_transparency_composite_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :4, 3] = 255  # left half opaque red, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = _rgb(tmp_path / "a.png")
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 7].tolist() == [255, 255, 255]
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 4, 8))
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    out = _rgb(tmp_path / "p.png")
    assert out[0, 0].tolist() == [0, 255, 0] and out[0, 7].tolist() == [255, 255, 255]
    opaque = Image.new("P", (4, 4), 1)
    opaque.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    opaque.save(tmp_path / "q.png")
    assert _rgb(tmp_path / "q.png")[0, 0].tolist() == [10, 20, 30]


def test_16_bit_png_is_rescaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 257, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = _rgb(tmp_path / "d.png")
    assert out[0, :, 0].tolist() == [0, 1, 100, 255] and (out[..., 0] == out[..., 2]).all()


def _truncated(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("make,expected", [
    (lambda p: p, "file not found"),
    (lambda p: p.write_bytes(b"") and p or p, "empty (0 bytes)"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(500)) and p or p, "not a readable image"),
    (_truncated, "truncated"),
])
def test_bad_files_raise_naming_the_file(tmp_path: Path, make, expected: str) -> None:
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(BadImageError) as e:
        load_image(path)
    msg = str(e.value)
    assert str(path) in msg and expected in msg and "python -m fgvc.datasets check" in msg
    assert "data.on_bad_image=skip" in msg


@pytest.mark.parametrize("limit", [100, 300])  # 480 px: > 2x limit is PIL's error, > limit its warning
def test_decompression_bomb_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    path = write_image(tmp_path / "big.png", (24, 20))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing leaks out as a warning
        with pytest.raises(BadImageError, match=r"big\.png: refusing a possible decompression bomb"):
            load_image(path)
    assert inspect_image(path)[0].kind == "bomb"


def test_skip_mode_returns_next_good_sample_and_logs(tmp_path: Path) -> None:
    root = make_cub(tmp_path, class_ids=(1, 2), n_train=2, n_test=2)
    ds = build_dataset("cub200", root, "test")
    ds.samples[0].path.write_bytes(b"")
    _truncated(ds.samples[1].path)
    with pytest.raises(BadImageError, match="empty"):
        ds[0]
    ds.on_bad_image, ds.bad_log = "skip", tmp_path / "run" / "bad_images.tsv"
    with pytest.warns(UserWarning, match="skipping bad image"):
        x, y = ds[0]
    assert y == ds.samples[2].label == 1  # 0 and 1 are bad: sample 2 is served
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per file only
        assert ds[1][1] == 1 and ds[0][1] == 1
    lines = ds.bad_log.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{ds.samples[0].path}\t") and "empty" in lines[0]
    for s in ds.samples:
        s.path.write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(BadImageError, match="all 4 images"):
        ds[3]


def test_check_dataset_reports_everything(tmp_path: Path) -> None:
    root = make_cub(tmp_path, class_ids=(1, 2), n_train=2, n_test=1)
    d = root / "CUB_200_2011"
    images = sorted((d / "images").rglob("*.jpg"))
    images[0].write_bytes(b"")
    _truncated(images[1])
    images[2].unlink()
    write_image(images[3], (10, 10), mode="CMYK", fmt="JPEG")
    (d / "train_test_split.txt").write_text("1 1\n2 x\n3 0\n4 1\n5 1\n6 3\n")
    problems = check_dataset("auto", root, progress=False)
    found = {(p.severity, p.kind, Path(p.path).name, p.line) for p in problems}
    assert ("error", "annotation", "train_test_split.txt", 2) in found
    assert ("error", "annotation", "train_test_split.txt", 6) in found
    assert {("error", "empty"), ("error", "truncated"), ("error", "missing"), ("note", "mode"),
            ("warning", "tiny")} <= {(p.severity, p.kind) for p in problems}
    assert detect_layout(root) == "cub200" and detect_layout(tmp_path / "x") == "folder"


def test_cli_check_info_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_cub(tmp_path / "ok", class_ids=(4, 9), n_train=3, n_test=1, size=(40, 36))
    assert main(["check", "cub200", str(root), "--no-progress"]) == 0
    assert "no problems found" in capsys.readouterr().out
    assert main(["info", "cub200", str(root), "--arg", "val_fraction=0.34"]) == 0
    out = capsys.readouterr().out
    assert "trainval" in out and "Bird_9" in out
    next(iter((root / "CUB_200_2011" / "images").rglob("*.jpg"))).write_bytes(b"garbage")
    assert main(["check", "auto", str(root), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "ERROR" in out and "corrupt" in out and err.splitlines()[-1].startswith("error: 1 error(s) in ")
    assert main(["info", "flowers102", str(tmp_path / "nothing")]) == 2
    assert "unavailable" in capsys.readouterr().out
    assert main(["fetch", "cub200", "--root", str(tmp_path / "r"), "--archive", str(tmp_path / "none.tgz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    out_dir = tmp_path / "syn"
    assert main(["make-synthetic", "--output", str(out_dir), "--num-classes", "2", "--images-per-class", "2",
                 "--render-size", "32", "--no-progress"]) == 0
    assert (out_dir / "synthetic.json").is_file()

