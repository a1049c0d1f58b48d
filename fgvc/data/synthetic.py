"""A deterministic synthetic fine-grained data set in the CUB-200-2011 layout (Wah et al. 2011).

Each image: a cluttered random background; a "body" (a shaded ellipse of random colour, size, position and
orientation, identical in distribution for every class); one small discriminative part (a square patch
whose *pattern* is the class: shape x texture x outline, in random colours) on or near the body; and one or
two distractor parts of the same size whose patterns belong to no class. Only the part's pattern is
informative: colours, the body, the clutter and the presence of parts are not, so global colour statistics
do not give the class away, while a CNN that looks at the right patch does.

``bounding_boxes.txt`` holds the body's box and ``parts/part_locs.txt`` the discriminative part's centre as
part 1 (the other 14 parts are ``0 0 0``), so box cropping and part supervision can be tested.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw

from fgvc.data.base import DataError, DatasetNotFoundError
from fgvc.data.cub import CUB200
from fgvc.registry import DATASETS

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock between processes
    fcntl = None  # type: ignore[assignment]

__all__ = ["make_synthetic", "SyntheticFGVC", "PATTERNS", "VERSION", "mirror"]

VERSION = 1
SHAPES = ("Square", "Disk", "Triangle", "Diamond")
TEXTURES = ("Hstripes", "Vstripes", "Slash", "Backslash", "Checker", "Dots")
OUTLINES = ("Plain", "Framed")
PATTERNS = [(s, t, o) for s in SHAPES for t in TEXTURES for o in OUTLINES]  # 48
MIN_DISTRACTOR_PATTERNS = 8
NUM_PARTS = 15
_OWN_FILES = {"CUB_200_2011", "synthetic.json", "README.md", ".synthetic.lock"}


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "Square":
        return (np.abs(u) <= 0.92) & (np.abs(v) <= 0.92)
    if shape == "Disk":
        return u * u + v * v <= 1.0
    if shape == "Triangle":  # apex up
        return (v <= 0.92) & (np.abs(u) <= (v + 0.92) / 1.84 * 0.98)
    return np.abs(u) + np.abs(v) <= 1.0  # Diamond


def _texture(texture: str, x: np.ndarray, y: np.ndarray, s: int) -> np.ndarray:
    half = max(s / 8.0, 1.5)  # 4 stripe periods across the part
    if texture == "Hstripes":
        return np.floor(y / half) % 2 == 0
    if texture == "Vstripes":
        return np.floor(x / half) % 2 == 0
    if texture == "Slash":
        return np.floor((x + y) / (half * 1.41)) % 2 == 0
    if texture == "Backslash":
        return np.floor((x - y + s) / (half * 1.41)) % 2 == 0
    if texture == "Checker":
        return (np.floor(x / (s / 4.0)) + np.floor(y / (s / 4.0))) % 2 == 0
    cell = s / 3.0  # Dots
    dx, dy = (x % cell) - cell / 2, (y % cell) - cell / 2
    return dx * dx + dy * dy <= (cell * 0.3) ** 2


def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    while True:
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        luma = np.array([0.299, 0.587, 0.114])
        if abs(float(luma @ (a - b))) > 70:
            return a, b


def _draw_part(img: np.ndarray, pattern: tuple[str, str, str], cx: float, cy: float, s: int,
               rng: np.random.Generator) -> None:
    """Paint a ``s x s`` patch of ``pattern`` centred at (cx, cy) into ``img: H, W, 3`` float32, in place."""
    shape, texture, outline = pattern
    y, x = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    u, v = x / s * 2 - 1, y / s * 2 - 1
    mask = _shape_mask(shape, u, v)
    fg, bg = _colour_pair(rng)
    patch = np.where(_texture(texture, x, y, s)[..., None], fg, bg)
    if outline == "Framed":
        ring = mask & ~_shape_mask(shape, u / 0.78, v / 0.78)
        patch[ring] = 20.0 if rng.random() < 0.5 else 235.0
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    region = img[y0:y0 + s, x0:x0 + s]
    region[mask] = patch[mask]


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    t = np.linspace(0, 1, size, dtype=np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(ang) * t[None, :] + np.sin(ang) * t[:, None]
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    coarse = ((rng.uniform(-40, 40, (6, 6, 3)) + 64) * 2).astype(np.uint8)  # smooth colour blotches
    low = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR),
                     dtype=np.float32) / 2 - 64
    bg = c0 + (c1 - c0) * ramp[..., None] + low
    im = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(8, 16))):  # lines
        pts = rng.uniform(-0.1, 1.1, 4) * size
        draw.line([tuple(pts[:2]), tuple(pts[2:])], fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
                  width=int(rng.integers(1, max(2, size // 40) + 1)))
    for _ in range(int(rng.integers(4, 9))):  # blobs and boxes, filled or not
        x0, y0 = rng.uniform(-0.1, 0.95, 2) * size
        w, h = rng.uniform(0.05, 0.3, 2) * size
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = [x0, y0, x0 + w, y0 + h]
        fill, out = (col, None) if rng.random() < 0.5 else (None, col)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill, outline=out, width=2)
    return im


def render(pattern: tuple[str, str, str], distractors: list[tuple[str, str, str]], img_size: int,
           part_size_frac: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, tuple[float, float, float, float], tuple[float, float]]:
    """One image ``H, W, 3`` uint8, the body box (x, y, w, h) and the discriminative part's centre."""
    S = img_size
    img = np.asarray(_background(rng, S), dtype=np.float32).copy()
    # body: rotated, shaded ellipse
    a, b = rng.uniform(0.22, 0.36) * S, rng.uniform(0.13, 0.22) * S
    th = rng.uniform(0, np.pi)
    ex = np.sqrt((a * np.cos(th)) ** 2 + (b * np.sin(th)) ** 2)  # half extents of the rotated ellipse
    ey = np.sqrt((a * np.sin(th)) ** 2 + (b * np.cos(th)) ** 2)
    cx, cy = rng.uniform(0.3, 0.7, 2) * S
    y, x = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5
    du, dv = x - cx, y - cy
    r2 = ((du * np.cos(th) + dv * np.sin(th)) / a) ** 2 + ((-du * np.sin(th) + dv * np.cos(th)) / b) ** 2
    body = r2 <= 1.0
    colour = rng.uniform(20, 235, 3)
    shade = (1.0 - 0.35 * np.clip(r2, 0, 1))[..., None]
    img = np.where(body[..., None], colour * shade, img)
    x0, y0, x1, y1 = max(cx - ex, 0.0), max(cy - ey, 0.0), min(cx + ex, S - 1.0), min(cy + ey, S - 1.0)
    # parts on (or near) the body, not overlapping each other
    s = max(int(round(np.sqrt(part_size_frac) * S * rng.uniform(0.9, 1.1))), 6)
    centres: list[tuple[float, float]] = []
    for _ in range(1 + len(distractors)):
        for attempt in range(40):
            rad, phi = np.sqrt(rng.uniform(0, 1)) * (0.9 if attempt < 20 else 1.4), rng.uniform(0, 2 * np.pi)
            pu, pv = rad * a * np.cos(phi), rad * b * np.sin(phi)
            px = float(np.clip(cx + pu * np.cos(th) - pv * np.sin(th), s / 2 + 1, S - s / 2 - 1))
            py = float(np.clip(cy + pu * np.sin(th) + pv * np.cos(th), s / 2 + 1, S - s / 2 - 1))
            if all(max(abs(px - qx), abs(py - qy)) > s * 1.05 for qx, qy in centres):
                break
        centres.append((px, py))
    for pat, (px, py) in zip([pattern, *distractors], centres):
        _draw_part(img, pat, px, py, s, rng)
    img += rng.normal(0, 5, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), (x0, y0, x1 - x0, y1 - y0), centres[0]


