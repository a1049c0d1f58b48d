"""Deploy benchmark: what each deployment step costs in accuracy and buys in size and speed, on real data.

For ../shared/data/cub200-mini and ../shared/data/flowers102-mini, with the shared ImageNet weights, on this CPU:

* the student: ``recipes/<set>_lite0.yaml`` (tf_efficientnet_lite0, 160 px, 6 epochs, seed 0), and from it
  eager PyTorch fp32, TorchScript, ONNX Runtime fp32 and ONNX Runtime INT8 (``fgvc.quantize`` with per-tensor and
  with ``--per-channel`` weights: static QDQ calibrated on 256 train images, and dynamic);
* pruned 30 % (``fgvc.prune --amount 0.3 --finetune-epochs 6 --set train.lr=1e-3 train.warmup_epochs=1``: the
  recipe's own schedule again, on the narrowed model);
* distillation: the teacher ``recipes/<set>_lite2.yaml`` (tf_efficientnet_lite2, same schedule) and the student
  distilled from it (``recipes/<set>_lite0_distill.yaml``: alpha 0.5, T 4) against the same student without a
  teacher (the first row), same epochs, crop and seed.

Columns: test top-1, file size (MB: the exported file, or for eager rows the fp32 state dict), parameters, MACs (one
160 px image), batch-1 and batch-32 latency (median ms of 20 runs after warm-up, ``--threads`` intra-op threads).
Finished runs are reused (RUNS/<set>/<row>/final.json); ``--skip-train`` only measures what is there.

    python benchmarks/deploy.py                      # both sets; writes benchmarks/results/deploy.md and .json
    python benchmarks/deploy.py --sets cub200 --threads 2
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from fgvc.train import main as train_main  # noqa: E402

SHARED = REPO.parent / "shared"
ROOTS = {"cub200": SHARED / "data" / "cub200-mini", "flowers102": SHARED / "data" / "flowers102-mini"}


def train(run: Path, recipe: str, sets: list[str], skip: bool) -> bool:
    """Train ``recipes/<recipe>`` into ``run`` unless finished (resume a killed one); True when it has final.json."""
    if not (run / "final.json").is_file() and not skip:
        argv = (["--resume", str(run)] if (run / "checkpoints" / "last.pt").is_file()
                else [str(REPO / "recipes" / recipe), "--output", str(run), "--set", *sets])
        if train_main(argv) != 0:
            raise SystemExit(f"training {run} failed")
    return (run / "final.json").is_file()


def _state_mb(method: torch.nn.Module) -> float:
    buf = io.BytesIO()
    torch.save(method.state_dict(), buf)
    return buf.tell() / 1e6


def eager_row(name: str, run_dir: Path, note: str, threads: int) -> dict[str, Any]:
    """Top-1 (final.json), state-dict size, params, MACs and latency of a run's eager PyTorch model."""
    from fgvc.deploy.runtime import latency_ms
    from fgvc.engine.inference import TrainedRun
    from fgvc.deploy.model_cost import count_macs, count_params, eager_logits

    run = TrainedRun.load(run_dir, overrides=["train.device=cpu"])
    method, size = run.method, run.cfg["data"]["img_size"]
    final = json.loads((run_dir / "final.json").read_text())
    fn = eager_logits(method)
    return {"row": name, "top1": final["top1"], "size_mb": _state_mb(method), "params": count_params(method),
            "macs": count_macs(method, size), "b1_ms": latency_ms(fn, 1, size), "b32_ms": latency_ms(fn, 32, size),
            "threads": threads, "note": note, "run": str(run_dir)}


def exported_rows(run_dir: Path, out: Path, threads: int) -> list[dict[str, Any]]:
    """TorchScript, ONNX fp32 and ONNX INT8 of the student: top-1 on its test split, file size, latency."""
    from fgvc.deploy.export import export_onnx, export_torchscript
    from fgvc.deploy.quantize import FP32, quantize_run
    from fgvc.deploy.runtime import OnnxModel, TorchScriptModel, latency_ms, top1
    from fgvc.engine.inference import TrainedRun

    run = TrainedRun.load(run_dir, overrides=["train.device=cpu"])
    size, test = run.cfg["data"]["img_size"], run.dataset(run.cfg["data"]["test_split"])
    out.mkdir(parents=True, exist_ok=True)
    ts = export_torchscript(run, out / "model.pt")
    fp32 = export_onnx(run, out / "model.onnx")
    rows = []
    for name, model in (("TorchScript", TorchScriptModel(ts)), ("ONNX Runtime fp32", OnnxModel(fp32, threads))):
        rows.append({"row": name, "top1": top1(model, test), "size_mb": (Path(model.path).stat().st_size / 1e6),
                     "b1_ms": latency_ms(model, 1, size), "b32_ms": latency_ms(model, 32, size), "threads": threads,
                     "note": Path(model.path).name})
    for per_channel, stem in ((False, "model.int8"), (True, "model.int8-per-channel")):
        q = quantize_run(run, out / f"{stem}.onnx", fp32=fp32, calib=256, per_channel=per_channel, threads=threads)
        for r in q.rows:
            if r.variant != FP32:
                rows.append({"row": f"ONNX Runtime {r.variant}, {'per-channel' if per_channel else 'per-tensor'} "
                                    "weights", "top1": r.top1, "size_mb": r.size_mb, "b1_ms": r.latency_b1_ms,
                             "b32_ms": r.latency_b32_ms, "threads": r.threads,
                             "note": f"fgvc.quantize{' --per-channel' if per_channel else ''}: "
                                     + ("kept" if r.kept else "discarded")})
    return rows


