"""A deterministic synthetic fine-grained data set in the CUB-200-2011 layout (Wah et al. 2011).

Each image: a cluttered random background; a "body" (a shaded ellipse of random colour, size, position and
orientation, identical in distribution for every class); one small discriminative part (a square patch
whose *pattern* is the class: shape x texture x outline, in random colours) on or near the body; and one or
two distractor parts of the same size whose patterns belong to no class. Only the part's pattern is
informative: colours, the body, the clutter and the presence of parts are not, so global colour statistics
do not give the class away, while a CNN that looks at the right patch does.

``bounding_boxes.txt`` holds the body's box and ``parts/part_locs.txt`` the discriminative part's centre as
part 1 (the other 14 parts are ``0 0 0``), so box cropping and part supervision can be tested.

:func:`render_images` computes the images (drawn by :mod:`fgvc.data.synthetic_draw`) and their annotations,
:func:`make_synthetic` writes them; :func:`read_synthetic` is the ``synthetic`` reader, which generates the
set on first use and reads it as CUB-200-2011.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from fgvc.data.base import DataError, DatasetNotFoundError, SplitContents
from fgvc.data.cub import cub_split
from fgvc.data.readers import reader
from fgvc.data.synthetic_draw import PATTERNS, mirror, render

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock between processes
    fcntl = None  # type: ignore[assignment]

__all__ = ["make_synthetic", "render_images", "read_synthetic", "ensure_synthetic", "hflip_problem", "SyntheticImage",
           "PATTERNS", "VERSION", "mirror"]

VERSION = 1
MIN_DISTRACTOR_PATTERNS = 8
NUM_PARTS = 15
_OWN_FILES = {"CUB_200_2011", "synthetic.json", "README.md", ".synthetic.lock"}
RENAMED_IMG_SIZE = ("it is the size the synthetic images are rendered at on disk, not the network's input crop "
                    "(that is data.img_size)")


def _class_name(pattern: tuple[str, str, str]) -> str:
    return "_".join(pattern)


def _assign_patterns(num_classes: int, seed: int) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    if not 1 <= num_classes <= len(PATTERNS) - MIN_DISTRACTOR_PATTERNS:
        raise DataError(f"num_classes must be in 1..{len(PATTERNS) - MIN_DISTRACTOR_PATTERNS} (there are "
                         f"{len(PATTERNS)} part patterns and {MIN_DISTRACTOR_PATTERNS} stay distractors), "
                         f"got {num_classes}")
    order = np.random.default_rng([seed % 2**32, 7]).permutation(len(PATTERNS))
    pats = [PATTERNS[i] for i in order]
    return pats[:num_classes], pats[num_classes:]


@dataclass(frozen=True)
class SyntheticImage:
    """The annotations of one generated image (its row in every annotation file)."""

    rel_path: str  # under CUB_200_2011/images/
    class_id: int  # 1-based, as in classes.txt
    is_train: int  # 1 = train, 0 = test
    box: tuple[float, float, float, float]  # the body's box: x, y, w, h
    part: tuple[float, float]  # the discriminative part's centre


def _check_arguments(images_per_class: int, render_size: int, part_size_frac: float, test_fraction: float) -> None:
    if images_per_class < 2 or render_size < 32 or not 0 < part_size_frac <= 0.1 or not 0 < test_fraction < 1:
        raise DataError("need images_per_class >= 2, render_size >= 32, 0 < part_size_frac <= 0.1 and "
                         f"0 < test_fraction < 1; got {images_per_class}, {render_size}, {part_size_frac}, "
                         f"{test_fraction}")


def _class_folders(classes: list[tuple[str, str, str]]) -> list[str]:
    return [f"{c + 1:03d}.{_class_name(p)}" for c, p in enumerate(classes)]


def render_images(classes: list[tuple[str, str, str]], distractors: list[tuple[str, str, str]],
                  images_per_class: int, render_size: int, part_size_frac: float, test_fraction: float, seed: int
                  ) -> Iterator[tuple[SyntheticImage, np.ndarray]]:
    """Every image of the set, class by class, with its ``render_size`` square ``H, W, 3`` uint8 pixels;
    nothing is written.

    Each class draws its test images and each image its content from generators seeded by (seed, class,
    image), so the same arguments give the same images."""
    folders = _class_folders(classes)
    n_test = int(round(test_fraction * images_per_class))
    for c, pattern in enumerate(classes):
        is_test = np.zeros(images_per_class, dtype=bool)
        is_test[np.random.default_rng([seed % 2**32, 11, c]).permutation(images_per_class)[:n_test]] = True
        for j in range(images_per_class):
            rng = np.random.default_rng([seed % 2**32, 13, c, j])
            k = int(rng.integers(1, 3))
            chosen = [distractors[i] for i in rng.choice(len(distractors), size=k, replace=False)]
            pixels, box, centre = render(pattern, chosen, render_size, part_size_frac, rng)
            rel = f"{folders[c]}/{_class_name(pattern)}_{j + 1:04d}.jpg"
            yield SyntheticImage(rel, c + 1, 0 if is_test[j] else 1, box, centre), pixels


def _write_images(d: Path, images: Iterable[tuple[SyntheticImage, np.ndarray]], total: int, progress: bool
                  ) -> list[SyntheticImage]:
    """Save each image as ``d/images/<rel_path>`` (JPEG, quality 92); returns their annotations in order."""
    written: list[SyntheticImage] = []
    bar = _bar(total, progress)
    for image, pixels in images:
        path = d / "images" / image.rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=92)
        written.append(image)
        bar.update(1)
    bar.close()
    return written


def _write_annotations(d: Path, images: list[SyntheticImage], folders: list[str]) -> None:
    """The CUB-200-2011 annotation files of ``images`` (image ids 1..N in order) under ``d``."""
    ids = range(1, len(images) + 1)
    _write(d / "images.txt", (f"{i} {m.rel_path}" for i, m in zip(ids, images)))
    _write(d / "image_class_labels.txt", (f"{i} {m.class_id}" for i, m in zip(ids, images)))
    _write(d / "train_test_split.txt", (f"{i} {m.is_train}" for i, m in zip(ids, images)))
    _write(d / "classes.txt", (f"{c + 1} {f}" for c, f in enumerate(folders)))
    _write(d / "bounding_boxes.txt",
           (f"{i} {m.box[0]:.1f} {m.box[1]:.1f} {m.box[2]:.1f} {m.box[3]:.1f}" for i, m in zip(ids, images)))
    (d / "parts").mkdir(parents=True, exist_ok=True)
    _write(d / "parts" / "parts.txt", ["1 pattern", *(f"{p} unused_{p}" for p in range(2, NUM_PARTS + 1))])
    _write(d / "parts" / "part_locs.txt", (
        f"{i} {p} " + (f"{m.part[0]:.1f} {m.part[1]:.1f} 1" if p == 1 else "0 0 0")
        for i, m in zip(ids, images) for p in range(1, NUM_PARTS + 1)))


def _publish(d: Path, out: Path, meta: dict[str, Any]) -> None:
    """Move the finished ``d`` to ``out/CUB_200_2011`` and write ``README.md`` and (last) ``synthetic.json``."""
    (out / "synthetic.json").unlink(missing_ok=True)  # the marker goes last: no half set looks complete
    shutil.rmtree(out / "CUB_200_2011", ignore_errors=True)
    os.replace(d, out / "CUB_200_2011")
    (out / "README.md").write_text(_README.format(**meta), encoding="utf-8")
    (out / "synthetic.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def make_synthetic(
    out: str | Path,
    num_classes: int = 10,
    images_per_class: int = 200,
    render_size: int = 128,
    part_size_frac: float = 0.08,
    test_fraction: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the synthetic set into ``out`` (``out/CUB_200_2011``, ``out/synthetic.json``, ``out/README.md``)
    and return ``out``. Images are ``render_size`` px squares on disk (the network's input crop is the
    recipe's ``data.img_size``); ``part_size_frac`` is each part's area as a fraction of the image (0.08: a
    36 px square at 128 px). The same arguments give byte-identical files. An existing synthetic set in
    ``out`` is replaced; anything else there is refused."""
    out = Path(out)
    _check_arguments(images_per_class, render_size, part_size_frac, test_fraction)
    classes, distractors = _assign_patterns(num_classes, seed)
    if out.exists() and (out / "CUB_200_2011").exists() and not (out / "synthetic.json").is_file():
        raise DataError(f"{out / 'CUB_200_2011'} exists and is not a synthetic set (no {out / 'synthetic.json'}); "
                        "refusing to overwrite it: choose another --output")
    folders = _class_folders(classes)
    meta = {"generator": "fgvc.data.synthetic", "version": VERSION, "num_classes": num_classes,
            "images_per_class": images_per_class, "render_size": render_size, "part_size_frac": part_size_frac,
            "test_fraction": test_fraction, "seed": seed, "images": num_classes * images_per_class,
            "classes": {f: list(p) for f, p in zip(folders, classes)},
            "distractor_patterns": [list(p) for p in distractors]}
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-tmp-", dir=out))
    try:
        d = tmp / "CUB_200_2011"
        images = render_images(classes, distractors, images_per_class, render_size, part_size_frac, test_fraction,
                               seed)
        _write_annotations(d, _write_images(d, images, meta["images"], progress), folders)
        _publish(d, out, meta)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