MIRRORED_TEXTURES = {"Slash": "Backslash", "Backslash": "Slash"}  # every shape is symmetric left-right


def mirror(pattern: tuple[str, str, str]) -> tuple[str, str, str]:
    """The pattern a horizontal flip turns ``pattern`` into."""
    shape, texture, outline = pattern
    return shape, MIRRORED_TEXTURES.get(texture, texture), outline


def _class_name(pattern: tuple[str, str, str]) -> str:
    return "_".join(pattern)


def _assign_patterns(num_classes: int, seed: int) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    if not 1 <= num_classes <= len(PATTERNS) - MIN_DISTRACTOR_PATTERNS:
        raise ValueError(f"num_classes must be in 1..{len(PATTERNS) - MIN_DISTRACTOR_PATTERNS} (there are "
                         f"{len(PATTERNS)} part patterns and {MIN_DISTRACTOR_PATTERNS} stay distractors), "
                         f"got {num_classes}")
    order = np.random.default_rng([seed % 2**32, 7]).permutation(len(PATTERNS))
    pats = [PATTERNS[i] for i in order]
    return pats[:num_classes], pats[num_classes:]


def make_synthetic(
    out: str | Path,
    num_classes: int = 10,
    images_per_class: int = 200,
    img_size: int = 128,
    part_size_frac: float = 0.08,
    test_fraction: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the synthetic set into ``out`` (``out/CUB_200_2011``, ``out/synthetic.json``, ``out/README.md``)
    and return ``out``. ``part_size_frac`` is each part's area as a fraction of the image (0.08: a 36 px
    square at 128 px). The same arguments give byte-identical files. An existing synthetic set in ``out``
    is replaced; anything else there is refused."""
    out = Path(out)
    if images_per_class < 2 or img_size < 32 or not 0 < part_size_frac <= 0.1 or not 0 < test_fraction < 1:
        raise ValueError("need images_per_class >= 2, img_size >= 32, 0 < part_size_frac <= 0.1 and "
                         f"0 < test_fraction < 1; got {images_per_class}, {img_size}, {part_size_frac}, "
                         f"{test_fraction}")
    classes, pool = _assign_patterns(num_classes, seed)
    if out.exists() and (out / "CUB_200_2011").exists() and not (out / "synthetic.json").is_file():
        raise DataError(f"{out / 'CUB_200_2011'} exists and is not a synthetic set (no {out / 'synthetic.json'}); "
                        "refusing to overwrite it: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-tmp-", dir=out))
    try:
        d = tmp / "CUB_200_2011"
        (d / "parts").mkdir(parents=True)
        folders = [f"{c + 1:03d}.{_class_name(p)}" for c, p in enumerate(classes)]
        images, labels, split, boxes, locs = [], [], [], [], []
        total = num_classes * images_per_class
        bar = _bar(total, progress)
        for c, pattern in enumerate(classes):
            (d / "images" / folders[c]).mkdir(parents=True)
            n_test = int(round(test_fraction * images_per_class))
            is_test = np.zeros(images_per_class, dtype=bool)
            is_test[np.random.default_rng([seed % 2**32, 11, c]).permutation(images_per_class)[:n_test]] = True
            for j in range(images_per_class):
                rng = np.random.default_rng([seed % 2**32, 13, c, j])
                k = int(rng.integers(1, 3))
                distractors = [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]
                arr, box, centre = render(pattern, distractors, img_size, part_size_frac, rng)
                rel = f"{folders[c]}/{_class_name(pattern)}_{j + 1:04d}.jpg"
                Image.fromarray(arr).save(d / "images" / rel, quality=92)
                images.append(rel)
                labels.append(c + 1)
                split.append(0 if is_test[j] else 1)
                boxes.append(box)
                locs.append(centre)
                bar.update(1)
        bar.close()
        ids = range(1, total + 1)
        _write(d / "images.txt", (f"{i} {p}" for i, p in zip(ids, images)))
        _write(d / "image_class_labels.txt", (f"{i} {c}" for i, c in zip(ids, labels)))
        _write(d / "train_test_split.txt", (f"{i} {s}" for i, s in zip(ids, split)))
        _write(d / "classes.txt", (f"{c + 1} {f}" for c, f in enumerate(folders)))
        _write(d / "bounding_boxes.txt",
               (f"{i} {b[0]:.1f} {b[1]:.1f} {b[2]:.1f} {b[3]:.1f}" for i, b in zip(ids, boxes)))
        _write(d / "parts" / "parts.txt", ["1 pattern", *(f"{p} unused_{p}" for p in range(2, NUM_PARTS + 1))])
        _write(d / "parts" / "part_locs.txt", (
            f"{i} {p} " + (f"{loc[0]:.1f} {loc[1]:.1f} 1" if p == 1 else "0 0 0")
            for i, loc in zip(ids, locs) for p in range(1, NUM_PARTS + 1)))
        meta = {"generator": "fgvc.data.synthetic", "version": VERSION, "num_classes": num_classes,
                "images_per_class": images_per_class, "img_size": img_size, "part_size_frac": part_size_frac,
                "test_fraction": test_fraction, "seed": seed, "images": total,
                "classes": {f: list(p) for f, p in zip(folders, classes)},
                "distractor_patterns": [list(p) for p in pool]}
        (out / "synthetic.json").unlink(missing_ok=True)  # the marker goes last: no half set looks complete
        shutil.rmtree(out / "CUB_200_2011", ignore_errors=True)
        os.replace(d, out / "CUB_200_2011")
        (out / "README.md").write_text(_README.format(**meta), encoding="utf-8")
        (out / "synthetic.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


_README = """# Synthetic fine-grained set (fgvc.data.synthetic v{version})

