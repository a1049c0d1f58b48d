"""The pre-resized cache (fgvc.data.cache, ``python -m fgvc.datasets cache``): build, md5 manifest, transparent use
through data.cache, and staleness (changed, added, removed sources are never served from the cache)."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fgvc.data import build_dataset, build_transforms
from fgvc.data.cache import CACHE_DIR, build_cache, check_cache, open_cache
from fgvc.datasets import main as datasets_main

HALF = (0.5, 0.5, 0.5)


def _image(path: Path, h: int, w: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
    return path


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """A folder-layout set: two large JPEGs, one small one, one PNG."""
    r = tmp_path / "set"
    _image(r / "train" / "a" / "1.jpg", 120, 160, 0)
    _image(r / "train" / "a" / "2.jpg", 30, 40, 1)  # already small: not copied
    _image(r / "train" / "b" / "3.jpg", 160, 100, 2)
    _image(r / "train" / "b" / "4.png", 90, 90, 3)
    return r


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def test_build_writes_copies_and_manifest(root: Path) -> None:
    report = build_cache(root, 48)
    level = root / CACHE_DIR / "48"
    manifest = json.loads((level / "manifest.json").read_text())
    files = manifest["files"]
    assert manifest["max_side"] == 48 and set(files) == {"train/a/1.jpg", "train/a/2.jpg", "train/b/3.jpg",
                                                          "train/b/4.png"}
    assert (report.copied, report.small) == (3, 1) and files["train/a/2.jpg"]["file"] is None
    for rel, e in files.items():
        assert e["md5"] == _md5(root / rel)
        if e["file"]:
            copy = level / "files" / e["file"]
            arr = np.load(copy)
            assert e["copy_md5"] == _md5(copy) and arr.dtype == np.uint8 and min(arr.shape[:2]) == 48 == e["short"]
    assert np.load(level / "files" / "train/a/1.jpg.npy").shape == (48, 64, 3)  # aspect kept
    again = build_cache(root, 48)
    assert (again.copied, again.reused) == (0, 4)
    assert check_cache(root, 48).lines()[0].endswith("0 removed")


@pytest.mark.parametrize("train", [False, True])
def test_cache_gives_bit_identical_batches(root: Path, train: bool) -> None:
    build_cache(root, 48)
    t = build_transforms(32, 48, HALF, HALF, train=train, color_jitter=0.2 if train else 0.0)
    plain = build_dataset("folder", root, "train", transform=t)
    cached = build_dataset("folder", root, "train", transform=t)
    cached.cache = open_cache("auto", root, [s.path for s in cached.samples])
    assert cached.cache is not None
    served = [cached.cache.lookup(s.path, t.first_resize) for s in cached.samples]
    assert sum(c is not None for c in served) == 3 and served[1] is None  # 2.jpg is small: the source
    for i in range(len(plain)):
        t.set_random_seed(i)
        a = plain[i][0]
        t.set_random_seed(i)
        assert torch.equal(a, cached[i][0])


def test_cache_serves_only_its_exact_resize(root: Path) -> None:
    build_cache(root, 48)
    cache = open_cache("auto", root, [root / "train" / "a" / "1.jpg"])
    assert cache is not None and cache.lookup(root / "train" / "a" / "1.jpg", 48) is not None
    for t in (build_transforms(32, 40, HALF, HALF, train=False),  # another resize
              build_transforms(32, 48, HALF, HALF, train=True, random_resized_crop=True)):  # needs the original
        assert cache.lookup(root / "train" / "a" / "1.jpg", t.first_resize) is None


def test_changed_added_removed_sources_are_never_served(root: Path) -> None:
    build_cache(root, 48)
    src = root / "train" / "a" / "1.jpg"
    _image(src, 120, 160, 99)  # changed content
    os.utime(src, ns=(1, 1))
    _image(root / "train" / "a" / "5.jpg", 120, 160, 5)  # added
    (root / "train" / "b" / "3.jpg").unlink()  # removed
    paths = sorted(p for p in (root / "train").rglob("*") if p.is_file())
    with pytest.warns(UserWarning, match="2 of 4 images changed or were added"):
        cache = open_cache("auto", root, paths)
    assert cache is not None
    assert cache.lookup(src, 48) is None and cache.lookup(root / "train" / "a" / "5.jpg", 48) is None
    report = check_cache(root, 48)
    assert report.stale == ["train/a/1.jpg"] and report.added == ["train/a/5.jpg"] and report.removed == 1
    rebuilt = build_cache(root, 48)
    assert rebuilt.copied == 2 and rebuilt.removed == 1
    assert not (root / CACHE_DIR / "48" / "files" / "train/b/3.jpg.npy").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh = open_cache("auto", root, paths)
    assert fresh is not None and fresh.lookup(src, 48) is not None


def test_same_content_new_mtime_is_still_valid(root: Path) -> None:
    build_cache(root, 48)
    src = root / "train" / "a" / "1.jpg"
    os.utime(src, ns=(5, 5))  # touched, same bytes: the md5 decides
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = open_cache("auto", root, [src])
    assert cache is not None and cache.lookup(src, 48) is not None


def test_corrupt_copy_is_reported_and_named(root: Path) -> None:
    from fgvc.data.base import BadImageError

    build_cache(root, 48)
    copy = root / CACHE_DIR / "48" / "files" / "train/a/1.jpg.npy"
    copy.write_bytes(b"garbage")
    assert check_cache(root, 48).bad_copies == ["train/a/1.jpg.npy"]
    cache = open_cache("auto", root, [root / "train" / "a" / "1.jpg"])
    with pytest.raises(BadImageError, match="unreadable cached copy") as err:
        cache.read(cache.lookup(root / "train" / "a" / "1.jpg", 48))
    assert err.value.path == copy


def test_off_and_missing_folder(root: Path) -> None:
    assert open_cache("off", root, [root / "train" / "a" / "1.jpg"]) is None
    assert open_cache("auto", root, [root / "train" / "a" / "1.jpg"]) is None  # nothing built
    with pytest.warns(UserWarning, match="no such folder"):
        assert open_cache(str(root / "nope"), root, [root / "train" / "a" / "1.jpg"]) is None


def test_cli_output_folder_and_recipe_key(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "elsewhere"
    assert datasets_main(["cache", str(root), "--max-side", "48", "--output", str(out), "--no-progress"]) == 0
    assert (out / "48" / "manifest.json").is_file() and "3 copied" in capsys.readouterr().out
    assert datasets_main(["cache", str(root), "--max-side", "48", "--output", str(out), "--check"]) == 0
    (root / "train" / "a" / "6.jpg").write_bytes((root / "train" / "a" / "1.jpg").read_bytes())  # added
    assert datasets_main(["cache", str(root), "--max-side", "48", "--output", str(out), "--check"]) == 1
    (root / "train" / "a" / "6.jpg").unlink()
    from fgvc import config
    from fgvc.engine import builder

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {{name: folder, root: {root}, img_size: 32, resize: 48, val_split: null, "
                      f"cache: {out}}}\nmodel: {{backbone: test_resnet.r160_in1k, pretrained: false}}\n")
    cfg, _ = config.load_recipe(recipe)
    ds = builder.build_split(cfg, "train", False, {"mean": HALF, "std": HALF})
    assert ds.cache is not None and ds[0][0].shape == (3, 32, 32)
    cfg["data"]["cache"] = False  # YAML's bare `off`
    assert builder.build_split(cfg, "train", False, None).cache is None


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert datasets_main(["cache", str(tmp_path / "nope"), "--max-side", "48"]) == 2
    assert "is not a folder" in capsys.readouterr().err
