"""``union``: several data sets read as one, e.g. a run's own data plus the species ``fgvc.extend`` added to it.

``data.args.parts`` lists the parts in order, each ``{name, root, args, shots, seed}``: ``name`` a registered
reader (``cub200``, ``flowers102``, ``folder``, ``csv``, ...; not ``union``), ``root`` its root (relative roots are
taken relative to ``data.root``), ``args`` its own ``data.args``. The classes are the parts' classes in order (part
1's labels first, then part 2's, offset by part 1's class count, ...), so a model trained on part 1 keeps its labels.
Two parts may not share a class name (compared ignoring case, spaces and underscores): that is a
:class:`~fgvc.errors.DataError` naming both.

``shots`` (optional) limits a part's *training* splits (``train``, ``trainval``) to that many images per class: the
first ``shots`` of each class in a fixed order seeded by ``seed`` (:func:`first_shots`), the same order every time;
a class with fewer images is an error that names it and its count. ``shots: 0`` keeps no training image of the
part (its classes stay in the class list). Validation and test splits are never limited.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fgvc.data.base import DataError, Sample, SplitContents
from fgvc.data.readers import check_args, reader
from fgvc.registry import DATASETS, RegistryError

__all__ = ["read_union", "first_shots", "short_classes", "class_clashes", "part_root", "PART_KEYS", "SHOT_SPLITS"]

PART_KEYS = ("name", "root", "args", "shots", "seed")
SHOT_SPLITS = ("train", "trainval")


def _key(name: str) -> str:
    return " ".join(str(name).replace("_", " ").split()).casefold()


def class_clashes(first: Sequence[str], second: Sequence[str]) -> list[tuple[str, str]]:
    """``(name in second, name in first)`` for every class of ``second`` that ``first`` has too (case, spaces and
    underscores ignored: ``Blue_Jay`` and ``blue jay`` are one species)."""
    seen = {_key(c): c for c in first}
    return [(c, seen[_key(c)]) for c in second if _key(c) in seen]


def first_shots(labels: Sequence[int], shots: int, seed: int) -> list[int]:
    """Indices (ascending) of the first ``shots`` images of every class in a fixed order: class ``c``'s images in
    the permutation drawn from ``numpy.random.default_rng([seed, c])``, so adding a class or an image of another
    class moves no class's shots. A class with fewer images keeps all of them (see :func:`short_classes`)."""
    labels = np.asarray(labels, dtype=np.int64)
    keep: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        order = np.random.default_rng([int(seed) % 2**32, int(c) % 2**32]).permutation(len(idx))
        keep += idx[order[:shots]].tolist()
    return sorted(keep)


def short_classes(labels: Sequence[int], num_classes: int, shots: int) -> list[tuple[int, int]]:
    """``(class index, images)`` for every class with fewer than ``shots`` images among ``labels``."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    return [(c, int(n)) for c, n in enumerate(counts.tolist()) if n < shots]


def part_root(root: str | Path, part: Mapping[str, Any]) -> Path:
    """The part's root: absolute as given, or relative to the union's ``data.root``."""
    p = Path(str(part["root"])).expanduser()
    return p if p.is_absolute() else Path(root) / p


def _check_part(i: int, part: Any) -> None:
    where = f"data.args.parts[{i}]"
    if not isinstance(part, Mapping) or "name" not in part or "root" not in part:
        raise DataError(f"{where} must be a mapping with at least name and root, e.g. {{name: cub200, root: "
                        f"datasets}}; got {part!r}")
    unknown = [k for k in part if k not in PART_KEYS]
    if unknown:
        raise DataError(f"{where} has unknown key(s) {unknown}; a part takes {', '.join(PART_KEYS)}")
    if str(part["name"]).lower() == "union":
        raise DataError(f"{where}.name is 'union': list the parts of that union here instead")
    shots = part.get("shots")
    if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool) or shots < 0):
        raise DataError(f"{where}.shots must be a whole number >= 0 (images per class of the training splits) or "
                        f"null, got {shots!r}")


def _read_part(i: int, root: Path, split: str, part: Mapping[str, Any]) -> SplitContents:
    args = dict(part.get("args") or {})
    try:
        check_args(part["name"], args)
    except RegistryError as exc:
        raise RegistryError(f"data.args.parts[{i}] ({part['name']} at {root}): {exc}") from None
    return DATASETS.get(part["name"])(root, split, **args)


def _limit(i: int, root: Path, contents: SplitContents, shots: int, seed: int) -> list[Sample]:
    labels = [s.label for s in contents.samples]
    short = short_classes(labels, len(contents.classes), shots)
    if short:
        listed = ", ".join(f"'{contents.classes[c]}' ({n})" for c, n in short)
        raise DataError(f"{len(short)} class(es) of {root} have fewer training images than the {shots} shots asked "
                        f"for (data.args.parts[{i}].shots, fgvc.extend --shots or --rehearsal): {listed}; ask for "
                        f"at most {min(n for _, n in short)} shots or add images to those classes")
    return [contents.samples[j] for j in first_shots(labels, shots, seed)]


@reader("union")
def read_union(root: str | Path, split: str, /, *, parts: Sequence[Mapping[str, Any]] = ()) -> SplitContents:
    """The parts' ``split`` as one data set (see the module docstring). ``info``: ``parts`` (name, root, classes,
    offset and images of each part) and ``class_offsets``."""
    if not parts:
        raise DataError("data.name=union needs data.args.parts, a list of {name, root, args, shots, seed}, e.g. "
                        "[{name: cub200, root: datasets}, {name: folder, root: new_birds, shots: 5}]")
    samples: list[Sample] = []
    classes: list[str] = []
    owner: list[str] = []  # the part each class came from, for the clash message
    described, listed, fixes, crop, empty_is_error, hflip = [], [], [], False, False, None
    for i, part in enumerate(parts):
        _check_part(i, part)
        proot = part_root(root, part)
        contents = _read_part(i, proot, split, part)
        clash = class_clashes(classes, contents.classes)
        if clash:
            new, old = clash[0]
            raise DataError(f"class '{new}' of {proot} ({part['name']}, data.args.parts[{i}]) is also class '{old}' "
                            f"of {owner[classes.index(old)]}: the parts of a union must have different classes; "
                            f"rename or remove one of them ({len(clash)} clash(es) in all)")
        chosen = contents.samples
        if part.get("shots") is not None and split in SHOT_SPLITS:
            chosen = _limit(i, proot, contents, int(part["shots"]), int(part.get("seed") or 0))
        offset = len(classes)
        keep_box = contents.crop_to_bbox
        samples += [replace(s, label=s.label + offset, bbox=s.bbox if keep_box else None) for s in chosen]
        crop = crop or contents.crop_to_bbox
        classes += list(contents.classes)
        owner += [f"{proot} ({part['name']}, data.args.parts[{i}])"] * len(contents.classes)
        listed.append(contents.listed_by)
        fixes.append(contents.missing_fix)
        empty_is_error = empty_is_error or contents.empty_is_error
        hflip = hflip or contents.hflip_problem
        described.append({"name": str(part["name"]), "root": str(proot), "classes": len(contents.classes),
                          "offset": offset, "images": len(chosen), "shots": part.get("shots")})
    return SplitContents(samples, classes, " + ".join(listed), "; ".join(dict.fromkeys(fixes)), crop_to_bbox=crop,
                         empty_is_error=empty_is_error, hflip_problem=hflip,
                         info={"parts": described, "class_offsets": [p["offset"] for p in described]})