{num_classes} classes x {images_per_class} images at {img_size} px, seed {seed}, test fraction {test_fraction},
part area {part_size_frac} of the image. CUB-200-2011 layout; the class is the pattern of one small part
(shape x texture x outline), the body's box is in bounding_boxes.txt and the part's centre is part 1 in
parts/part_locs.txt. Regenerate with `python -m fgvc.datasets make-synthetic --out DIR`.
"""


def _write(path: Path, lines: Any) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _bar(total: int, progress: bool) -> Any:
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="synthetic", unit="img", disable=not (progress and sys.stderr.isatty()))


@DATASETS.register("synthetic")
class SyntheticFGVC(CUB200):
    """The synthetic set, generated into ``root`` on first use (when ``generate``), read as CUB-200-2011."""

    name = "synthetic"

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable[[np.ndarray], Any] | None = None,
        on_bad_image: str = "error",
        generate: bool = True,
        num_classes: int = 10,
        images_per_class: int = 200,
        img_size: int = 128,
        seed: int = 0,
        val_fraction: float = 0.1,
        crop_to_bbox: bool = False,
    ) -> None:
        root = Path(root)
        want = {"version": VERSION, "num_classes": num_classes, "images_per_class": images_per_class,
                "img_size": img_size, "seed": seed}
        make = (f"`python -m fgvc.datasets make-synthetic --out {root} --num-classes {num_classes} "
                f"--images-per-class {images_per_class} --img-size {img_size} --seed {seed}`")
        if generate:
            root.mkdir(parents=True, exist_ok=True)
        with _locked(root):
            meta = _read_meta(root)
            others = sorted(p.name for p in root.iterdir() if p.name not in _OWN_FILES
                            and not p.name.startswith(".synthetic-tmp-")) if root.is_dir() else []
            if meta is None and not root.is_dir():
                raise DatasetNotFoundError(f"synthetic set not found at {root}; create it with {make} or set "
                                           "data.args.generate=true")
            if meta is None or any(meta.get(k) != v for k, v in want.items()):
                if others or (meta is None and (root / "CUB_200_2011").exists()):
                    raise DataError(f"{root} holds other files ({', '.join(others[:5]) or 'CUB_200_2011/'}), not "
                                    "only a synthetic set with these parameters; point data.root at an empty folder")
                if not generate:
                    found = "none" if meta is None else {k: meta.get(k) for k in want}
                    raise DatasetNotFoundError(f"synthetic set at {root} does not match data.args {want} "
                                               f"(found {found}); regenerate with {make}")
                make_synthetic(root, num_classes, images_per_class, img_size, seed=seed, progress=True)
                meta = _read_meta(root)
        super().__init__(root, split, transform, on_bad_image, crop_to_bbox=crop_to_bbox, val_fraction=val_fraction,
                         seed=seed, load_parts=True)
        self.meta = meta or {}  # the generator's parameters, class patterns and distractor patterns

    def hflip_problem(self) -> str | None:
        """Slash and Backslash stripes are mirror images: flipping such a part gives another class's pattern
        (or a distractor's), so a flip augmentation would teach the model to confuse them."""
        classes = {tuple(p): name for name, p in self.meta.get("classes", {}).items()}
        distractors = {tuple(p) for p in self.meta.get("distractor_patterns", [])}
        swaps = sorted({tuple(sorted((name, classes[mirror(p)]))) for p, name in classes.items()
                        if mirror(p) != p and mirror(p) in classes})
        into_distractor = sorted(name for p, name in classes.items() if mirror(p) != p and mirror(p) in distractors)
        if not swaps and not into_distractor:
            return None
        said = [f"{a} <-> {b}" for a, b in swaps] + [f"{n} -> a distractor" for n in into_distractor]
        return (f"a horizontal flip changes the class pattern of {len(said)} class(es) of the synthetic set at "
                f"{self.root} ({'; '.join(said[:4])}{'; ...' if len(said) > 4 else ''})")


def _read_meta(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "synthetic.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class _locked:
    """An exclusive lock on ``root/.synthetic.lock`` (several DDP ranks may build the same set)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.f: Any = None

    def __enter__(self) -> None:
        if self.root.is_dir() and fcntl is not None:
            self.f = open(self.root / ".synthetic.lock", "a")
            fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *exc: Any) -> None:
        if self.f is not None and fcntl is not None:
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()
