"""The DCT pHash (Zauner 2010) and the blockwise near-duplicate search: robust to resizing, re-encoding and slight
crops, far apart for distinct images (synthetic renders and, when ../shared/data is there, real CUB photos)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgvc.data.phash import DEFAULT_MAX_DISTANCE, HASH_BITS, hamming, near_pairs, phash, phash_bits


@pytest.fixture(scope="module")
def renders(synthetic_set) -> list[Image.Image]:
    root = synthetic_set(8, render_size=128)
    return [Image.open(p).convert("RGB") for p in sorted(root.rglob("*.jpg"))]


def _variants(img: Image.Image) -> dict[str, Image.Image]:
    """Copies a near-duplicate search must catch: resized + JPEG re-encoded, re-encoded hard, cropped 1 %, as PNG."""
    w, h = img.size
    out = {}
    buf = io.BytesIO()
    img.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=70)
    out["resized+jpeg70"] = Image.open(io.BytesIO(buf.getvalue()))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=40)
    out["jpeg40"] = Image.open(io.BytesIO(buf.getvalue()))
    dx, dy = max(1, w // 100), max(1, h // 100)
    out["crop1%"] = img.crop((dx, dy, w - dx, h - dy))
    out["half"] = img.resize((w // 2, h // 2), Image.Resampling.LANCZOS)
    return out


def test_hash_is_64_bits_thresholded_at_the_median(renders):
    bits = phash_bits(renders[0])
    assert bits.shape == (HASH_BITS,) and bits.dtype == bool and bits.sum() == HASH_BITS // 2  # distinct coeffs
    h = phash(renders[0])
    assert isinstance(h, np.uint64)
    assert [bool(int(h) >> (63 - i) & 1) for i in range(64)] == bits.tolist()  # bit 0 = most significant
    assert phash(np.asarray(renders[0])) == h  # arrays and PIL images alike
    assert phash(Image.new("RGB", (50, 40), (90, 90, 90))) == 0  # a flat image: no coefficient above the median


def test_copies_are_near_and_distinct_images_far(renders):
    hashes = np.array([phash(im) for im in renders], dtype=np.uint64)
    d = hamming(hashes[:, None], hashes[None, :]).astype(int)
    np.fill_diagonal(d, HASH_BITS)
    assert d.min() > 2 * DEFAULT_MAX_DISTANCE  # distinct renders: nowhere near the threshold
    for img, h in zip(renders[:6], hashes[:6]):
        for name, copy in _variants(img).items():
            assert int(hamming(h, phash(copy))) <= DEFAULT_MAX_DISTANCE, name


def test_near_pairs_matches_brute_force_across_blocks():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
    h[200] = h[3] ^ np.uint64(0b101)  # 2 bits apart
    h[250] = h[3]  # identical
    h[120] = h[7] ^ np.uint64(0b1111111)  # 7 bits apart
    i, j, dist = near_pairs(h, 6, block=16)  # many blocks
    d = hamming(h[:, None], h[None, :])
    bi, bj = np.nonzero(np.triu(d <= 6, k=1))
    assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(bi.tolist(), bj.tolist()))
    assert list(zip(i.tolist(), j.tolist(), dist.tolist()))[:3] == [(3, 250, 0), (3, 200, 2), (200, 250, 2)]
    assert (i < j).all() and (np.diff(dist) >= 0).all()
    assert (7, 120) in set(zip(*near_pairs(h, 7)[:2]))
    assert len(near_pairs(np.zeros(0, dtype=np.uint64))[0]) == 0
    with pytest.raises(ValueError, match="max_distance"):
        near_pairs(h, 65)


def test_real_photos_copies_flagged_distinct_not(shared_data):
    """CUB photos: copies of each image are within the default distance; different photos (also of one species)
    are not. The full-set check is in test_data_audit (no near duplicates claimed on cub200-mini)."""
    images = sorted((shared_data / "cub200-mini" / "CUB_200_2011" / "images").rglob("*.jpg"))[:60]
    if len(images) < 60:
        pytest.skip("cub200-mini is absent")
    photos = [Image.open(p).convert("RGB") for p in images]
    hashes = np.array([phash(im) for im in photos], dtype=np.uint64)
    d = hamming(hashes[:, None], hashes[None, :]).astype(int)
    np.fill_diagonal(d, HASH_BITS)
    assert d.min() > DEFAULT_MAX_DISTANCE
    far = [name for img, h in zip(photos[:20], hashes[:20]) for name, copy in _variants(img).items()
           if int(hamming(h, phash(copy))) > DEFAULT_MAX_DISTANCE]
    assert len(far) <= 1, far  # a 1 % crop can move a few photos past 6 bits (measured: 1-2 of 100)
    assert Path(images[0]).is_file()