_README = """# Synthetic fine-grained set (fgvc.data.synthetic v{version})

{num_classes} classes x {images_per_class} images at {render_size} px, seed {seed}, test fraction {test_fraction},
part area {part_size_frac} of the image. CUB-200-2011 layout; the class is the pattern of one small part
(shape x texture x outline), the body's box is in bounding_boxes.txt and the part's centre is part 1 in
parts/part_locs.txt. Regenerate with `python -m fgvc.datasets make-synthetic --output DIR`.
"""


def _write(path: Path, lines: Any) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _bar(total: int, progress: bool) -> Any:
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="synthetic", unit="img", disable=not (progress and sys.stderr.isatty()))


def hflip_problem(meta: dict[str, Any], root: Path) -> str | None:
    """Why a horizontal flip changes the class of the set at ``root`` whose ``synthetic.json`` says ``meta``,
    or None. Slash and Backslash stripes are mirror images: flipping such a part gives another class's
    pattern (or a distractor's), so a flip augmentation would teach the model to confuse them."""
    classes = {tuple(p): name for name, p in meta.get("classes", {}).items()}
    distractors = {tuple(p) for p in meta.get("distractor_patterns", [])}
    swaps = sorted({tuple(sorted((name, classes[mirror(p)]))) for p, name in classes.items()
                    if mirror(p) != p and mirror(p) in classes})
    into_distractor = sorted(name for p, name in classes.items() if mirror(p) != p and mirror(p) in distractors)
    if not swaps and not into_distractor:
        return None
    said = [f"{a} <-> {b}" for a, b in swaps] + [f"{n} -> a distractor" for n in into_distractor]
    return (f"a horizontal flip changes the class pattern of {len(said)} class(es) of the synthetic set at "
            f"{root} ({'; '.join(said[:4])}{'; ...' if len(said) > 4 else ''})")


