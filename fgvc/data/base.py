"""Dataset class, samples, robust image loading and the data-layer errors.

Every reader (CUB-200-2011, Wah et al. 2011; Oxford Flowers 102, Nilsback and Zisserman 2008; image
folders; CSV manifests; the synthetic set) returns the :class:`SplitContents` of one split (a list of
:class:`Sample`, the class names and reader-specific facts); :class:`FGVCDataset` is built from it, loads
images as RGB ``uint8`` arrays whatever their mode (grayscale, CMYK, RGBA, palette, 16-bit, 1-bit),
optionally crops to the sample's bounding box, applies the transform and either fails loudly on a bad file
(``on_bad_image="error"``) or skips it (``"skip"``).
"""
from __future__ import annotations

import io
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from fgvc.data.decode import apply_draft, fast_jpeg
from fgvc.errors import (  # the data errors are defined with every other user error; importable here too
    CHECK_HINT, AnnotationError, BadImageError, DataError, DatasetNotFoundError, MissingImagesError,
)

log = logging.getLogger("fgvc.data")

__all__ = [
    "DataError", "BadImageError", "AnnotationError", "DatasetNotFoundError", "MissingImagesError",
    "Sample", "SplitContents", "FGVCDataset", "open_image", "load_image", "read_and_identify", "decode_pixels", "to_rgb",
    "missing_images_message",
    "check_split", "CHECK_HINT", "SPLITS",
]

SPLITS = ("train", "val", "test", "trainval")  # the splits of the official data sets


