"""Perceptual hashing (the DCT "pHash" of Zauner 2010) and a vectorised near-duplicate search.

C. Zauner, *Implementation and Benchmarking of Perceptual Image Hash Functions*, master's thesis, Upper Austria
University of Applied Sciences, 2010 (the algorithm of pHash.org's ``ph_dct_imagehash``):

1. luminance (ITU-R 601 luma of the RGB image), smoothed with a 7 x 7 mean filter;
2. resized to 32 x 32;
3. 2-D DCT-II (``scipy.fft.dctn``, orthonormal);
4. the 8 x 8 lowest frequencies *without* the DC term (rows and columns 1..8);
5. each of those 64 coefficients above their median -> one bit: a 64-bit hash (``numpy.uint64``).

Similar images have hashes a small Hamming distance apart: resizing, JPEG re-encoding, mild crops or colour
changes move a few bits, while different photographs differ in about half of the 64. :func:`near_pairs` finds every
pair within a distance blockwise with numpy bit operations (XOR + ``bitwise_count``), ``O(N^2 / 64)`` bit work
in ``block x N`` slabs and no Python loop over pairs, so 12k images take a few seconds.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from PIL import Image, ImageFilter
from scipy.fft import dctn

__all__ = ["phash", "phash_bits", "hamming", "near_pairs", "HASH_BITS", "DEFAULT_MAX_DISTANCE"]

HASH_BITS = 64
# Hamming distance (of 64 bits) up to which two images are called near duplicates. Measured on CUB-200-2011
# photographs (400 of cub200-mid): copies resized to 1/2 or 3/4 and re-encoded as JPEG (quality 70-75), or
# re-encoded at quality 40, are 0-4 bits away (all flagged); copies cropped by 1 % a side: 98.8 % flagged, 2 %:
# 73 %, 3 %: 40 % (pHash is not made for crops). Distinct photographs, even of one species, are >= 8 bits apart
# (cub200-mini: min 8, median 32; the only pairs under 8 in cub200-mid's 3,547 are two real duplicates, at 2 and 6).
DEFAULT_MAX_DISTANCE = 6
_SIZE, _LOW = 32, 8
_WEIGHTS = 1 << np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64)  # bit 0 of the 64 is the most significant


def phash_bits(image: Image.Image | np.ndarray) -> np.ndarray:
    """The 64 pHash bits (``bool``, row-major over the 8 x 8 DCT block) of a PIL image or an ``H, W, 3`` uint8
    RGB / ``H, W`` gray array."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    gray = image.convert("L") if image.mode != "L" else image  # ITU-R 601-2 luma
    gray = gray.filter(ImageFilter.BoxBlur(3))  # 7 x 7 mean filter
    small = np.asarray(gray.resize((_SIZE, _SIZE), Image.Resampling.BILINEAR), dtype=np.float64)  # 32, 32
    coeffs = dctn(small, type=2, norm="ortho")[1:_LOW + 1, 1:_LOW + 1].ravel()  # 64 low frequencies, no DC
    return coeffs > np.median(coeffs)


def phash(image: Image.Image | np.ndarray) -> np.uint64:
    """The 64-bit pHash of an image (see the module docstring) as ``numpy.uint64``."""
    return np.uint64(np.sum(_WEIGHTS[phash_bits(image)], dtype=np.uint64))


def hamming(a: np.ndarray | np.uint64, b: np.ndarray | np.uint64) -> np.ndarray:
    """Elementwise Hamming distance of uint64 hashes (broadcasting), as uint8."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


def _blocks(n: int, block: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, block):
        yield start, min(start + block, n)


def near_pairs(hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE, block: int = 1024
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of ``hashes`` (``N`` uint64) whose Hamming distance is ``<= max_distance``:
    ``(i, j, distance)`` as int64 arrays sorted by distance, then ``i``, then ``j``.

    Works in slabs of ``block x N`` (a few MB each): XOR, popcount, threshold; only the hits leave numpy."""
    if not 0 <= max_distance <= HASH_BITS:
        raise ValueError(f"max_distance must be in 0..{HASH_BITS}, got {max_distance}")
    h = np.ascontiguousarray(hashes, dtype=np.uint64).ravel()
    found_i, found_j, found_d = [], [], []
    for start, stop in _blocks(len(h), block):
        d = hamming(h[start:stop, None], h[None, start:])  # B, N - start (only j >= the block's first row)
        rows, cols = np.nonzero(d <= max_distance)
        cols = cols + start
        rows = rows + start
        keep = cols > rows
        found_i.append(rows[keep])
        found_j.append(cols[keep])
        found_d.append(d[rows[keep] - start, cols[keep] - start])
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    i, j, dist = (np.concatenate(x).astype(np.int64) for x in (found_i, found_j, found_d))
    order = np.lexsort((j, i, dist))
    return i[order], j[order], dist[order]
