"""``fgvc.extend`` against a nearest-class-mean classifier over ``fgvc.embed``'s features of the same run.

A tf_efficientnet_lite0 run trained on ../shared/data/cub200-mini (20 species) gets the 40 other species of
../shared/data/cub200-mid (read from a CUB-layout root of symlinks built under WORK: no image is copied) with 1 and
5 shots per species, over several draws of the shots (``fgvc.extend --shot-seed D``). Each draw is scored on the
test images of all 60 species, each predicted among all 60: new-species, old-species and all top-1.

The nearest-class-mean row uses ``python -m fgvc.embed`` output of the same run (old train and test splits, and the
new species' train and test splits): an old class is the mean of all its training embeddings, a new class the mean
of the embeddings of the very shots ``fgvc.extend`` used in that draw (checked by file name), cosine similarity,
all 60 classes at once.

``--new-species N`` adds only the first N of the 40 species by official class id (e.g. 20, the issue's setting):
``fgvc.extend`` reads a symlinked root of those N alone (WORK/new_species_N, its runs under WORK/extend_nN and
WORK/extend_<variant>_nN), and the replayed rows use the 40 species' embeddings subset to the N by class (nothing is
embedded again). Each setting writes its own section of ``--out`` (between markers; other sections are kept).

    python benchmarks/extend_ncm.py                       # trains WORK/run if it is missing, then everything
    python benchmarks/extend_ncm.py --run RUN --work /tmp/extend_ncm --shots 1 5 --draws 0 1 2 3 4
    python benchmarks/extend_ncm.py --run RUN --work /tmp/extend_ncm --new-species 20 --cli-draws 0

Finished extensions (WORK/extend/k<K>_d<D>/final.json) and embeddings (WORK/embed/*.npz) are reused. Writes a
Markdown table (machine, date, commands, seeds, the release issue's two bars) to ``--out`` and every number to the
same name with ``.json`` (``_newN.json`` with ``--new-species N``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fgvc.data.union import first_shots  # noqa: E402

SHARED = REPO.parent / "shared"
MINI, MID = SHARED / "data" / "cub200-mini", SHARED / "data" / "cub200-mid"
TRAIN_SETS = ["data.img_size=160", "train.epochs=6", "seed=0"]  # on top of recipes/cub200_lite0.yaml
COMMANDS: list[str] = []
LABELS = {"extend-imprinted": "`fgvc.extend` (the command, default; its final.json)",
          "imprint": "`fgvc.extend`'s default imprinting replayed on the `fgvc.embed` features",
          "extend-centred": "`fgvc.extend --old-weights centred` (the command; its final.json)",
          "centred": "`--old-weights centred` replayed on the `fgvc.embed` features",
          "ncm": "nearest-class-mean on the `fgvc.embed` features (the reference)"}


def sh(cmd: list[str], done: bool = False) -> None:
    """Run one fgvc command from the repository root, unless ``done`` (its output is there); either way it is
    recorded for the Markdown file."""
    line = " ".join(shlex.quote(c) for c in ["python", *cmd[1:]])
    COMMANDS.append(line + ("   # output found, reused" if done else ""))
    if not done:
        print("+", line, flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def new_species_root(mini: Path, mid: Path, out: Path, first: int | None = None) -> tuple[Path, int]:
    """A CUB root under ``out`` holding only the species of ``mid`` that ``mini`` lacks (only the ``first`` of them
    by official class id, when given): ``images/<class>`` symlinks to ``mid``'s folders and ``mid``'s annotation
    files filtered to their images. Returns (root, species)."""
    src, dst = mid / "CUB_200_2011", out / "CUB_200_2011"
    old = {name for _, name in _lines(mini / "CUB_200_2011" / "classes.txt")}
    new = {cid: name for cid, name in sorted(_lines(src / "classes.txt"), key=lambda r: int(r[0])) if name not in old}
    if first is not None:
        if not 0 < first <= len(new):
            raise SystemExit(f"--new-species {first}: {mid} has {len(new)} species the run lacks; give 1 to {len(new)}")
        new = dict(list(new.items())[:first])
    (dst / "images").mkdir(parents=True, exist_ok=True)
    for name in new.values():
        link = dst / "images" / name
        if not link.is_symlink():
            link.symlink_to(src / "images" / name, target_is_directory=True)
    (dst / "classes.txt").write_text("".join(f"{cid} {name}\n" for cid, name in new.items()))
    keep = {image for image, cid in _lines(src / "image_class_labels.txt") if cid in new}
    for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt"):
        rows = [line for line in (src / name).read_text().splitlines() if line.split() and line.split()[0] in keep]
        (dst / name).write_text("\n".join(rows) + "\n")
    return out, len(new)


def subset(full: dict[str, np.ndarray], full_root: Path, root: Path) -> dict[str, np.ndarray]:
    """``full`` (``fgvc.embed`` output over ``full_root``) restricted to the classes of the CUB root ``root`` (a
    subset of ``full_root``'s), relabelled in ``root``'s class order and with its paths under ``root``: what
    ``fgvc.embed`` over ``root`` writes, without embedding anything again."""
    names = [folder.split(".", 1)[-1] for _, folder in _lines(root / "CUB_200_2011" / "classes.txt")]
    where = {str(c): i for i, c in enumerate(full["classes"])}
    if missing := [n for n in names if n not in where]:
        raise SystemExit(f"{root}: species {missing} are not among the embedded {full_root} classes")
    relabel = np.full(len(full["classes"]), -1, dtype=np.int64)
    relabel[[where[n] for n in names]] = np.arange(len(names))
    keep = relabel[full["labels"]] >= 0
    prefix = str(full_root.resolve())
    paths = [str(p) for p in full["paths"][keep]]
    if not all(p.startswith(prefix) for p in paths):
        raise SystemExit(f"embedded paths are not under {prefix}; delete the embeddings to embed them again")
    return {"embeddings": full["embeddings"][keep], "labels": relabel[full["labels"][keep]],
            "paths": np.array([str(root.resolve()) + p[len(prefix):] for p in paths]),
            "classes": full["classes"][[where[n] for n in names]]}


def embed(run: Path, split: str, out: Path, root: Path | None = None) -> dict[str, np.ndarray]:
    sh([sys.executable, "-m", "fgvc.embed", str(run), "--split", split, "--out", str(out),
        *(["--set", f"data.root={root}"] if root else [])], done=out.is_file())
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def top1(old_train: dict, old_test: dict, new_train: dict, new_test: dict, shots: list[int],
         method: str) -> dict[str, float]:
    """(new, old, all) top-1 over the old and new test images, each predicted among all classes, of
    ``ncm``: cosine nearest-class-mean (old class = mean of all its training embeddings, new = mean of its shots);
    ``imprint``: fgvc.extend's imprinting of a linear head replayed on these features (:mod:`fgvc.continual.imprint`:
    every class the normalised mean of its normalised embeddings, cosine); ``centred``: ``--old-weights centred``
    (the same from embeddings minus the old training images' mean; logits ``s / u * (e - centre) . rows``, whose
    argmax does not depend on ``s``)."""
    import torch

    from fgvc.continual.imprint import imprinted_weights

    k_old, k_new = len(old_train["classes"]), len(new_train["classes"])
    e_old, e_new = old_train["embeddings"].astype(np.float64), new_train["embeddings"].astype(np.float64)
    x = np.concatenate([old_test["embeddings"], new_test["embeddings"]]).astype(np.float64)
    y = np.concatenate([old_test["labels"], new_test["labels"] + k_old])
    if method == "ncm":
        centres = np.concatenate([np.stack([e_old[old_train["labels"] == c].mean(0) for c in range(k_old)]),
                                  np.stack([e_new[shots][new_train["labels"][shots] == c].mean(0)
                                            for c in range(k_new)])])
        scores = _unit(x) @ _unit(centres).T
    else:
        centre = e_old.mean(0) if method == "centred" else np.zeros(e_old.shape[1])
        rows = imprinted_weights(torch.from_numpy(np.concatenate([e_old, e_new[shots]])),
                                 torch.from_numpy(np.concatenate([old_train["labels"],
                                                                  new_train["labels"][shots] + k_old])),
                                 k_old + k_new, centre=torch.from_numpy(centre)).double().numpy()
        scores = (x - centre) @ rows.T
    ok = scores.argmax(1) == y
    old = y < k_old
    return {"new_top1": 100 * ok[~old].mean(), "old_top1": 100 * ok[old].mean(), "top1": 100 * ok.mean()}


def extend(run: Path, root: Path, shots: int, draw: int, out: Path, extra: list[str]) -> dict[str, Any]:
    sh([sys.executable, "-m", "fgvc.extend", str(run), "--add", str(root), "--shots", str(shots),
        "--shot-seed", str(draw), *extra, "--output", str(out)], done=(out / "final.json").is_file())
    return json.loads((out / "final.json").read_text())


def extend_shots(out: Path, new_train: dict, k_old: int) -> list[int]:
    """Indices into ``new_train`` of the shots the extended run at ``out`` holds (its union train split)."""
    from fgvc.engine.inference import TrainedRun

    ds = TrainedRun.load(out).dataset("train", same_classes=False)
    index = {str(p): i for i, p in enumerate(new_train["paths"])}
    return sorted(index[str(s.path)] for s in ds.samples if s.label >= k_old)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    import torch

    return f"{platform.platform()}, {cpu}, {os.cpu_count()} cores, CPU only, torch {torch.__version__}"


def stats(rows: list[dict[str, float]], key: str) -> str:
    v = np.array([r[key] for r in rows])
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("runs/extend_ncm"), help="runs, embeddings and the new root")
    ap.add_argument("--run", type=Path, default=None, help="the trained cub200-mini run (default: WORK/run, trained "
                                                           "if missing)")
    ap.add_argument("--mini", type=Path, default=MINI)
    ap.add_argument("--mid", type=Path, default=MID)
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="--shot-seed of each draw")
    ap.add_argument("--cli-draws", type=int, nargs="*", default=None,
                    help="draws also run through the fgvc.extend command (default: all of --draws); the others are "
                         "replayed on the fgvc.embed features only")
    ap.add_argument("--cli-variants", nargs="*", default=["imprinted", "centred"],
                    help="fgvc.extend --old-weights values run through the command")
    ap.add_argument("--new-species", type=int, default=None, metavar="N",
                    help="add only the first N of the new species by official class id (default: all of them); "
                         "their embeddings are those of all the new species (embedded once) subset by class, "
                         "fgvc.extend runs on a symlinked root of the N alone (WORK/new_species_N)")
    ap.add_argument("--extend-args", default="", help="more fgvc.extend arguments, e.g. '--set train.device=cpu'")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "extend.md")
    args = ap.parse_args(argv)
    t0 = time.time()
    work = args.work.resolve()
    run = (args.run or work / "run").resolve()
    sh([sys.executable, "-m", "fgvc.train", "recipes/cub200_lite0.yaml", "--set", f"data.root={args.mini}",
        *TRAIN_SETS, "--output", str(run)], done=(run / "final.json").is_file())
    full_root, k_all = new_species_root(args.mini, args.mid, work / "new_species")
    emb = work / "embed"
    emb.mkdir(parents=True, exist_ok=True)
    old_train, old_test = embed(run, "train", emb / "old_train.npz"), embed(run, "test", emb / "old_test.npz")
    new_train = embed(run, "train", emb / "new_train.npz", full_root)
    new_test = embed(run, "test", emb / "new_test.npz", full_root)
    root, k_new, tag = full_root, k_all, ""
    if args.new_species is not None:
        tag = f"_n{args.new_species}"
        root, k_new = new_species_root(args.mini, args.mid, work / f"new_species_{args.new_species}", args.new_species)
        new_train, new_test = subset(new_train, full_root, root), subset(new_test, full_root, root)
        COMMANDS.append(f"# embeddings of {root}: those of {full_root} above, subset to its {k_new} species by "
                        "class (benchmarks/extend_ncm.py subset(); nothing embedded again)")
    k_old = len(old_train["classes"])
    own = json.loads((run / "final.json").read_text())
    rows: dict[str, list[dict[str, Any]]] = {}
    cli = args.draws if args.cli_draws is None else args.cli_draws
    for k in args.shots:
        for d in args.draws:
            shots = first_shots(new_train["labels"], k, d)
            for method in ("imprint", "centred", "ncm"):
                rows.setdefault(f"{method} k={k}", []).append(
                    {"draw": d, **top1(old_train, old_test, new_train, new_test, shots, method)})
    for variant, k, d in [(v, k, d) for v in args.cli_variants for k in args.shots for d in args.draws if d in cli]:
        # the slow part last: fgvc.extend itself (it embeds the old training and all test images)
        out = work / (("extend" if variant == "imprinted" else f"extend_{variant}") + tag) / f"k{k}_d{d}"
        final = extend(run, root, k, d, out, [*shlex.split(args.extend_args), "--old-weights", variant])
        if extend_shots(out, new_train, k_old) != first_shots(new_train["labels"], k, d):
            raise SystemExit(f"{out}: the extended run's shots are not first_shots(labels, {k}, {d})")
        rows.setdefault(f"extend-{variant} k={k}", []).append(
            {"draw": d, **{m: final[m] for m in ("new_top1", "old_top1", "top1", "cosine_scale")}})
        write(args, run, own, rows, k_old, new_test, k_all, len(old_test["labels"]), time.time() - t0)
    write(args, run, own, rows, k_old, new_test, k_all, len(old_test["labels"]), time.time() - t0)
    return 0


TITLE = ["# Adding species to a trained run: `fgvc.extend` against nearest-class-mean", "",
         "One section per setting (how many new species are added), each written by `benchmarks/extend_ncm.py` "
         "between its markers; the notes after them are written by hand.", ""]


def bars(rows: dict, run_top1: float) -> list[str]:
    """The release issue's two bars on the 5-shot rows, each stated as met or not."""
    if not all(f"{m} k=5" in rows for m in ("imprint", "centred", "ncm")):
        return ["- bars: not assessed (they are about 5 shots; this run has no 5-shot rows)"]

    def mean(name: str, key: str) -> float:
        return float(np.mean([r[key] for r in rows[name]]))

    ncm, floor, n = mean("ncm k=5", "new_top1"), 0.95 * run_top1, len(rows["ncm k=5"])
    out = [f"- the release issue's bars, 5 shots, means over the {n} draws (2 decimals, so that near ties read):"]
    for method, label in (("imprint", "default (imprinted)"), ("centred", "`--old-weights centred`")):
        new, old = mean(f"{method} k=5", "new_top1"), mean(f"{method} k=5", "old_top1")
        out.append(f"  - {label}: bar 1, new top-1 >= the nearest-class-mean's: **{'met' if new >= ncm else 'not met'}"
                   f"** ({new:.2f} vs {ncm:.2f}); bar 2, old top-1 >= 95 % of the run's top-1: "
                   f"**{'met' if old >= floor else 'not met'}** ({old:.2f} vs {floor:.2f})")
    out.append(f"  - the nearest-class-mean itself: old {mean('ncm k=5', 'old_top1'):.2f} "
               f"({'meets' if mean('ncm k=5', 'old_top1') >= floor else 'misses'} bar 2)")
    return out