def check_split(name: str, split: str) -> None:
    """A :class:`DataError` unless ``split`` is one of :data:`SPLITS` (the official data sets' splits)."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}' for {name}; choose one of {', '.join(SPLITS)}")


def missing_images_message(what: str, missing: Sequence[Path], total: int, fix: str) -> str:
    """'N of M images listed by ``what`` are missing (first: ...); ``fix``'."""
    first = ", ".join(str(p) for p in missing[:3])
    return (f"{len(missing):,} of {total:,} images listed by {what} are missing (first: {first}); {fix}")


@dataclass
class Sample:
    """One image of a data set."""

    path: Path
    label: int
    image_id: int | None = None
    bbox: tuple[float, float, float, float] | None = None  # x, y, w, h in pixels
    parts: np.ndarray | None = None  # P, 3 (x, y, visible)


@dataclass
class SplitContents:
    """What one split of a data set holds, as its reader found it on disk (no image is opened)."""

    samples: list[Sample]
    classes: list[str]  # display names, indexed by label
    listed_by: str  # what lists these images, e.g. "<dir> for split 'train'" (named when images are missing)
    missing_fix: str  # what to do when listed images are missing (or, with empty_is_error, when there are none)
    crop_to_bbox: bool = False  # crop every image to its sample's box
    empty_is_error: bool = False  # a split without images is an error (folder and csv layouts)
    hflip_problem: str | None = None  # why a horizontal flip changes the class (see FGVCDataset.hflip_problem)
    info: dict[str, Any] = field(default_factory=dict)  # reader-specific facts (class_ids, meta, manifest ...)


# Image.open's decompression-bomb check warns through the (process-global) warnings filters; the lock
# keeps catch_warnings from racing when images are opened from several threads (fgvc.data.check).
_OPEN_LOCK = threading.Lock()


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing, unreadable or empty file is a :class:`BadImageError`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImageError(path, "file not found", kind="missing") from None
    except OSError as e:
        raise BadImageError(path, f"cannot read the file ({e.strerror or e})") from None
    if not data:
        raise BadImageError(path, "the file is empty (0 bytes)", kind="empty")
    return data


def read_and_identify(path: Path, data: bytes | None = None) -> tuple[bytes, Image.Image]:
    """The file's bytes (read unless given) and PIL's lazily opened image (header parsed, bomb-checked, pixels not
    yet decoded)."""
    data = _read_bytes(path) if data is None else data
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImageError(path, f"refusing a possible decompression bomb ({e})",
                            "re-encode the image at a sane size, or set data.on_bad_image=skip", kind="bomb") from None
    except Image.UnidentifiedImageError:
        raise BadImageError(path, "not a readable image (UnidentifiedImageError: not an image format PIL knows, "
                                  "or a corrupt header)") from None
    except Exception as e:  # SyntaxError, struct.error ... from corrupt headers
        raise BadImageError(path, f"not a readable image ({type(e).__name__}: {e})") from None
    return data, img


def decode_pixels(path: Path, img: Image.Image, min_side: int | None) -> Image.Image:
    """Decode ``img``'s pixels (JPEGs at :func:`fgvc.data.decode.draft_scale`'s reduced scale for ``min_side``)."""
    apply_draft(img, min_side)
    try:
        img.load()
    except Exception as e:  # truncated or corrupt pixel data
        problem = str(e)
        if "truncated" in problem.lower() or isinstance(e, EOFError):
            raise BadImageError(path, f"the file is truncated ({problem or 'unexpected end of data'})",
                                kind="truncated") from None
        raise BadImageError(path, f"the image data is corrupt ({type(e).__name__}: {problem})") from None
    return img


def open_image(path: str | Path, min_side: int | None = None) -> Image.Image:
    """Open and fully decode ``path``; every failure is a :class:`BadImageError` naming the file.

    PIL's default ``Image.MAX_IMAGE_PIXELS`` limit is kept, and its DecompressionBombWarning (more than
    the limit) is treated as an error like DecompressionBombError (more than twice the limit). ``min_side``:
    JPEGs at least twice that size are decoded at a reduced scale keeping both sides ``>= min_side``
    (:mod:`fgvc.data.decode`).
    """
    path = Path(path)
    return decode_pixels(path, read_and_identify(path)[1], min_side)


def _composite_on_white(rgba: Image.Image) -> np.ndarray:
    arr = np.asarray(rgba.convert("RGBA"), dtype=np.float32)
    alpha = arr[..., 3:4] / 255.0
    out = arr[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _scale_to_uint8(arr: np.ndarray, high_bit_depth: bool) -> np.ndarray:
    """Map integer/float pixel values to 0..255 by rescaling (never by clipping a 16-bit range)."""
    a = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.nanmin(a)) if a.size else 0.0, float(np.nanmax(a)) if a.size else 0.0
        if lo >= 0.0 and hi <= 1.0:
            a = a * 255.0
        elif lo < 0.0 or hi > 255.0:
            a = (a - lo) / max(hi - lo, 1e-12) * 255.0
    elif high_bit_depth or a.max(initial=0) > 255:
        if a.min(initial=0) >= 0 and a.max(initial=0) <= 65535:
            a = a / 257.0  # 65535 -> 255, 257 -> 1
        else:  # 32-bit data of unknown range
            lo, hi = a.min(), a.max()
            a = (a - lo) / max(hi - lo, 1.0) * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> np.ndarray:
    """``H, W, 3`` uint8 RGB from any PIL mode; transparent pixels are composited on white."""
    mode = img.mode
    if mode == "RGB":
        rgb = np.array(img, dtype=np.uint8)
    elif mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in img.info):
        rgb = _composite_on_white(img)
    elif mode.startswith("I;16") or mode in ("I", "F"):
        gray = _scale_to_uint8(np.asarray(img), high_bit_depth=mode.startswith("I;16"))
        rgb = np.repeat(gray[..., None], 3, axis=2)
    else:  # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX ...
        rgb = np.array(img.convert("RGB"), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:  # pragma: no cover - defensive
        raise ValueError(f"cannot convert mode {mode} to RGB (got shape {rgb.shape})")
    return np.ascontiguousarray(rgb)


def load_image(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """``H, W, 3`` uint8 RGB array of the image at ``path`` (raises :class:`BadImageError`); with ``min_side``, a
    large JPEG is decoded at a reduced scale whose shorter side stays ``>= min_side`` (simplejpeg when installed,
    else PIL's draft: the same pixels)."""
    path = Path(path)
    data = _read_bytes(path)
    fast = fast_jpeg(data, min_side)  # simplejpeg, when installed: the same pixels as PIL, ~2x faster
    if fast is not None:
        return fast
    data, img = read_and_identify(path, data)  # everything else, and every problem: PIL names it
    img = decode_pixels(path, img, min_side)
    try:
        return to_rgb(img)
    except BadImageError:
        raise
    except Exception as e:
        raise BadImageError(path, f"cannot convert mode {img.mode} to RGB ({e})") from None


def crop_bbox(image: np.ndarray, bbox: tuple[float, float, float, float]) -> np.ndarray:
    """Crop ``image`` to ``bbox`` (x, y, w, h in pixels), clamped to the image; whole image if empty."""
    h, w = image.shape[:2]
    x0, y0 = max(int(np.floor(bbox[0])), 0), max(int(np.floor(bbox[1])), 0)
    x1, y1 = min(int(np.ceil(bbox[0] + bbox[2])), w), min(int(np.ceil(bbox[1] + bbox[3])), h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return image
    return image[y0:y1, x0:x1]


class FGVCDataset(torch.utils.data.Dataset):
    """A labelled image data set: ``dataset[i] -> (image 3 x H x W float tensor, label int)``.

    Built by :func:`fgvc.data.build_dataset` from the :class:`SplitContents` a reader returns; the
    constructor checks them (boxes exist when cropping to them, images exist, a split is not empty where
    that is an error). ``transform`` maps an ``H, W, 3`` uint8 RGB array to a tensor (see
    :func:`fgvc.data.build_transforms`); without one the image is returned as a float tensor in [0, 1].
    ``info`` holds the reader's own facts, e.g. ``class_ids`` (cub200, flowers102), ``class_folders`` and
    ``part_names`` (cub200), ``meta`` (synthetic), ``manifest`` (csv).
    """

    def __init__(
        self,
        name: str,
        root: str | Path,
        split: str,
        contents: SplitContents,
        transform: Callable[[np.ndarray], Any] | None = None,
        on_bad_image: str = "error",
    ) -> None:
        if on_bad_image not in ("error", "skip"):
            raise ValueError(f"data.on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
        self.name, self.root, self.split = name, Path(root), split
        self.samples, self.classes = contents.samples, contents.classes
        self.crop_to_bbox, self.info = contents.crop_to_bbox, contents.info
        self.transform, self.on_bad_image = transform, on_bad_image
        self.bad_log: Path | None = None
        self.cache: Any = None  # a fgvc.data.cache.DataCache of pre-resized copies (recipe key data.cache)
        self._hflip_problem = contents.hflip_problem
        self._warned: set[str] = set()
        if self.crop_to_bbox and self.samples and all(s.bbox is None for s in self.samples):
            raise DataError(f"crop_to_bbox=True but data set '{name}' at {self.root} has no bounding boxes; "
                            "set crop_to_bbox=false in data.args")
        if contents.empty_is_error and not self.samples:
            raise DataError(f"split '{split}' of {contents.listed_by} has no images; {contents.missing_fix}")
        self._check_images_exist(contents.listed_by, contents.missing_fix)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def targets(self) -> list[int]:
        return [s.label for s in self.samples]

    @property
    def parts(self) -> np.ndarray | None:
        """``N, P, 3`` part locations (x, y, visible) of this split's images, or None without parts."""
        if not self.samples or self.samples[0].parts is None:
            return None
        return np.stack([s.parts for s in self.samples])  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.samples)

    def hflip_problem(self) -> str | None:
        """Why a horizontal flip would change what an image shows (e.g. classes that are mirror images of
        each other), or None when flipping keeps the label, as for birds and flowers."""
        return self._hflip_problem

    def class_counts(self) -> np.ndarray:
        """Images per class, ``K`` int64, indexed by label."""
        return np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=self.num_classes)

    def _check_images_exist(self, what: str, fix: str) -> None:
        """Missing image files raise :class:`MissingImagesError`; with ``on_bad_image="skip"`` (and some images
        present) they are a warning instead, and loading skips and logs each one like any other bad image."""
        missing = [s.path for s in self.samples if not s.path.is_file()]
        if not missing:
            return
        msg = missing_images_message(what, missing, len(self.samples), fix)
        if self.on_bad_image == "error" or len(missing) == len(self.samples):
            raise MissingImagesError(msg)
        warnings.warn(f"{msg} (data.on_bad_image=skip: they will be skipped)", stacklevel=4)

    def load_sample(self, index: int) -> np.ndarray:
        """The ``H, W, 3`` uint8 image of sample ``index`` (cropped to its box when ``crop_to_bbox``). Without boxes,
        a valid pre-resized copy (:attr:`cache`, bit-identical to the transform's first resize) stands in for the
        file, and with ``reduced_decode`` a large JPEG decodes at a reduced scale, never below ``min_side``."""
        s = self.samples[index]
        copy = None
        if self.cache is not None and not self.crop_to_bbox:
            copy = self.cache.lookup(s.path, getattr(self.transform, "first_resize", None))
        if copy is not None:
            image = self.cache.read(copy)
        else:
            need = None if self.crop_to_bbox else getattr(self.transform, "min_side", None)
            image = load_image(s.path, need if getattr(self.transform, "reduced_decode", False) else None)
        if self.crop_to_bbox and s.bbox is not None:
            image = crop_bbox(image, s.bbox)
        return image

    def _record_bad(self, sample: Sample, err: BadImageError) -> None:
        key = str(sample.path)
        if key in self._warned:
            return
        self._warned.add(key)
        msg = f"skipping bad image {sample.path}: {err.problem} (data.on_bad_image=skip)"
        warnings.warn(msg, stacklevel=3)
        if self.bad_log is not None:
            reason = " ".join(err.problem.split())
            Path(self.bad_log).parent.mkdir(parents=True, exist_ok=True)
            with open(self.bad_log, "a", encoding="utf-8") as f:
                f.write(f"{sample.path}\t{reason}\n")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        for k in range(n):
            j = (index + k) % n
            try:
                image = self.load_sample(j)
            except BadImageError as e:
                if self.on_bad_image == "error":
                    hint = (f"run `python -m fgvc.datasets check {self.name} {self.root}` to list every bad file, "
                            "or set data.on_bad_image=skip")
                    raise BadImageError(e.path, e.problem, hint, e.kind) from None
                self._record_bad(self.samples[j], e)
                continue
            label = self.samples[j].label
            if self.transform is not None:
                return self.transform(image), label
            return torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0), label
        raise BadImageError(self.root, f"all {n} images of split '{self.split}' are unreadable",
                            "run `python -m fgvc.datasets check ROOT` to see why")

    def __repr__(self) -> str:
        counts = self.class_counts()
        per = (f"{counts.min()}-{counts.max()} per class" if len(counts) else "no classes")
        lines = [
            f"FGVCDataset({self.name!r}, split={self.split!r}, root={str(self.root)!r}, images={len(self):,}, "
            f"classes={self.num_classes}, {per}, crop_to_bbox={self.crop_to_bbox}, on_bad_image={self.on_bad_image!r})"
        ]
        if self.transform is not None:
            lines.append("  transform: " + repr(self.transform).replace("\n", "\n  "))
        return "\n".join(lines)


def map_with_progress(fn: Callable[[Any], Any], items: Sequence[Any], desc: str, workers: int = 2,
                      progress: bool = True) -> Iterator[Any]:
    """``fn`` of every item on a pool of ``workers`` threads, in order, with a tqdm bar ``desc`` on a terminal."""
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=not (progress and sys.stderr.isatty()))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in pool.map(fn, items):
            yield result
            bar.update(1)
    bar.close()