def measure_set(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from fgvc.deploy.prune_run import PruneRequest, prune_run

    home, root = Path(args.runs) / name, ROOTS[name]
    sets = [f"data.root={root}", "train.device=cpu", f"seed={args.seed}"]
    student, teacher, distilled = (home / r for r in ("student", "teacher", "distilled"))
    pruned = home / f"pruned-ft{args.prune_epochs}"
    ok = train(student, f"{name}_lite0.yaml", sets, args.skip_train)
    ok &= train(teacher, f"{name}_lite2.yaml", sets, args.skip_train)
    ok &= train(distilled, f"{name}_lite0_distill.yaml", [*sets, f"distill.teacher={teacher}"], args.skip_train)
    if not ok:
        return []
    if not (pruned / "prune.json").is_file() and not args.skip_train:
        prune_run(PruneRequest(run=student, output=pruned, amount=0.3, finetune_epochs=args.prune_epochs,
                               overrides=[f"train.lr={args.prune_lr}", "train.warmup_epochs=1"],
                               latency_threads=args.threads))
    torch.set_num_threads(args.threads)
    rows = [eager_row("eager PyTorch fp32 (student, no teacher)", student, "recipes/" + f"{name}_lite0.yaml",
                      args.threads)]
    rows += exported_rows(student, home / "export", args.threads)
    if (pruned / "prune.json").is_file():
        rows.append(eager_row(f"pruned 30 % + {args.prune_epochs}-epoch fine-tune (eager)", pruned,
                              f"fgvc.prune --amount 0.3, fine-tune lr {args.prune_lr:g}", args.threads))
    rows.append(eager_row("distilled student (eager)", distilled, "teacher lite2, alpha 0.5, T 4", args.threads))
    rows.append(eager_row("teacher: tf_efficientnet_lite2 (eager)", teacher, f"recipes/{name}_lite2.yaml",
                          args.threads))
    return rows


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(name: str, rows: list[dict[str, Any]]) -> list[str]:
    out = [f"## {name}", "", "| row | top-1 | size MB | params M | MMACs | batch-1 ms | batch-32 ms | note |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        params = r.get("params")
        macs = r.get("macs")
        out.append(f"| {r['row']} | {r['top1']:.2f} | {r['size_mb']:.2f} | "
                   f"{_f(params / 1e6 if params else None, '.2f')} | {_f(macs / 1e6 if macs else None, '.0f')} | "
                   f"{r['b1_ms']:.1f} | {r['b32_ms']:.0f} | {r['note']} |")
    return out + [""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(ROOTS), choices=list(ROOTS))
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for every latency (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prune-epochs", type=int, default=6, help="fine-tune after pruning (default 6, the recipe's)")
    ap.add_argument("--prune-lr", type=float, default=1e-3, help="its lr (default 1e-3, the recipe's: fgvc.prune's "
                                                                   "default lr / 10 recovered only 45 %% in 2 epochs)")
    ap.add_argument("--runs", default="runs/deploy")
    ap.add_argument("--out", default="benchmarks/results/deploy.md")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    results = {name: measure_set(name, args) for name in args.sets}
    lines = ["# Deploy: accuracy, size and speed of each step", "",
             f"- command: `python {' '.join(sys.argv)}`",
             f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, CPU only, "
             f"{args.threads} intra-op threads for every latency; torch {torch.__version__}",
             f"- date: {time.strftime('%Y-%m-%d %H:%M')}; wall time {time.time() - t0:.0f} s",
             "- top-1 on the test split of each mini set; latency: median of 20 runs after warm-up, 160 px", ""]
    for name, rows in results.items():
        lines += table(name, rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
