"""``python -m fgvc.evaluate RUN_DIR_OR_CHECKPOINT [--split test] [--checkpoint last|best] [--tta] [--set ...]``

Re-evaluates a trained run: top-1, top-5, mean per-class accuracy and every prediction the method
reports, writes ``eval/<split>-<checkpoint>.json`` with per-class and confusion CSVs, and says
whether the numbers reproduce the run's ``final.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fgvc import config as C
from fgvc.cli import add_run_arguments, friendly


def load_run(target: str | Path, checkpoint: str = "last", sets: list[str] | None = None) -> tuple[dict, dict, Path]:
    """(config, checkpoint state, run_dir) from a run directory or a checkpoint file."""
    from fgvc.engine.checkpoint import load_checkpoint

    target = Path(target)
    if target.is_dir():
        run_dir, ckpt_path = target, target / "checkpoints" / f"{checkpoint}.pt"
    else:
        ckpt_path, run_dir = target, target.parent.parent
    state = load_checkpoint(ckpt_path)
    cfg = state["config"]
    C.apply_overrides(cfg, sets or [])
    C.validate(cfg)
    return cfg, state, run_dir


def build_trained(cfg: dict[str, Any], state: dict[str, Any], weights: str = "auto") -> Any:
    """The method with the checkpoint's weights (EMA weights when the run used EMA, as final.json did)."""
    from fgvc.engine.builder import build_method_from_cfg

    cfg = dict(cfg, model=dict(cfg["model"], pretrained=False, pretrained_file=None))
    method = build_method_from_cfg(cfg, len(state["class_names"]))
    use_ema = state.get("ema") is not None and weights in ("auto", "ema")
    method.load_state_dict(state["ema"] if use_ema else state["model"])
    method.load_extra_state(state.get("extra") or {})
    return method, ("ema" if use_ema else "model")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-evaluate", description="Evaluate a trained fgvc run on a split.")
    add_run_arguments(ap, "split to evaluate")
    ap.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    return ap.parse_args(argv)


@friendly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from fgvc.engine import builder as B
    from fgvc.engine.evaluator import evaluate, write_reports
    from fgvc.engine.rundir import write_json

    cfg, state, run_dir = load_run(args.target, args.checkpoint, args.sets)
    split = args.split or cfg["data"]["test_split"]
    device = B.resolve_device(cfg["train"]["device"])
    method, weights = build_trained(cfg, state, args.weights)
    channels_last = cfg["train"]["channels_last"] in ("auto", True)
    method.to(device)
    if channels_last:
        method.to(memory_format=torch.channels_last)
    dc = {k: tuple(v) if isinstance(v, list) else v for k, v in state["data_config"].items()}
    ds = B.build_split(cfg, split, False, dc)
    if list(ds.classes) != list(state["class_names"]):
        raise C.ConfigError(f"the classes of {cfg['data']['root']} ({len(ds.classes)}) differ from the ones this "
                            f"model was trained on ({len(state['class_names'])}); evaluate on the same data set")
    from fgvc.engine.distributed import DistEnv

    bs = cfg["eval"]["batch_size"] or cfg["train"]["batch_size"]
    loader = B.make_loader(ds, bs, cfg["data"]["num_workers"], False, 0, DistEnv(), device.type == "cuda")
    tta = args.tta or cfg["eval"]["tta_flip"]
    for warning in B.flip_warnings(ds, {"eval.tta_flip (--tta)": tta}):
        print(f"warning: {warning}", file=sys.stderr)
    amp = B.resolve_amp(cfg["train"], device)
    res, logits, targets = evaluate(method, loader, device, amp, tta, channels_last, desc=split)
    res.update(split=split, checkpoint=args.checkpoint, weights=weights, tta_flip=tta)
    out = run_dir / "eval"
    tag = f"{split}-{args.checkpoint}" + ("-tta" if tta else "")
    write_json(out / f"{tag}.json", res)
    write_reports(out, logits[res["prediction"]], targets, state["class_names"], prefix=f"{tag}-")
    keys = [k for k in res if k.endswith("_top1")]
    print(f"{split} ({res['n_images']} images, {args.checkpoint} checkpoint, {weights} weights)")
    print(f"  top-1 {res['top1']:.2f}   top-5 {res['top5']:.2f}   mean per-class {res['mean_class_acc']:.2f}")
    if len(keys) > 1:
        print("  " + "   ".join(f"{k[:-5]} {res[k]:.2f}" for k in keys))
    final = run_dir / "final.json"
    if final.is_file() and args.checkpoint == "last" and split == cfg["data"]["test_split"]:
        ref = json.loads(final.read_text())
        same = all(abs((ref.get(k) or 0) - res[k]) < 1e-6 for k in ("top1", "top5", "mean_class_acc"))
        if ref.get("tta_flip", False) == tta:
            print("  reproduces final.json" if same else
                  f"  DIFFERS from final.json (top-1 {ref.get('top1')}): different data, --set overrides "
                  f"({' '.join(args.sets) or 'none'}) or environment?")
    print(f"wrote {out}/{tag}.json, {tag}-per_class.csv, {tag}-confusion.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
