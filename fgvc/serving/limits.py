"""What an upload may be, and turning its bytes into the RGB array ``fgvc.predict`` would have read from disk.

Every problem is an :class:`UploadError` carrying the HTTP status a client gets and a one-line message, never an
exception that could become a 500:

* a request body over :attr:`Limits.max_bytes` -> 413 (refused from its ``Content-Length`` before the body is read,
  or as soon as a streamed body passes the limit);
* an image of more than :attr:`Limits.max_pixels` pixels (a decompression bomb: a few kB of PNG that inflate to
  gigabytes) -> 413, decided from the header before any pixel is decoded (PIL's own bomb check applies too);
* a file that is not an image -> 415; an empty, truncated or corrupt image -> 400.

The bytes are decoded exactly as :func:`fgvc.data.base.load_image` decodes a file (simplejpeg for JPEGs where it
is installed, else PIL; transparency composited on white), so a photo served gets the prediction ``fgvc.predict``
gives the same file. Nothing here opens a path: an upload's name is only a label.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from fgvc.data.base import BadImageError, decode_pixels, read_and_identify, to_rgb
from fgvc.data.decode import fast_jpeg

__all__ = ["Limits", "UploadError", "decode_upload", "upload_label"]

MAX_LABEL = 200  # characters of an upload's name echoed back as its ``path``


@dataclass(frozen=True)
class Limits:
    """The bounds of one server: request body bytes, pixels per image, images per request, pending images. Each
    field's ``help`` is its ``fgvc.serve`` flag's (``--max-bytes`` ...), so a default is written here only."""

    max_bytes: int = field(default=10_000_000, metadata={"help": "request body size limit in bytes, 413 beyond"})
    max_pixels: int = field(default=50_000_000, metadata={"help": "pixels per image at most, 413 beyond"})
    max_files: int = field(default=16, metadata={"help": "images per request at most"})
    queue: int = field(default=256, metadata={"help": "images pending at most; beyond, 503 with Retry-After"})


class UploadError(Exception):
    """An upload the server refuses: ``status`` (4xx/503), ``kind`` (a metrics label), and the message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def upload_label(name: str | None) -> str:
    """The ``path`` an upload is answered under: the file name it was sent with (its last component, shortened),
    ``upload`` when it had none. Only a label; the server never opens it."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name.strip()
    return (base or "upload")[:MAX_LABEL]


def _status_of(kind: str, problem: str) -> tuple[int, str]:
    """HTTP status and metrics kind of a :class:`fgvc.data.base.BadImageError`."""
    if kind == "bomb":
        return 413, "too_many_pixels"
    if problem.startswith("not a readable image"):
        return 415, "not_an_image"
    if kind == "truncated":
        return 400, "truncated"
    if kind == "empty":
        return 400, "empty"
    return 400, "corrupt"


def decode_upload(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    """``H, W, 3`` uint8 RGB of the uploaded bytes (as :func:`fgvc.data.base.load_image` reads a file), or an
    :class:`UploadError`."""
    if not data:
        raise UploadError(400, "empty", f"{label}: the upload is empty (0 bytes); send the image file's contents")
    try:
        _, img = read_and_identify(PurePosixPath(label), data)  # header only: format, size; PIL's bomb check
        width, height = img.size
        if width * height > max_pixels:
            raise UploadError(413, "too_many_pixels",
                              f"{label}: {width} x {height} = {width * height:,} pixels is over this server's limit "
                              f"of {max_pixels:,} (a possible decompression bomb); send a smaller image")
        fast = fast_jpeg(data, None)
        if fast is not None:
            return fast
        return to_rgb(decode_pixels(PurePosixPath(label), img, None))
    except BadImageError as e:
        status, kind = _status_of(e.kind, e.problem)
        raise UploadError(status, kind, f"{label}: {e.problem}") from None
    except UploadError:
        raise
    except Exception as e:  # anything PIL raises on a hostile file: the client's problem, never a 500
        raise UploadError(400, "corrupt", f"{label}: cannot decode the image ({type(e).__name__}: {e})") from None