def splice(path: Path, key: str, section: list[str]) -> None:
    """Write ``section`` into ``path`` between its ``key`` markers (replacing what was there), else before the
    hand-written ``## Notes`` (or at the end); other sections and the notes are kept."""
    start, end = f"<!-- extend_ncm: {key} -->", f"<!-- /extend_ncm: {key} -->"
    block = "\n".join([start, *section, end]) + "\n"
    text = path.read_text() if path.is_file() else "\n".join(TITLE) + "\n"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end) + 1:]
    elif "\n## Notes" in text:
        at = text.index("\n## Notes") + 1
        text = text[:at] + block + "\n" + text[at:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def write(args: argparse.Namespace, run: Path, own: dict, rows: dict, k_old: int, new_test: dict, k_all: int,
          n_old: int, seconds: float) -> None:
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    k_new, n_new = len(new_test["classes"]), len(new_test["labels"])
    if k_new == k_all:
        heading = f"## {k_new} new species: all the species of cub200-mid that the run lacks"
        added = f"the {k_new} species of {args.mid} that the run lacks (symlinked CUB root)"
    else:
        ids = [folder.split(".", 1)[0] for _, folder in _lines(args.work.resolve() / f"new_species_{k_new}"
                                                               / "CUB_200_2011" / "classes.txt")]
        heading = (f"## {k_new} new species: the first {k_new} (by official class id) of the {k_all} that the run "
                   "lacks")
        added = (f"the first {k_new} by official class id of the {k_all} species of {args.mid} that the run lacks: "
                 f"ids {', '.join(ids)} ({', '.join(map(str, new_test['classes']))}); `fgvc.extend` reads a "
                 f"symlinked CUB root of these {k_new} alone, the replayed rows use the {k_all} species' "
                 "`fgvc.embed` features subset to them by class")
    lines = [
        heading,
        "",
        f"- machine: {machine()}; written {date} by `python benchmarks/extend_ncm.py "
        f"{' '.join(shlex.quote(a) for a in sys.argv[1:])}` ({seconds / 60:.0f} min for what it did not reuse)",
        f"- run: {run} (recipes/cub200_lite0.yaml on {args.mini}, {' '.join(TRAIN_SETS)}): test top-1 "
        f"{own['top1']:.2f} on its {k_old} species ({own['n_images']} images); 95 % of it: {0.95 * own['top1']:.2f}",
        f"- added: {added}; their train split "
        f"(the run's data.args: val_fraction 0.1 held out) for the shots, {n_new} test images; old: {n_old} test "
        "images; every image predicted among all "
        f"{k_old + k_new} species",
        f"- draws: `fgvc.extend --shot-seed D` for D in {args.draws} (`fgvc.data.union.first_shots(labels, K, D)`); "
        "every row of a draw uses the very same shots (each fgvc.extend run's checked by file name); rows over "
        "fewer draws are the draws run through the command (`--cli-draws`), the replayed rows cover all of them",
        "- nearest-class-mean: `fgvc.embed` features; old class = mean of all its training embeddings, new class = "
        "mean of its shots' embeddings, cosine",
        *bars(rows, own["top1"]),
        "",
        "| method | shots | new top-1 | old top-1 | all top-1 | draws (--shot-seed) |",
        "|---|---|---|---|---|---|",
    ]
    order = sorted(rows, key=lambda n: (int(n.split(" k=")[1]), list(LABELS).index(n.split(" k=")[0])))
    for name in order:
        method, k = name.split(" k=")
        rs = rows[name]
        lines.append(f"| {LABELS[method]} | {k} | {stats(rs, 'new_top1')} | {stats(rs, 'old_top1')} | "
                     f"{stats(rs, 'top1')} | {', '.join(str(r['draw']) for r in rs)} |")
    lines += ["", "mean ± sample std over the draws. Per draw (new / old / all):", "",
              "| method | shots | " + " | ".join(f"D={d}" for d in args.draws) + " |",
              "|---|---|" + "---|" * len(args.draws)]
    for name in order:
        method, k = name.split(" k=")
        by_draw = {r["draw"]: r for r in rows[name]}
        lines.append(f"| {method} | {k} | " + " | ".join(
            f"{by_draw[d]['new_top1']:.1f} / {by_draw[d]['old_top1']:.1f} / {by_draw[d]['top1']:.1f}"
            if d in by_draw else "-" for d in args.draws) + " |")
    lines += ["", "Commands (from the repository root):", ""] + [f"    {c}" for c in COMMANDS or ["(all reused)"]]
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    splice(args.out, f"{k_new} new species", lines)
    tag = "" if k_new == k_all else f"_new{k_new}"
    args.out.with_name(args.out.stem + tag + ".json").write_text(json.dumps(
        {"date": date, "machine": machine(), "run": str(run), "run_top1": own["top1"], "new_species": k_new,
         "classes": [str(c) for c in new_test["classes"]], "rows": rows}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