def ensure_synthetic(root: Path, generate: bool, num_classes: int, images_per_class: int, render_size: int,
                     seed: int) -> dict[str, Any]:
    """The ``synthetic.json`` of the set at ``root``, generating the set first when it is absent or was made
    with other parameters (only when ``generate``, and only into a folder that holds nothing else)."""
    want = {"version": VERSION, "num_classes": num_classes, "images_per_class": images_per_class,
            "render_size": render_size, "seed": seed}
    make = (f"`python -m fgvc.datasets make-synthetic --output {root} --num-classes {num_classes} "
            f"--images-per-class {images_per_class} --render-size {render_size} --seed {seed}`")
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
            make_synthetic(root, num_classes, images_per_class, render_size, seed=seed, progress=True)
            meta = _read_meta(root)
    return meta or {}


@reader("synthetic", renamed={"img_size": ("render_size", RENAMED_IMG_SIZE)})
def read_synthetic(root: str | Path, split: str, /, *, generate: bool = True, num_classes: int = 10,
                   images_per_class: int = 200, render_size: int = 128, seed: int = 0, val_fraction: float = 0.1,
                   crop_to_bbox: bool = False) -> SplitContents:
    """The synthetic set, generated into ``root`` on first use (when ``generate``), read as CUB-200-2011.

    ``render_size``: the size images are rendered at on disk (not ``data.img_size``, the network's crop).
    ``info``: as for cub200, plus ``meta`` (the generator's parameters, class and distractor patterns)."""
    root = Path(root)
    meta = ensure_synthetic(root, generate, num_classes, images_per_class, render_size, seed)
    contents = cub_split("synthetic", root, split, crop_to_bbox, val_fraction, seed, load_parts=True)
    return replace(contents, hflip_problem=hflip_problem(meta, root), info={**contents.info, "meta": meta})


def _read_meta(root: Path) -> dict[str, Any] | None:
    """``root/synthetic.json`` (None when absent or unreadable); a set made before the rename says
    ``img_size`` for ``render_size`` and is read as such."""
    try:
        meta = json.loads((root / "synthetic.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    if "render_size" not in meta and "img_size" in meta:
        meta["render_size"] = meta.pop("img_size")
    return meta


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
