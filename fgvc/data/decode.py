"""JPEG decoding: simplejpeg when installed (the same pixels as PIL, ~2x faster), and reduced-scale decoding with
libjpeg's DCT scaling (the JPEG standard's 8x8 blocks decoded at 1/2, 1/4 or 1/8 of their size).

Both backends are libjpeg-turbo with its islow DCT and fancy upsampling, so they give bit-identical pixels at the
same power-of-two scale:

* PIL (always available): ``Image.draft`` picks the scale from a requested size;
* simplejpeg (``pip install fgvc[fast]``): used for YCbCr/RGB JPEGs whenever installed, full size or reduced.

The reduced scale (recipe key ``data.reduced_decode``, off by default) never takes the shorter side below
``min_side`` (what the transform needs: ``Transform.min_side`` in :mod:`fgvc.data.transforms`), so the resize that
follows never upsamples where the full image would not have. A 500 x 700 Flowers photo resized to a 184-px shorter
side then decodes at 250 x 354, ~1.6x faster, but the DCT-domain average is a softer image than a bilinear resize of
the full decode, and it cost test accuracy in our runs (tf_efficientnet_lite0, Flowers mini, 160 px: -0.6 to -1.8
points top-1 with the same weights), so it is an opt-in speed lever, not a default.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["draft_scale", "apply_draft", "fast_jpeg", "HAS_SIMPLEJPEG", "backend", "use_simplejpeg"]

try:  # optional: fgvc[fast]
    import simplejpeg as _simplejpeg  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _simplejpeg = None

HAS_SIMPLEJPEG = _simplejpeg is not None
_enabled = HAS_SIMPLEJPEG
_SCALES = (8, 4, 2, 1)  # the power-of-two reductions both backends share (PIL's draft offers only these)


def backend() -> str:
    """The JPEG decoder used: ``simplejpeg`` when installed (and not switched off), else ``PIL``."""
    return "simplejpeg" if _enabled else "PIL"


def use_simplejpeg(enabled: bool) -> bool:
    """Switch the simplejpeg path on (when installed) or off in this process and the DataLoader workers it forks
    later (``fgvc.bench pipeline`` measures both); returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled) and HAS_SIMPLEJPEG
    return previous


def draft_scale(width: int, height: int, min_side: int | None) -> int:
    """The reduction ``s`` in (1, 2, 4, 8) a decode of a ``width x height`` JPEG may use so that both sides stay
    ``>= min_side`` (``ceil(side / s)`` pixels each); 1 (full size) when ``min_side`` is None or the image is
    less than twice as large. Mirrors PIL's ``JpegImageFile.draft``, so both backends pick the same scale."""
    if not min_side or min_side < 1:
        return 1
    fit = min(width // min_side, height // min_side)
    return next(s for s in _SCALES if fit >= s or s == 1)


def apply_draft(img: Image.Image, min_side: int | None) -> None:
    """Ask PIL to decode ``img`` (opened, not yet loaded) at the reduced scale of :func:`draft_scale`; a no-op for
    non-JPEG files and when no reduction applies."""
    if min_side and img.format == "JPEG" and draft_scale(img.width, img.height, min_side) > 1:
        img.draft(None, (int(min_side), int(min_side)))


def fast_jpeg(data: bytes, min_side: int | None) -> np.ndarray | None:
    """``H, W, 3`` uint8 RGB of the JPEG ``data`` decoded by simplejpeg at :func:`draft_scale`'s scale, or None where
    simplejpeg is not installed (or switched off), the bytes are not a YCbCr/RGB JPEG (grayscale and CMYK take PIL's
    path), the image has more than PIL's ``Image.MAX_IMAGE_PIXELS`` (PIL's path refuses it as a possible
    decompression bomb) or simplejpeg reports any problem: PIL then decodes the file and names what is wrong with it.

    The header is read by simplejpeg (~2 us) rather than by ``PIL.Image.open`` (~50-100 us, a third of decoding a
    227 px CUB image)."""
    if not _enabled or data[:2] != b"\xff\xd8":  # not a JPEG (SOI marker)
        return None
    try:
        height, width, colorspace, _ = _simplejpeg.decode_jpeg_header(data)
        limit = Image.MAX_IMAGE_PIXELS
        if colorspace not in ("YCbCr", "RGB") or (limit is not None and width * height > limit):
            return None
        s = draft_scale(width, height, min_side)
        kwargs: dict[str, Any] = {}
        if s > 1:  # the smallest size >= these is exactly 1/s (simplejpeg scales by M/8)
            kwargs = {"min_height": math.ceil(height / s), "min_width": math.ceil(width / s)}
        rgb = _simplejpeg.decode_jpeg(data, "RGB", **kwargs)  # strict: warnings (truncation) are errors
    except Exception:  # corrupt or truncated: PIL's path raises the BadImageError naming the problem
        return None
    return rgb if rgb.ndim == 3 and rgb.shape[2] == 3 else None
