"""Reduced-scale JPEG decoding (fgvc.data.decode): the size contract, both backends' identical pixels, bad-image
errors unchanged, non-JPEG and odd modes untouched, and the dataset/transform wiring."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgvc.data import base, build_transforms, decode
from fgvc.data.base import BadImageError, load_image

HALF = (0.5, 0.5, 0.5)


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB image with some texture (JPEG-friendly, not constant)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (h + w)], axis=2).astype(np.int16)
    return np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)


def _jpeg(path: Path, h: int = 500, w: int = 700, mode: str = "RGB") -> Path:
    Image.fromarray(_photo(h, w)).convert(mode).save(path, quality=90)
    return path


@pytest.fixture(params=[True, False], ids=["simplejpeg", "PIL"])
def backend(request: pytest.FixtureRequest) -> bool:
    """Run a test with simplejpeg (skipped when it is not installed) and with PIL's draft."""
    if request.param and not decode.HAS_SIMPLEJPEG:
        pytest.skip("simplejpeg is not installed")
    previous = decode.use_simplejpeg(request.param)
    yield request.param
    decode.use_simplejpeg(previous)


@pytest.mark.parametrize("w,h,need,scale", [(700, 500, 184, 2), (700, 500, 120, 4), (700, 500, 62, 8),
                                            (700, 500, 260, 1), (227, 227, 184, 1), (700, 500, None, 1)])
def test_draft_scale_keeps_shorter_side(w: int, h: int, need: int | None, scale: int) -> None:
    assert decode.draft_scale(w, h, need) == scale
    if need:
        assert -(-min(w, h) // scale) >= need


@pytest.mark.parametrize("need", [None, 100, 184, 250, 251, 600])
def test_reduced_decode_never_below_min_side(tmp_path: Path, backend: bool, need: int | None) -> None:
    path = _jpeg(tmp_path / "a.jpg")
    img = load_image(path, need)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    s = decode.draft_scale(700, 500, need)
    assert img.shape[:2] == (-(-500 // s), -(-700 // s))
    assert min(img.shape[:2]) >= min(need or 0, 500)


def test_backends_give_identical_pixels(tmp_path: Path) -> None:
    if not decode.HAS_SIMPLEJPEG:
        pytest.skip("simplejpeg is not installed")
    path = _jpeg(tmp_path / "a.jpg")
    out = {}
    for on in (True, False):
        previous = decode.use_simplejpeg(on)
        out[on] = [load_image(path, need) for need in (None, 184, 120)]
        decode.use_simplejpeg(previous)
    for a, b in zip(out[True], out[False]):
        assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_still_rgb(tmp_path: Path, backend: bool, mode: str) -> None:
    path = _jpeg(tmp_path / "a.jpg", mode=mode)
    img = load_image(path, 184)
    assert img.dtype == np.uint8 and img.shape[2] == 3 and min(img.shape[:2]) >= 184


def test_png_and_transparency_unchanged(tmp_path: Path, backend: bool) -> None:
    rgba = np.zeros((400, 600, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :300, 3] = 255  # left half opaque red, right half transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png", 100)
    assert img.shape == (400, 600, 3)  # PNGs are always decoded at full size
    assert tuple(img[0, 0]) == (200, 0, 0) and tuple(img[0, -1]) == (255, 255, 255)


def test_bad_images_raise_as_before(tmp_path: Path, backend: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    good = _jpeg(tmp_path / "good.jpg").read_bytes()
    cases = {"missing": None, "empty": b"", "truncated": good[: len(good) // 2], "corrupt": b"not an image at all"}
    for kind, data in cases.items():
        path = tmp_path / f"{kind}.jpg"
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(BadImageError) as err:
            load_image(path, 184)
        assert err.value.path == path and str(path) in str(err.value)
        assert err.value.kind == kind
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(BadImageError) as err:
        load_image(tmp_path / "good.jpg", 184)
    assert err.value.kind == "bomb"


def test_open_image_draft(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "a.jpg")
    assert base.open_image(path).size == (700, 500)
    assert base.open_image(path, 184).size == (350, 250)


def test_transform_min_side() -> None:
    assert build_transforms(160, 184, HALF, HALF, train=False).min_side == 184
    assert build_transforms(160, 184, HALF, HALF, train=True).min_side == 184
    rrc = build_transforms(160, 184, HALF, HALF, train=True, random_resized_crop=True, rrc_scale=(0.35, 1.0))
    # the smallest crop (35 % of the area, aspect 3:4) of a side-313 square still spans 160 px
    assert rrc.min_side == 313 and int((0.35 * 313 * 313 * 0.75) ** 0.5) >= 160
    assert build_transforms(160, 184, HALF, HALF, train=False, reduced_decode=False).reduced_decode is False


def test_dataset_decodes_at_reduced_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fgvc.data import build_dataset

    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
        _jpeg(tmp_path / "train" / c / "x.jpg")
    seen: list[int | None] = []
    real = base.load_image
    monkeypatch.setattr(base, "load_image", lambda p, min_side=None: seen.append(min_side) or real(p, min_side))
    for reduced, expect in ((True, 40), (False, None)):
        t = build_transforms(32, 40, HALF, HALF, train=False, reduced_decode=reduced)
        ds = build_dataset("folder", tmp_path, "train", transform=t)
        x, _ = ds[0]
        assert x.shape == (3, 32, 32) and seen[-1] == expect
    ds.transform = None  # no transform: the full image as a float tensor
    assert ds[0][0].shape == (3, 500, 700) and seen[-1] is None


def test_decoded_bytes_match_pil_reference(tmp_path: Path) -> None:
    """The full-size decode equals PIL's plain ``Image.open(...).convert("RGB")`` (whatever the backend)."""
    path = _jpeg(tmp_path / "a.jpg")
    ref = np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))
    assert np.array_equal(load_image(path), ref)


def test_jpeg_header_read_without_pil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With simplejpeg a YCbCr JPEG never goes through ``PIL.Image.open`` (its header parse cost a third of a small
    image's decode); other files still do."""
    if not decode.HAS_SIMPLEJPEG:
        pytest.skip("simplejpeg is not installed")
    previous = decode.use_simplejpeg(True)
    try:
        jpg = _jpeg(tmp_path / "a.jpg", 60, 80)
        png = tmp_path / "b.jpg"  # a PNG named .jpg: not a JPEG by its bytes
        Image.fromarray(_photo(60, 80)).save(png, format="PNG")
        expected = np.asarray(Image.open(jpg).convert("RGB"))
        calls: list[object] = []
        real_open = Image.open
        monkeypatch.setattr(Image, "open", lambda *a, **k: calls.append(a) or real_open(*a, **k))
        assert np.array_equal(load_image(jpg), expected) and not calls
        assert load_image(png).shape == (60, 80, 3) and len(calls) == 1
    finally:
        decode.use_simplejpeg(previous)
