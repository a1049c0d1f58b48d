"""``python -m fgvc.ablate BASE_RECIPE --step "NAME: key=value ..." ... [--cumulative] [--seeds 0 1 2] [--set ...]
[--steps-file STEPS.yaml] [--dry-run] [--measure] --output DIR``

A trick-by-trick table (He et al. 2019, "Bag of Tricks for Image Classification with CNNs"): row 0 is the base
recipe, each step one more row, applied alone or (``--cumulative``) on top of the rows before it; every row is
trained for every seed as an ordinary run directory ``DIR/runs/r{row}-{name}/seed{S}``. Rerunning the same command
resumes a stopped study. Writes ``DIR/ablation.md``, ``DIR/ablation.csv`` and ``DIR/ablation.png``
(:mod:`fgvc.experiments`).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from functools import partial
from pathlib import Path

from fgvc.cli import add_output, add_set, friendly
from fgvc.engine.rundir import setup_logging
from fgvc.errors import ConfigError
from fgvc.experiments.ablate import describe_plan, measure, plan_runs, run_study
from fgvc.experiments.plan import parse_step, resolve_rows, steps_from_file
from fgvc.experiments.study import refresh_tables, write_study_json
from fgvc.experiments.table import collect, markdown


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-ablate", description="Train a baseline and one change per row over seeds, "
                                 "and tabulate the gain of each change with its seed noise.")
    ap.add_argument("recipe", help="the base recipe (row 0), e.g. recipes/cub200_lite0.yaml")
    ap.add_argument("--step", dest="steps", action="append", default=[], metavar='"NAME: KEY=VALUE ..."',
                    help='one row: "NAME: key=value ..." (as --set) or "NAME: recipes/x.yaml [key=value ...]"; repeat')
    ap.add_argument("--steps-file", help="a YAML list of steps: strings as --step, or {name, set, recipe} mappings "
                                         "(added after the --step rows)")
    ap.add_argument("--cumulative", action="store_true", help="each step on top of the rows before it (default: alone)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of every row (default: 0 1 2)")
    add_set(ap)  # overrides of every row
    add_output(ap, "the study's directory (runs/, tables)", required=True, metavar="DIR")
    ap.add_argument("--dry-run", action="store_true", help="print rows, differences, runs and the estimated time; "
                                                           "train nothing")
    ap.add_argument("--measure", action="store_true", help="first train one epoch of each row with no measured "
                                                          "epoch (in DIR/measure), for the time estimate")
    return ap.parse_args(argv)


@friendly
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    setup_logging(None)
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"--seeds {' '.join(map(str, args.seeds))}: each seed once")
    steps = [parse_step(s) for s in args.steps] + (steps_from_file(args.steps_file) if args.steps_file else [])
    rows = resolve_rows(Path(args.recipe), steps, args.sets, args.cumulative)
    out = Path(args.output)
    runs = plan_runs(rows, args.seeds, out)
    if args.measure:
        measure(runs, out)
    if args.dry_run:
        print(describe_plan(rows, runs, out, args.cumulative))
        return
    command = "python -m fgvc.ablate " + shlex.join(argv)
    write_study_json(out, command, {"recipe": args.recipe, "steps": args.steps, "steps_file": args.steps_file,
                                    "sets": args.sets, "cumulative": args.cumulative, "seeds": args.seeds})
    tables = partial(refresh_tables, rows, args.seeds, out, args.cumulative, command)
    tables()
    run_study(runs, out, on_progress=tables)
    tables()
    print(markdown(collect(rows, args.seeds, out), args.cumulative))
    print(f"wrote {out / 'ablation.md'}, {out / 'ablation.csv'}, {out / 'ablation.png'}")


if __name__ == "__main__":
    sys.exit(main())
