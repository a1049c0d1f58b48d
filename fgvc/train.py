"""``python -m fgvc.train RECIPE [--set key.sub=value ...] [--output DIR] [--resume [RUN_DIR]]``

Trains the recipe and leaves a run directory (see :mod:`fgvc.engine.rundir`). ``--resume``
continues a run from its ``checkpoints/last.pt`` exactly where it stopped; without a
directory it takes ``--output`` or the newest run of the recipe under ``output.root``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fgvc import config
from fgvc.cli import add_output, add_set, command
from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.distributed import init_distributed
from fgvc.engine.environment import environment
from fgvc.engine.inference import require_keys
from fgvc.engine.resume_check import check_resume
from fgvc.engine.run_state import locate_checkpoint, read_saved_config
from fgvc.engine.rundir import (attach_run_log, buffered_log, close_file_logging, new_run_dir, setup_logging,
                                write_json)
from fgvc.engine.trainer import Trainer
from fgvc.hooks import training_hooks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-train", description="Train a fine-grained classifier from a YAML recipe.")
    ap.add_argument("recipe", nargs="?", help="recipe YAML, e.g. recipes/cub200_wsdan.yaml (optional with --resume RUN_DIR)")
    add_set(ap)
    add_output(ap, "run directory (default: <output.root>/<recipe>-<time>)", metavar="DIR")
    ap.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN_DIR",
                    help="continue a run from its checkpoints/last.pt")
    return ap.parse_args(argv)


def _recipe(args: argparse.Namespace, missing: str) -> tuple[dict, str]:
    """The recipe's config (with ``--set``) and its run name: ``output.name``, else the recipe file's stem;
    ``missing`` is the error when no recipe was given."""
    if not args.recipe:
        raise config.ConfigError(missing)
    cfg, _ = config.load_recipe(args.recipe, args.sets)
    return cfg, cfg["output"]["name"] or Path(args.recipe).stem


def _find_run(args: argparse.Namespace) -> Path:
    if args.resume:
        return Path(args.resume)
    if args.output:
        return Path(args.output)
    cfg, name = _recipe(args, "--resume needs a run directory, or a recipe whose newest run to continue")
    runs = sorted(Path(cfg["output"]["root"]).glob(f"{name}-*/checkpoints/last.pt"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise config.ConfigError(f"no run of '{name}' with a checkpoint under {cfg['output']['root']}/ to resume")
    return runs[-1].parent.parent


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    state = None
    if args.resume is not None:
        run_dir = _find_run(args)
        state = _resume_state(run_dir)
        cfg = _resume_config(args, run_dir, state)
    else:
        cfg, name = _recipe(args, "give a recipe, e.g. python -m fgvc.train recipes/demo.yaml")
        run_dir = Path(args.output) if args.output else new_run_dir(cfg["output"]["root"], name)
        if (run_dir / "checkpoints" / "last.pt").exists():
            raise config.ConfigError(
                f"{run_dir} already holds a run with a checkpoint; continue it with --resume {run_dir}, "
                "or choose another --output (fgvc never overwrites a checkpoint of another run)")
    env = init_distributed("cuda" if cfg["train"]["device"] != "cpu" and _cuda() else "cpu")
    # build data and model before anything is written: a run that cannot start leaves no directory behind
    log = setup_logging(None, env.is_main)
    with buffered_log() as held:
        trainer = Trainer(cfg, run_dir, resume=args.resume is not None, env=env, state=state,
                          hooks=training_hooks(cfg))
        if env.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if state is None and (run_dir / "metrics.jsonl").is_file():  # rows of a start killed before last.pt
                (run_dir / "metrics.jsonl").unlink()
                log.warning(f"{run_dir} held the metrics.jsonl of a start that stopped before its first checkpoint: "
                            "removed, this run starts afresh")
            (run_dir / "config.yaml").write_text(config.dump(cfg))
            write_json(run_dir / "environment.json", environment(trainer.device, env.world_size, args.resume is not None))
        env.barrier()
        attach_run_log(run_dir, held, env.is_main)  # train.log starts with what was logged while building
    log.info(f"run directory: {run_dir}")
    log.info(f"device {trainer.device} x{env.world_size} | {cfg['model']['name']} on {cfg['model']['backbone']} | "
             f"{cfg['data']['name']}: {len(trainer.train_ds)} train, "
             f"{len(trainer.val_ds) if trainer.val_ds is not None else 0} val images, {len(trainer.class_names)} classes")
    try:
        final = trainer.fit()
        if env.is_main:
            log.info("final (test split, final-epoch weights): " + json.dumps(
                {k: (round(v, 2) if isinstance(v, float) else v) for k, v in final.items()
                 if k in ("top1", "top5", "mean_class_acc", "n_images", "best_val_top1", "train_seconds")}))
            log.info(f"wrote {run_dir}/final.json, metrics.jsonl, curves.png, eval/per_class.csv, checkpoints/")
    finally:
        close_file_logging()


def _resume_state(run_dir: Path) -> dict:
    """The run's checkpoints/last.pt, loaded and checked, or a one-line error saying why there is none to resume."""
    if run_dir.exists() and not run_dir.is_dir():
        raise config.ConfigError(f"--resume {run_dir}: give the run directory (the folder fgvc.train wrote), not a file")
    if (run_dir / "checkpoints").is_dir() and not (run_dir / "checkpoints" / "last.pt").is_file() \
            and any((run_dir / "checkpoints").glob("*.pt")):
        raise config.ConfigError(f"{run_dir} has no checkpoints/last.pt yet: start it again without --resume")
    _, ckpt = locate_checkpoint(run_dir, "last")
    state = load_checkpoint(ckpt)
    require_keys(state, ckpt, ("config", "model", "optimizer", "progress", "best", "rng", "class_names"))
    return state


def _resume_config(args: argparse.Namespace, run_dir: Path, state: dict) -> dict:
    """The config to go on with: the RECIPE given (else the run's config.yaml, else the checkpoint's own config when
    config.yaml is missing or damaged) with ``--set``, refused when it changes what the checkpoint trained."""
    saved = config.from_saved(state["config"])
    sets = f" and --set {' '.join(args.sets)}" if args.sets else ""
    if args.recipe:
        cfg, _ = config.load_recipe(args.recipe, args.sets)
        source = f"the recipe {args.recipe}{sets}"
    else:
        found, note = read_saved_config(run_dir)
        if found is None:
            print(f"warning: {note}; resuming with the config saved in {run_dir / 'checkpoints' / 'last.pt'} "
                  "(config.yaml is written again)", file=sys.stderr)
            cfg = config.from_saved(state["config"], args.sets)
            source = f"--set {' '.join(args.sets)}"
        else:
            cfg = config.load_recipe(run_dir / "config.yaml", args.sets)[0]
            source = f"its config.yaml{sets}"
    check_resume(run_dir, saved, cfg, source)
    return cfg


def _cuda() -> bool:

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
