"""Data set command line: fetch, make-synthetic, check, info, audit, cache, convert.

    python -m fgvc.datasets fetch cub200 [--root datasets] [--archive CUB_200_2011.tgz]
    python -m fgvc.datasets fetch flowers102 [--root datasets/flowers102] [--archive DIR_OR_TGZ]
    python -m fgvc.datasets make-synthetic --output datasets/synthetic [--num-classes 10 --images-per-class 200]
    python -m fgvc.datasets check auto datasets            # every bad annotation line and image; exit 1 on errors
    python -m fgvc.datasets info cub200 datasets           # per-split and per-class counts
    python -m fgvc.datasets audit auto datasets [--run RUN_DIR] --output audit/   # duplicates, leakage, outliers
    python -m fgvc.datasets cache datasets --max-side 512 [--output DIR] [--check]  # pre-resized copies
    python -m fgvc.datasets convert auto datasets --to folder --output DIR [--copy]  # or --to cub200

Readers: CUB-200-2011 (Wah et al. 2011), Oxford Flowers 102 (Nilsback and Zisserman 2008), image folders,
CSV manifests and a synthetic fine-grained set. ``audit`` finds exact and near duplicates (DCT pHash, Zauner 2010)
within and across splits (leakage), unreadable images and size outliers, and with ``--run`` likely mislabelled
images (a confident model and its k nearest training neighbours disagree with the label); see
:mod:`fgvc.data.audit`. Data errors print one line and exit with status 2.
Flags follow the project's convention: ``--output DIR`` names a directory to write, ``--out FILE`` one file.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from fgvc.cli import add_checkpoint, add_output, friendly
from fgvc.config import parse_yaml
from fgvc.data import DataError, build_dataset
from fgvc.data.audit import audit_dataset
from fgvc.data.cache import build_cache, check_cache
from fgvc.data.check import check_dataset, detect_layout, summarize
from fgvc.data.convert import convert
from fgvc.data.download import fetch
from fgvc.data.phash import DEFAULT_MAX_DISTANCE
from fgvc.data.synthetic import make_synthetic
from fgvc.errors import CheckFailed
from fgvc.protocols.mislabel_check import load_audit_run, model_mislabels
from fgvc.vis.audit_report import summary_paragraph, write_all

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
    au = sub.add_parser("audit", help="duplicates and train/test leakage, unreadable images, size outliers and (with "
                                      "--run) likely mislabelled images -> findings.csv, summary.json, audit.html")
    au.add_argument("name", metavar="NAME_OR_AUTO", choices=["auto", *NAMES])
    au.add_argument("root")
    add_output(au, "the folder to write the findings into", required=True, metavar="DIR")
    au.add_argument("--run", metavar="RUN_DIR", default=None,
                    help="a trained run: also flag images whose label the model and its nearest training images "
                         "confidently contradict (the run's data.args are used; auto takes its data set name)")
    add_checkpoint(au)
    au.add_argument("--max-distance", type=int, default=None,
                    help="pHash Hamming distance (of 64 bits) up to which images are near duplicates (default 6)")
    au.add_argument("--confidence", type=float, default=0.8, help="with --run: min max-softmax probability")
    au.add_argument("--k", type=int, default=5, help="with --run: neighbours among the training images")
    au.add_argument("--min-agree", type=int, default=3, help="with --run: neighbours that must share the prediction")
    au.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                    help="a data.args entry, as for info (repeatable)")
    au.add_argument("--workers", type=int, default=2, help="threads decoding images")
    au.add_argument("--no-progress", action="store_true")

    ca = sub.add_parser("cache", help="pre-resized, bit-identical copies of every image under ROOT that readers use "
                                      "transparently (recipe key data.cache), with an md5 manifest; rerun to bring "
                                      "it up to date")
    ca.add_argument("root", help="the data set's root (data.root)")
    ca.add_argument("--max-side", type=int, required=True,
                    help="shorter side of the copies in px: exactly the recipe's resize before the crop (data.resize, "
                         "or img_size / crop_pct: 184 for the CPU recipes, 512 for 448-px ones); only recipes "
                         "with that resize use them; images already that small are not copied")
    add_output(ca, "cache folder (default ROOT/.fgvc_cache; set data.cache to DIR when you give one)", metavar="DIR")
    ca.add_argument("--check", action="store_true", help="md5-verify sources and copies against the manifest; "
                                                        "write nothing, exit 1 when anything is stale")
    ca.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes resizing images")
    ca.add_argument("--no-progress", action="store_true")

    cv = sub.add_parser("convert", help="write a data set as class folders or in the CUB-200-2011 layout (links to "
                                        "the images; see fgvc.data.convert)")
    cv.add_argument("name", metavar="NAME_OR_AUTO", help=f"auto, or one of {', '.join(NAMES)}")
    cv.add_argument("root")
    cv.add_argument("--to", required=True, choices=["folder", "cub200"],
                    help="folder: OUT/<split>/<class>/<file>; cub200: OUT/CUB_200_2011/ (val goes to train)")
    add_output(cv, "a new (or empty) folder to write into", required=True, metavar="DIR")
    cv.add_argument("--copy", action="store_true", help="copy the images instead of linking to them")
    return p


def _data_args(items: Sequence[str]) -> dict[str, Any]:
    """``--arg KEY=VALUE`` items as data.args (values parsed as YAML)."""
    kwargs: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise DataError(f"--arg expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        kwargs[k] = parse_yaml(v)
    return kwargs


def _fetch(a: argparse.Namespace) -> None:
    fetch(a.name, a.root, a.archive, progress=not a.no_progress, force=a.force)


def _make_synthetic(a: argparse.Namespace) -> None:
    out = make_synthetic(a.output, a.num_classes, a.images_per_class, a.render_size, a.part_size_frac,
                         a.test_fraction, a.seed, progress=not a.no_progress)
    print(f"synthetic set written to {out} (read it with data.name=cub200 or synthetic, data.root={out})")


def _check(a: argparse.Namespace) -> None:
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
    if errors:
        raise CheckFailed(f"{errors} error(s) in {a.root}: fix them, or set data.on_bad_image=skip to skip bad images")
    print("0 error(s): ok")


def _info(a: argparse.Namespace) -> None:
    kwargs = _data_args(a.arg)
    sets = {}
    for split in ("train", "val", "test", "trainval"):
        try:
            sets[split] = build_dataset(a.name, a.root, split, **kwargs)
        except DataError as e:
            print(f"{split:8s}  unavailable: {e}")
    if not sets:
        raise DataError(f"no split of {a.name} at {a.root} could be read (each one's reason is above)")
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


def _audit(a: argparse.Namespace) -> None:
    run, name, kwargs = (load_audit_run(a.run, a.checkpoint, a.root, a.name, a.arg) if a.run
                         else (None, a.name, _data_args(a.arg)))
    distance = DEFAULT_MAX_DISTANCE if a.max_distance is None else a.max_distance
    if name == "auto":
        name = detect_layout(a.root)
    print(f"auditing {name} at {a.root}", file=sys.stderr)
    audit = audit_dataset(name, a.root, kwargs, distance, progress=not a.no_progress, workers=a.workers)
    if run is not None:
        audit.findings += model_mislabels(run, audit, a.k, a.confidence, a.min_agree, a.run)
        audit.settings["mislabel"] = {"run": str(a.run), "checkpoint": a.checkpoint, "confidence": a.confidence,
                                      "k": a.k, "min_agree": a.min_agree}
    out = write_all(audit, a.output)
    print(summary_paragraph(audit, out))


def _cache(a: argparse.Namespace) -> None:
    if a.check:
        report = check_cache(a.root, a.max_side, a.output)
        print("\n".join(report.lines()))
        stale = report.stale or report.added or report.removed or report.bad_copies
        if stale:
            raise CheckFailed(f"the cache of {a.root} is stale: rerun without --check to rebuild")
        print("ok")
        return
    report = build_cache(a.root, a.max_side, a.output, workers=a.workers, progress=not a.no_progress)
    print("\n".join(report.lines()))
    where = "" if a.output is None else f" (set data.cache={report.level.parent} in the recipe)"
    print(f"recipes resizing the shorter side to {a.max_side} px before the crop (data.resize, or img_size / crop_pct) "
          f"read these copies: the same pixels, decoded faster{where}")


def _convert(a: argparse.Namespace) -> None:
    print("\n".join(convert(a.name, a.root, a.to, a.output, copy=a.copy).lines()))


@friendly  # DataError, RegistryError, ConfigError, CheckpointError ... (fgvc.errors): one line, exit 2
def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    handler = {"fetch": _fetch, "make-synthetic": _make_synthetic, "check": _check, "info": _info,
               "audit": _audit, "cache": _cache, "convert": _convert}[args.command]
    handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
