"""Self-supervised pretraining on cub200-mid (issue 26): does in-domain SimCLR beat the frozen ImageNet features, and
does it help fine-tuning with few labels?

Rows (tf_efficientnet_lite0, ImageNet weights from ../shared/weights, ``--img-size`` px, seed ``--seed``):

* ``frozen``: the ImageNet features as they are (``recipes/cub200_simclr_lite0.yaml`` untrained, as ``fgvc.evaluate
  RECIPE`` loads it), kNN (k = 5, the train split as gallery) and linear-probe (default C) top-1 on the test split,
  with the functions ``fgvc.evaluate --protocol knn|linear`` use but one embedding pass per split (cached in RUNS);
* ``simclr``: ``recipes/cub200_simclr_lite0.yaml`` trained ``--ssl-epochs`` on the train split's images (labels unused
  by the encoder), then the same two protocols;
* ``simclr+queue``: the same with ``model.args.queue_size=--queue`` (a CrossBatchMemory of past views as negatives);
* fine-tuning ``recipes/cub200_lite0.yaml`` for ``--ft-epochs`` with 10 % (per class, seeded, at least one image per
  class; the rest listed in ``data.exclude``) and 100 % of the train labels, from ImageNet weights and from the
  ``simclr`` run (``model.init_from``): final-epoch test top-1.

Every command is printed and kept in the JSON; a finished run or evaluation is read back, not redone, so the script
can be stopped and re-run. ``--only`` limits the rows (``frozen simclr queue ft``).

    python benchmarks/unlabeled.py --root ../shared/data/cub200-mid --img-size 96 --ssl-epochs 3 --ft-epochs 4
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fgvc.data import build_dataset
from fgvc.engine.inference import TrainedRun
from fgvc.metrics.linear_probe import linear_probe
from fgvc.metrics.retrieval import knn_top1
from fgvc.protocols.embeddings import split_embeddings

SSL_RECIPE, FT_RECIPE = "recipes/cub200_simclr_lite0.yaml", "recipes/cub200_lite0.yaml"
# the SSL runs' own end-of-training test pass (the online probe's classification) on 2 % of the train split held out,
# not on the 1,748 test images: the embedding pass below scores the test split once
SSL_TEST = ["data.args.val_fraction=0.02", "data.test_split=val"]


def run(cmd: list[str], log: list[dict[str, Any]]) -> float:
    """Run ``cmd`` (printed, logged with its wall time); a failure stops the script."""
    print("$ " + shlex.join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    seconds = round(time.time() - t0, 1)
    log.append({"cmd": shlex.join(cmd), "seconds": seconds})
    return seconds


def label_subset(root: str, fraction: float, seed: int, out: Path) -> tuple[Path, int]:
    """A ``data.exclude`` file listing all train images but ``fraction`` of each class (at least one), seeded."""
    ds = build_dataset("cub200", root, "train", val_fraction=0.0)
    by_class: dict[int, list[str]] = {}
    for s in ds.samples:
        by_class.setdefault(s.label, []).append(str(Path(s.path).resolve()))
    rng, excluded, kept = random.Random(seed), [], 0
    for label in sorted(by_class):
        paths = sorted(by_class[label])
        rng.shuffle(paths)
        n = max(1, round(fraction * len(paths)))
        kept += n
        excluded += paths[n:]
    out.write_text("\n".join(excluded) + "\n")
    return out, kept


def top1(path: Path) -> float | None:
    return json.loads(path.read_text())["top1"] if path.is_file() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="../shared/data/cub200-mid")
    ap.add_argument("--img-size", type=int, default=96)
    ap.add_argument("--ssl-epochs", type=int, default=3)
    ap.add_argument("--ft-epochs", type=int, default=4)
    ap.add_argument("--ft10-epochs", type=int, default=10, help="epochs of the 10 %% fine-tunes (fewer images)")
    ap.add_argument("--queue", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="runs/unlabeled")
    ap.add_argument("--only", nargs="*", default=["frozen", "simclr", "queue", "ft"])
    ap.add_argument("--out", default="benchmarks/results/unlabeled.json")
    args = ap.parse_args()
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    common = [f"data.root={args.root}", f"data.img_size={args.img_size}", "data.val_split=null",
              "data.args.val_fraction=0", f"seed={args.seed}", "data.num_workers=2"]
    res: dict[str, Any] = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}",
                           "python": sys.version.split()[0], "args": vars(args), "commands": [], "rows": {}}
    out = Path(args.out)
    if out.is_file():
        res["rows"] = json.loads(out.read_text()).get("rows", {})
    py = [sys.executable, "-m"]

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1) + "\n")

    def probes(row: str, target: str, cache: Path) -> None:
        """kNN (k = 5, train split as gallery) and linear-probe (default C, no validation split) top-1 on the test
        split: the functions of fgvc.protocols' knn and linear, fed by one embedding pass per split (cached)."""
        if not cache.is_file():
            t0 = time.time()
            run_ = TrainedRun.load(target, overrides=common)
            emb = {s: split_embeddings(run_, s) for s in ("train", "test")}
            np.savez(cache, **{f"{s}_{k}": v for s, (x, y) in emb.items() for k, v in (("x", x), ("y", y))})
            res["commands"].append({"cmd": f"embed {target} (train, test) --set {' '.join(common)}",
                                    "seconds": round(time.time() - t0, 1)})
        z = np.load(cache)
        (xtr, ytr), (xte, yte) = (z["train_x"], z["train_y"]), (z["test_x"], z["test_y"])
        r = res["rows"].setdefault(row, {})
        r["knn"] = round(knn_top1(xtr, ytr, xte, yte, 5), 2)
        r["linear"] = round(linear_probe((xtr, ytr), (xte, yte), int(max(ytr.max(), yte.max())) + 1).top1, 2)
        r["n_train"], r["n_test"] = int(len(ytr)), int(len(yte))
        print(row, r, flush=True)
        save()

    if "frozen" in args.only:
        probes("frozen", SSL_RECIPE, runs / "frozen_embeddings.npz")
    ssl_runs = {"simclr": (runs / "simclr", []),
                "queue": (runs / "simclr_queue", [f"model.args.queue_size={args.queue}"])}

    def ssl(row: str) -> None:
        rdir, extra = ssl_runs[row]
        if row not in args.only:
            return
        if not (rdir / "final.json").is_file():
            run(py + ["fgvc.train", SSL_RECIPE, "--output", str(rdir), "--set", *common,
                      f"train.epochs={args.ssl_epochs}", *SSL_TEST, *extra], res["commands"])
        final = json.loads((rdir / "final.json").read_text())
        res["rows"].setdefault(row, {})["train_seconds"] = final["train_seconds"]
        probes(row, str(rdir), rdir / "embeddings.npz")

    ssl("simclr")  # then the fine-tunes from it, then the queue variant
    if "ft" in args.only:
        exclude, kept = label_subset(args.root, 0.1, args.seed, runs / "exclude_90pct.txt")
        res["labels_10pct"] = kept
        for frac, epochs, excl in (("10", args.ft10_epochs, [f"data.exclude={exclude}"]), ("100", args.ft_epochs, [])):
            for init, init_set in (("imagenet", []), ("simclr", [f"model.init_from={runs / 'simclr'}"])):
                rdir = runs / f"ft{frac}_{init}"
                if not (rdir / "final.json").is_file():
                    run(py + ["fgvc.train", FT_RECIPE, "--output", str(rdir), "--set", *common,
                              f"train.epochs={epochs}", *excl, *init_set], res["commands"])
                res["rows"][f"ft{frac}_{init}"] = {"top1": top1(rdir / "final.json"), "epochs": epochs}
                save()
    ssl("queue")
    save()
    print(json.dumps(res["rows"], indent=1))
    print(table(res))
    return 0


def table(res: dict[str, Any]) -> str:
    """The results as two markdown tables (probes; fine-tuning)."""
    rows, a = res["rows"], res["args"]
    lines = ["| features | kNN top-1 (k = 5) | linear-probe top-1 | SSL train seconds |", "|---|---|---|---|"]
    names = {"frozen": "frozen ImageNet lite0", "simclr": f"SimCLR {a['ssl_epochs']} epoch(s) from ImageNet",
             "queue": f"SimCLR {a['ssl_epochs']} epoch(s) + queue {a['queue']}"}
    for key, name in names.items():
        if key in rows:
            r = rows[key]
            lines.append(f"| {name} | {r['knn']:.2f} | {r['linear']:.2f} | {r.get('train_seconds', '-')} |")
    lines += ["", "| fine-tuning | labels | epochs | test top-1 |", "|---|---|---|---|"]
    for frac in ("10", "100"):
        for init in ("imagenet", "simclr"):
            r = rows.get(f"ft{frac}_{init}")
            if r:
                lines.append(f"| from {'ImageNet' if init == 'imagenet' else 'the SimCLR run'} | {frac} % | "
                             f"{r['epochs']} | {r['top1']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
