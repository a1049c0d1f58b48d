"""Data set command line: fetch, make-synthetic, check, info.

    python -m fgvc.datasets fetch cub200 [--root datasets] [--archive CUB_200_2011.tgz]
    python -m fgvc.datasets fetch flowers102 [--root datasets/flowers102] [--archive DIR_OR_TGZ]
    python -m fgvc.datasets make-synthetic --output datasets/synthetic [--num-classes 10 --images-per-class 200]
    python -m fgvc.datasets check auto datasets            # every bad annotation line and image; exit 1 on errors
    python -m fgvc.datasets info cub200 datasets           # per-split and per-class counts

Readers: CUB-200-2011 (Wah et al. 2011), Oxford Flowers 102 (Nilsback and Zisserman 2008), image folders,
CSV manifests and a synthetic fine-grained set. Data errors print one line and exit with status 2.
Flags follow the project's convention: ``--output DIR`` names a directory to write, ``--out FILE`` one file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main"]

NAMES = ("cub200", "flowers102", "folder", "csv", "synthetic")


class _DeprecatedAlias(argparse.Action):
    """A hidden old spelling of a flag: stores into the new flag's ``dest`` and says so on stderr."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fgvc.datasets", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fetch", help="download, verify and extract an official data set")
    f.add_argument("name", choices=["cub200", "flowers102"])
    f.add_argument("--root", default=None, help="target folder (default: datasets for cub200, "
                                                "datasets/flowers102 for flowers102)")
    f.add_argument("--archive", default=None, help="install from a local archive (or a folder of the official files)")
    f.add_argument("--force", action="store_true", help="install despite an md5 mismatch / replace a partial copy")
    f.add_argument("--no-progress", action="store_true")

    m = sub.add_parser("make-synthetic", help="write the synthetic fine-grained set (CUB layout)")
    where = m.add_mutually_exclusive_group(required=True)  # --out: the old spelling, hidden
    where.add_argument("--output", metavar="DIR", help="the folder to write the set into")
    where.add_argument("--out", dest="output", action=_DeprecatedAlias, new="--output DIR (--out is for a single file)")
    m.add_argument("--num-classes", type=int, default=10)
    m.add_argument("--images-per-class", type=int, default=200)
    m.add_argument("--render-size", type=int, default=128,
                   help="image size on disk, px (the network's input crop is the recipe's data.img_size)")
    m.add_argument("--img-size", dest="render_size", type=int, action=_DeprecatedAlias, new="--render-size")
    m.add_argument("--part-size-frac", type=float, default=0.08)
    m.add_argument("--test-fraction", type=float, default=0.5)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--no-progress", action="store_true")

    c = sub.add_parser("check", help="report every annotation and image problem")
    c.add_argument("name", metavar="NAME_OR_AUTO", choices=["auto", *NAMES])
    c.add_argument("root")
    c.add_argument("--manifest", default=None, help="csv: the manifest (relative to ROOT)")
    c.add_argument("--max-print", type=int, default=0, help="print at most this many problems (0: all)")
    c.add_argument("--no-progress", action="store_true")

    i = sub.add_parser("info", help="per-split and per-class image counts")
    i.add_argument("name", choices=NAMES)
    i.add_argument("root")
    i.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a data.args entry, e.g. --arg val_fraction=0.2 (repeatable; values parsed as YAML)")
    return p


def _fetch(a: argparse.Namespace) -> int:
    from fgvc.data.download import fetch

    fetch(a.name, a.root, a.archive, progress=not a.no_progress, force=a.force)
    return 0


def _make_synthetic(a: argparse.Namespace) -> int:
    from fgvc.data.synthetic import make_synthetic

    out = make_synthetic(a.output, a.num_classes, a.images_per_class, a.render_size, a.part_size_frac,
                         a.test_fraction, a.seed, progress=not a.no_progress)
    print(f"synthetic set written to {out} (read it with data.name=cub200 or synthetic, data.root={out})")
    return 0


def _check(a: argparse.Namespace) -> int:
    from fgvc.data.check import check_dataset, detect_layout, summarize

    name = detect_layout(Path(a.root)) if a.name == "auto" else a.name
    kwargs: dict[str, Any] = {"manifest": a.manifest} if a.manifest else {}
    print(f"checking {name} at {a.root}", file=sys.stderr)
    problems = check_dataset(name, a.root, progress=not a.no_progress, **kwargs)
    shown = problems if a.max_print <= 0 else problems[: a.max_print]
    for p in shown:
        print(p)
    if len(shown) < len(problems):
        print(f"... and {len(problems) - len(shown)} more (--max-print 0 prints all)")
    print(summarize(problems))
    errors = sum(p.severity == "error" for p in problems)
    print(f"{errors} error(s): " + ("fix them, or set data.on_bad_image=skip to skip bad images" if errors else "ok"))
    return 1 if errors else 0


def _info(a: argparse.Namespace) -> int:
    from fgvc.config import parse_yaml
    from fgvc.data import DataError, build_dataset

    kwargs: dict[str, Any] = {}
    for item in a.arg:
        if "=" not in item:
            raise DataError(f"--arg expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        kwargs[k] = parse_yaml(v)
    sets = {}
    for split in ("train", "val", "test", "trainval"):
        try:
            sets[split] = build_dataset(a.name, a.root, split, **kwargs)
        except DataError as e:
            print(f"{split:8s}  unavailable: {e}")
    if not sets:
        return 2
    first = next(iter(sets.values()))
    print(f"{a.name} at {a.root}: {first.num_classes} classes")
    print(f"{'split':8s}  {'images':>7s}  {'classes':>7s}  {'min/cls':>7s}  {'max/cls':>7s}")
    for split, ds in sets.items():
        cc = ds.class_counts()
        print(f"{split:8s}  {len(ds):7d}  {int((cc > 0).sum()):7d}  {int(cc.min()):7d}  {int(cc.max()):7d}")
    counts = {s: ds.class_counts() for s, ds in sets.items()}
    width = max(len(c) for c in first.classes)
    print("\n" + f"{'label':>5s}  {'class':{width}s}  " + "  ".join(f"{s:>8s}" for s in counts))
    for k, cls in enumerate(first.classes):
        print(f"{k:5d}  {cls:{width}s}  " + "  ".join(f"{int(c[k]):8d}" for c in counts.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from fgvc.data.base import DataError
    from fgvc.registry import RegistryError

    handler = {"fetch": _fetch, "make-synthetic": _make_synthetic, "check": _check, "info": _info}[args.command]
    try:
        return handler(args)
    except (DataError, RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # bad argument values (e.g. make-synthetic --num-classes 100)
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
