"""Drawing one image of the synthetic fine-grained set (see :mod:`fgvc.data.synthetic`).

An image: a cluttered random background; a "body" (a shaded ellipse of random colour, size, position and
orientation); the discriminative part (a square patch whose *pattern*, shape x texture x outline, is the
class, in random colours) and one or two distractor parts of the same size, on or near the body.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["render", "mirror", "PATTERNS", "SHAPES", "TEXTURES", "OUTLINES"]

SHAPES = ("Square", "Disk", "Triangle", "Diamond")
TEXTURES = ("Hstripes", "Vstripes", "Slash", "Backslash", "Checker", "Dots")
OUTLINES = ("Plain", "Framed")
PATTERNS = [(s, t, o) for s in SHAPES for t in TEXTURES for o in OUTLINES]  # 48


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


def render(pattern: tuple[str, str, str], distractors: list[tuple[str, str, str]], render_size: int,
           part_size_frac: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, tuple[float, float, float, float], tuple[float, float]]:
    """One image ``H, W, 3`` uint8, the body box (x, y, w, h) and the discriminative part's centre."""
    S = render_size
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
