"""Embeddings on real birds: frozen ImageNet features against CE, CE + triplet, ArcFace and the metric recipe, on
the species trained on and on species never seen; then adding species to a trained run with ``fgvc.extend``.

tf_efficientnet_lite0 with the shared ImageNet weights, ``recipes/cub200_lite0.yaml`` (AdamW 1e-3, warmup + cosine,
batch 32) with the same epochs, crop, seed and train.device=cpu for every row:

* seen species, ../shared/data/cub200-mini (20 species, its test split): Recall@1 and MAP@R (``--protocol
  retrieval``), kNN top-1 (train split as gallery) and linear-probe top-1;
* unseen species: the 40 species of ../shared/data/cub200-mid that cub200-mini lacks, all their images, read
  through a CSV manifest written under RUNS (no image is copied): Recall@1 and MAP@R;
* extend: a run trained on 10 of cub200-mini's 20 species (every other one by class id; CSV manifests over its
  images), extended with the other 10 by imprinting (1 and 5 shots) and by short fine-tunes with 5 shots (all old
  images, the new shots only, rehearsal of 5 images per old species, EWC): old-species top-1 before and after,
  new-species top-1 (each predicted among all 20).

    python benchmarks/embeddings.py                                  # all of it, 8 epochs
    python benchmarks/embeddings.py --arm "metric_pa=cub200_lite0_metric.yaml:loss.aux=[{name: proxy_anchor, \\
        weight: 1.0, lr_scale: 100}]"                                # more rows, to choose the metric recipe
    python benchmarks/embeddings.py --epochs 1 --max-images 64 --runs /tmp/emb --out /tmp/emb/embeddings.md  # smoke

Finished runs (RUNS/<row>/final.json) and evaluations (their JSON under RUNS) are measured, not redone;
``--skip-train`` only measures what is there. Writes a Markdown table (with the command, machine and date) and a
JSON file of every number.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fgvc.data.cub import read_annotations, stratified_holdout  # noqa: E402
from fgvc.evaluate import main as evaluate_main  # noqa: E402
from fgvc.extend import main as extend_main  # noqa: E402
from fgvc.train import main as train_main  # noqa: E402

SHARED = REPO.parent / "shared"
MINI, MID = SHARED / "data" / "cub200-mini", SHARED / "data" / "cub200-mid"
WEIGHTS = SHARED / "weights" / "tf_efficientnet_lite0.safetensors"
PK = ["data.sampler=pk", "data.sampler_args={p: 8, k: 4}"]
# row -> (recipe under recipes/, overrides on top of it); "frozen" is the first recipe untrained
ROWS: dict[str, tuple[str, list[str]]] = {
    "frozen": ("cub200_lite0.yaml", []),
    "ce": ("cub200_lite0.yaml", []),
    "ce_triplet": ("cub200_lite0.yaml", [*PK, "loss.aux=[{name: triplet, weight: 1.0, args: {margin: 0.3}}]"]),
    "arcface": ("cub200_lite0.yaml", ["model.args.head=arcface", "model.args.head_args={s: 16, m: 0.3}"]),
    "metric": ("cub200_lite0_metric.yaml", []),
}
LABELS = {"frozen": "frozen ImageNet features (untrained recipe)", "ce": "CE fine-tune",
          "ce_triplet": "CE + triplet (batch-hard, margin 0.3; pk 8 x 4)", "arcface": "ArcFace head (s 16, m 0.3)",
          "metric": "metric recipe (cub200_lite0_metric.yaml)"}
CSV_DATA = ["data.name=csv", "data.args={}"]


def write_manifests(runs: Path) -> dict[str, Path]:
    """unseen.csv (cub200-mid's species that cub200-mini lacks, every image as 'test') and half_old.csv /
    half_new.csv (cub200-mini's species split in two by alternate class id; train/val/test as the cub200 reader
    makes them: official train/test, val a stratified 10 % of train with seed 0). Paths are absolute."""
    runs.mkdir(parents=True, exist_ok=True)
    mini, mid = read_annotations(MINI), read_annotations(MID)
    name = lambda folder: folder.split(".", 1)[1]  # noqa: E731  ("041.Scissor_tailed_Flycatcher")
    unseen = mid[~mid["class_id"].isin(set(mini["class_id"]))]
    rows = {"unseen": [f"{p},{name(c)},test" for p, c in zip(unseen["path"], unseen["class_name"])]}
    train = mini["is_train"].to_numpy() == 1
    val = train.copy()
    val[train] = stratified_holdout(mini["class_id"].to_numpy()[train], 0.1, 0)
    split = ["val" if v else "train" if t else "test" for t, v in zip(train, val)]
    ids = sorted(set(mini["class_id"]))
    for half, keep in (("half_old", set(ids[0::2])), ("half_new", set(ids[1::2]))):
        rows[half] = [f"{p},{name(c)},{s}" for p, c, i, s in zip(mini["path"], mini["class_name"], mini["class_id"],
                                                                   split) if i in keep]
    out = {}
    for key, lines in rows.items():
        out[key] = runs / f"{key}.csv"
        out[key].write_text("path,label,split\n" + "\n".join(lines) + "\n")
    return out


def common_sets(args: argparse.Namespace) -> list[str]:
    sets = [f"data.root={MINI}", f"train.epochs={args.epochs}", f"data.img_size={args.img_size}", f"seed={args.seed}",
            "train.device=cpu", f"model.pretrained_file={WEIGHTS}"]
    return sets + ([f"data.max_images={args.max_images}"] if args.max_images else []) + args.sets


def train(run: Path, recipe: str, sets: list[str], args: argparse.Namespace) -> bool:
    """Train ``run`` unless it is finished (or --skip-train); True when it has a final.json."""
    if not (run / "final.json").is_file() and not args.skip_train:
        if (run / "checkpoints" / "last.pt").is_file():
            rc = train_main(["--resume", str(run)])
        else:
            rc = train_main([str(REPO / "recipes" / recipe), "--output", str(run), "--set", *sets])
        if rc != 0:
            raise SystemExit(f"training {run} failed (exit {rc})")
    return (run / "final.json").is_file()


def evaluate(target: Path, protocol: str, out: Path, sets: list[str]) -> dict[str, Any]:
    """``fgvc.evaluate TARGET --protocol P --output OUT``, or the JSON it already wrote there."""
    path = out / f"{protocol}-test.json"
    if not path.is_file():
        rc = evaluate_main([str(target), "--protocol", protocol, "--output", str(out), *(["--set", *sets] if sets
                                                                                          else [])])
        if rc != 0:
            raise SystemExit(f"fgvc.evaluate {target} --protocol {protocol} failed (exit {rc})")
    return json.loads(path.read_text())


def measure(row: str, recipe: str, extra: list[str], manifests: dict[str, Path], args: argparse.Namespace
            ) -> dict[str, Any] | None:
    runs, base = Path(args.runs), common_sets(args)
    home = runs / row
    if row == "frozen":
        target, sets, final = REPO / "recipes" / recipe, base + extra, {"train_seconds": 0.0, "top1": None}
    else:
        if not train(home, recipe, base + extra, args):
            return None
        target, sets, final = home, [], json.loads((home / "final.json").read_text())
    unseen = [*CSV_DATA, f"data.root={manifests['unseen']}", "data.train_split=test", "data.val_split=null",
              "data.test_split=test", *([f"data.max_images={args.max_images}"] if args.max_images else [])]
    seen = evaluate(target, "retrieval", home / "bench_eval" / "seen", sets)
    new = evaluate(target, "retrieval", home / "bench_eval" / "unseen", sets + unseen)
    knn = evaluate(target, "knn", home / "bench_eval" / "seen", sets)
    lin = evaluate(target, "linear", home / "bench_eval" / "seen", sets)
    return {"row": row, "recipe": recipe, "overrides": extra, "recall@1": seen["recall@1"], "map@r": seen["map@r"],
            "knn_top1": knn["top1"], "linear_top1": lin["top1"], "linear_c": lin["c"],
            "unseen_recall@1": new["recall@1"], "unseen_map@r": new["map@r"], "unseen_queries": new["n_queries"],
            "top1": final["top1"], "train_seconds": final["train_seconds"]}


def extend_rows(manifests: dict[str, Path], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The half run and its extensions."""
    home = Path(args.runs) / "extend"
    base = home / "half_base"
    half = [*CSV_DATA, f"data.root={manifests['half_old']}"]
    if not train(base, "cub200_lite0.yaml", common_sets(args) + half, args):
        return []
    ft = ["--finetune-epochs", str(args.ft_epochs)]
    plans: dict[str, list[str]] = {"imprint_1": ["--shots", "1"], "imprint_5": ["--shots", "5"],
                                   "ft_all_old": ["--shots", "5", *ft], "ft_new_only": ["--shots", "5", *ft,
                                                                                        "--rehearsal", "0"],
                                   "ft_rehearsal5": ["--shots", "5", *ft, "--rehearsal", "5"]}
    plans.update({f"ft_ewc{lam:g}": ["--shots", "5", *ft, "--ewc", f"{lam:g}"] for lam in args.ewc_lambda})
    sets = ["train.device=cpu", f"train.batch_size={args.ft_batch}",
            *([f"data.max_images={args.max_images}"] if args.max_images else []), *args.sets]
    rows = []
    for name, flags in plans.items():
        out = home / name
        if not (out / "final.json").is_file() and not args.skip_train:
            rc = extend_main([str(base), "--add", str(manifests["half_new"]), "--add-set", "name=csv", *flags,
                              "--set", *sets, "--output", str(out)])
            if rc != 0:
                raise SystemExit(f"fgvc.extend into {out} failed (exit {rc})")
        if (out / "final.json").is_file():
            f = json.loads((out / "final.json").read_text())
            metrics = out / "metrics.jsonl"
            epochs = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.is_file() else []
            rows.append({"extension": name, "ewc_term": epochs[-1].get("ewc") if epochs else None})
            rows[-1].update({k: f.get(k) for k in (
                "shots", "finetune_epochs", "forgetting", "rehearsal", "ewc_lambda", "old_top1_before", "old_top1",
                "new_top1", "top1", "train_seconds", "cosine_scale", "old_weights", "n_old_classes", "n_new_classes")})
            print("extend", name, rows[-1]["old_top1"], rows[-1]["new_top1"], flush=True)
    return rows


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


def tables(emb: list[dict[str, Any]], ext: list[dict[str, Any]]) -> list[str]:
    lines = ["## Seen and unseen species", "",
             "| row | Recall@1 | MAP@R | kNN top-1 | linear top-1 | unseen Recall@1 | unseen MAP@R | classifier top-1 "
             "| train s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in emb:
        label = LABELS.get(r["row"], f"{r['row']}: {r['recipe']} {' '.join(r['overrides'])}")
        cells = [r[k] for k in ("recall@1", "map@r", "knn_top1", "linear_top1", "unseen_recall@1", "unseen_map@r",
                                "top1")]
        lines.append(f"| {label} | {' | '.join(_f(c) for c in cells)} | {r['train_seconds']:.0f} |")
    lines += ["", "## Adding species to a trained run (fgvc.extend)", "",
              "| extension | shots | fine-tune epochs | old species top-1 before | after | new species top-1 | all "
              "| cosine s | EWC term, last epoch | fine-tune s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in ext:
        how = r["forgetting"] + (f" {r['rehearsal']}" if r["rehearsal"] is not None else "") + (
            f" lambda {r['ewc_lambda']:g}" if r["ewc_lambda"] is not None else "")
        lines.append(f"| {r['extension']} ({how}) | {r['shots']} | {r['finetune_epochs']} | {_f(r['old_top1_before'])} "
                     f"| {_f(r['old_top1'])} | {_f(r['new_top1'])} | {_f(r['top1'])} | {_f(r['cosine_scale'])} "
                     f"| {'-' if r['ewc_term'] is None else format(r['ewc_term'], '.2g')} | {r['train_seconds']:.0f} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--img-size", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS), help="default: all")
    ap.add_argument("--arm", action="append", default=[], metavar="NAME=RECIPE:KEY=VALUE[;KEY=VALUE...]",
                    help="an extra row: a recipe under recipes/ with overrides")
    ap.add_argument("--no-extend", action="store_true", help="skip the extend table")
    ap.add_argument("--ft-epochs", type=int, default=2, help="epochs of the extend fine-tunes")
    ap.add_argument("--ft-batch", type=int, default=16, help="batch of the extend fine-tunes (5 shots x 10 species "
                                                             "= 50 new images)")
    ap.add_argument("--ewc-lambda", type=float, nargs="+", default=[1e4, 1e6, 1e8],
                    help="EWC strengths (the penalty's sum F (w - w_old)^2 was ~1e-6 after a 2-epoch fine-tune of a "
                         "small run: 1e4 is weak, 1e8 strong)")
    ap.add_argument("--max-images", type=int, default=None, help="smoke runs: at most this many images per split")
    ap.add_argument("--set", dest="sets", nargs="+", default=[], help="overrides for every run")
    ap.add_argument("--runs", default="runs/embeddings")
    ap.add_argument("--out", default="benchmarks/results/embeddings.md")
    ap.add_argument("--skip-train", action="store_true", help="only measure finished runs")
    args = ap.parse_args()
    rows = [(r, *ROWS[r]) for r in args.rows]
    for spec in args.arm:
        name, _, rest = spec.partition("=")
        recipe, _, sets = rest.partition(":")
        rows.append((name, recipe, [s for s in sets.split(";") if s]))
    t0 = time.time()
    manifests = write_manifests(Path(args.runs))
    emb = [m for m in (measure(name, recipe, extra, manifests, args) for name, recipe, extra in rows) if m]
    for m in emb:
        print(m["row"], m["recall@1"], m["map@r"], m["unseen_map@r"], flush=True)
    ext = [] if args.no_extend else extend_rows(manifests, args)
    header = [
        "# Embeddings: retrieval on seen and unseen species, and adding species", "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, CPU only",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}; wall time of this invocation {time.time() - t0:.0f} s",
        f"- tf_efficientnet_lite0, ImageNet weights, {args.img_size} px, {args.epochs} epochs, seed {args.seed}, the "
        "same recipe base (recipes/cub200_lite0.yaml) for every row; all numbers are percentages; seen = "
        "cub200-mini's 20 species (test split: 588 images), unseen = the 40 other species of cub200-mid (every image)",
        f"- extend: a run on 10 of cub200-mini's species (every other class id), the other 10 added; fine-tunes "
        f"{args.ft_epochs} epochs, batch {args.ft_batch}, lr a tenth of the run's; top-1 over each half's test "
        "images, predicted among all 20 species; 'before' is the run's own test top-1 among its 10 species",
        f"- extra overrides: {' '.join(args.sets) or 'none'}"
        + (f"; at most {args.max_images} images per split (a smoke run)" if args.max_images else ""), "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(header + tables(emb, ext)) + "\n"
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"embeddings": emb, "extend": ext, "command": sys.argv},
                                                   indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
