"""Running an ablation study: rows x seeds of ordinary ``fgvc.train`` runs, resumable.

Every run is ``DIR/runs/r{row}-{name}/seed{S}``, an ordinary run directory trained by
``python -m fgvc.train RECIPE --set ... seed=S --output RUN`` in a subprocess: a subprocess gives each run a fresh
process (the trainer sets process-wide state: torch threads, determinism, RNGs, logging handlers), returns its
memory when it ends, and a crash or an out-of-memory kill in one run stops the study with a message instead of
taking it down. A stopped study resumes: a run with ``final.json`` is done and skipped, one with
``checkpoints/last.pt`` is continued with ``fgvc.train --resume`` (the trainer's exact resume), any other starts
afresh. Before skipping or resuming, the run's ``config.yaml`` must match the row's recipe, so a changed study never
mixes runs of two different settings.

Time: ``DIR/timing.json`` keeps the wall seconds of every run this module trained start to finish, and of the
one-epoch measurement runs of ``--measure`` (``DIR/measure/r{row}``); :func:`estimate` turns them into the dry
run's estimate and the running ETA.
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from fgvc import config
from fgvc.engine.rundir import read_metrics
from fgvc.errors import ConfigError, UserError
from fgvc.experiments.plan import Row, describe_changes, diff, fmt_value
from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.run_state import read_final, read_saved_config

__all__ = ["Run", "plan_runs", "train_command", "run_study", "measure", "estimate", "format_seconds"]

log = logging.getLogger("fgvc")


@dataclass
class Run:
    """One row x seed: its directory and the config it must hold."""

    row: Row
    seed: int
    dir: Path

    @property
    def key(self) -> str:
        return f"{self.row.slug}/seed{self.seed}"

    @property
    def state(self) -> str:
        """``done`` (a readable final.json), ``partial`` (a checkpoint to resume: interrupted, or its final.json is
        damaged, which the resume writes again) or ``todo``."""
        if read_final(self.dir)[0] is not None:
            return "done"
        return "partial" if (self.dir / "checkpoints" / "last.pt").is_file() else "todo"

    def expected_cfg(self) -> dict[str, Any]:
        cfg = copy.deepcopy(self.row.cfg)
        cfg["seed"] = self.seed
        return cfg

    def epochs_done(self) -> int:
        return len(read_metrics(self.dir))


def plan_runs(rows: Sequence[Row], seeds: Sequence[int], out: Path) -> list[Run]:
    """Seed-major: every row with the first seed, then every row with the second, ...: a study stopped early still
    has a whole table over fewer seeds, and a row that fails to train shows up in the first pass."""
    return [Run(row, s, Path(out) / "runs" / row.slug / f"seed{s}") for s in seeds for row in rows]


def check_config(run: Run) -> None:
    """A run directory that exists must hold this row's recipe (and seed), else the study changed under it. Its
    config.yaml says which; when that is missing or damaged, the config saved in its checkpoint does."""
    if run.state == "todo":
        return
    cfg, note = read_saved_config(run.dir)
    if cfg is None:
        ckpt = run.dir / "checkpoints" / "last.pt"
        if not ckpt.is_file():
            return
        log.warning(f"{note}; checking the config saved in {ckpt} instead")
        cfg = config.from_saved(load_checkpoint(ckpt)["config"])
    changed = diff(run.expected_cfg(), cfg)
    if changed:
        raise ConfigError(
            f"{run.dir} holds a run of another setting than row {run.row.index} '{run.row.name}' of this study "
            f"({describe_changes(changed[:4])}{' ...' if len(changed) > 4 else ''}): the study changed since it was "
            "trained. Give a new --output, or delete that run directory to retrain it")


def train_command(run: Run, extra: Sequence[str] = ()) -> list[str]:
    """The ``fgvc.train`` command line of a run: ``--resume`` for a partial one."""
    if run.state == "partial":
        return [sys.executable, "-m", "fgvc.train", "--resume", str(run.dir)]
    return [sys.executable, "-m", "fgvc.train", str(run.row.recipe), "--set", *run.row.overrides, f"seed={run.seed}",
            *extra, "--output", str(run.dir)]


def launch(cmd: list[str]) -> int:
    """Run one training process (output straight to the console) and return its exit code."""
    return subprocess.call(cmd)


def _train(run_dir: Path, cmd: list[str], what: str) -> float:
    """Train one run with :func:`launch`; its wall seconds. A failed run stops the study."""
    t0 = time.time()
    rc = launch(cmd)
    if rc in (130, -2):
        raise KeyboardInterrupt
    if rc != 0:
        how = f"was killed by signal {-rc}" if rc < 0 else f"failed (exit code {rc})"
        raise UserError(f"{what} {how}: see its messages above and {run_dir / 'train.log'}; fix the "
                        "cause and rerun the same command (finished runs are kept, a checkpointed one resumes)")
    return time.time() - t0


class Timing:
    """``DIR/timing.json``: run key -> wall seconds."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / "timing.json"
        self.data: dict[str, float] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, UnicodeDecodeError, ValueError):
                data = None
            if not isinstance(data, dict):
                log.warning(f"{self.path} is damaged: the time estimate starts over (it is rewritten as runs finish)")
            self.data = data if isinstance(data, dict) else {}

    def record(self, key: str, seconds: float) -> None:
        self.data[key] = round(seconds, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")


def _epochs(cfg: dict[str, Any]) -> int:
    return int(cfg["train"]["epochs"])


def estimate(runs: Sequence[Run], out: Path) -> tuple[dict[int, float | None], dict[int, str]]:
    """Seconds one run of each row takes, and where the number comes from: the mean wall time of the row's runs
    trained start to finish; else its ``--measure`` run (wall of one epoch with start-up and evaluation, plus the
    first epoch's training seconds per further epoch); else the row's first measured epoch (metrics.jsonl of a
    started run) times its epochs (training only); else unknown."""
    timing = Timing(out).data
    per_row: dict[int, float | None] = {}
    source: dict[int, str] = {}
    for row in {r.row.index: r.row for r in runs}.values():
        mine = [r for r in runs if r.row.index == row.index]
        walls = [timing[r.key] for r in mine if r.key in timing]
        epochs = _epochs(row.cfg)
        probe = Path(out) / "measure" / row.slug
        started = [read_metrics(r.dir)[0]["epoch_seconds"] for r in mine if read_metrics(r.dir)]
        if walls:
            per_row[row.index], source[row.index] = sum(walls) / len(walls), f"{len(walls)} finished run(s)"
        elif f"measure/{row.slug}" in timing and read_metrics(probe):
            first = read_metrics(probe)[0]["epoch_seconds"]
            per_row[row.index] = timing[f"measure/{row.slug}"] + (epochs - 1) * first
            source[row.index] = f"--measure: 1 epoch {first:.0f} s"
        elif started:
            per_row[row.index] = epochs * sum(started) / len(started)
            source[row.index] = f"first epoch {started[0]:.0f} s x {epochs} (training only)"
        else:
            per_row[row.index], source[row.index] = None, "unknown: no epoch of this row measured yet"
    return per_row, source


def remaining_seconds(runs: Sequence[Run], per_row: dict[int, float | None]) -> tuple[float, int]:
    """Seconds left over the runs not done (a partial run counts its epochs left), and how many of them belong to
    rows with no measurement: those are counted at the mean of the measured rows, or not at all when none is."""
    known = [v for v in per_row.values() if v is not None]
    stand_in = sum(known) / len(known) if known else 0.0
    total, unknown = 0.0, 0
    for r in runs:
        if r.state == "done":
            continue
        est = per_row.get(r.row.index)
        unknown += est is None
        total += (stand_in if est is None else est) * (1 - min(r.epochs_done(), _epochs(r.row.cfg)) / _epochs(r.row.cfg))
    return total, unknown


def format_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


def measure(runs: Sequence[Run], out: Path) -> None:
    """Train one epoch of every row without a measurement (seed of its first run) in ``DIR/measure/r{row}``."""
    per_row, _ = estimate(runs, out)
    timing = Timing(out)
    for run in {r.row.index: r for r in reversed(runs)}.values():
        if per_row.get(run.row.index) is not None:
            continue
        probe = Path(out) / "measure" / run.row.slug
        shutil.rmtree(probe, ignore_errors=True)
        first = run.row.cfg["train"]["stages"][:1]
        one = [f"train.stages=[{{name: {first[0]['name']}, epochs: 1}}]"] if first else ["train.epochs=1"]
        probe_run = Run(run.row, run.seed, probe)
        print(f"[ablate] measuring one epoch of row {run.row.index} '{run.row.name}' in {probe}", flush=True)
        timing.record(f"measure/{run.row.slug}", _train(probe, train_command(probe_run, one + ["train.warmup_epochs=0"]),
                                                        f"measurement of row {run.row.index}"))


def run_study(runs: Sequence[Run], out: Path, on_progress: Callable[[], None] = lambda: None) -> None:
    """Train every run not done, in order; ``on_progress`` (the table writer) after each finished run."""
    for run in runs:
        check_config(run)
    timing, t_start, trained = Timing(out), time.time(), 0
    for i, run in enumerate(runs, 1):
        state = run.state
        if state == "done":
            continue
        per_row, _ = estimate(runs, out)
        left, unknown = remaining_seconds(runs, per_row)
        eta = (f"ETA {format_seconds(left)}" + (f" ({unknown} run(s) of rows not yet measured counted as the mean "
                                                  "measured row)" if unknown else "")
               if any(v is not None for v in per_row.values()) else "ETA unknown until a first epoch is measured")
        print(f"[ablate] run {i}/{len(runs)}: {run.key} ({'resuming' if state == 'partial' else 'new'}) | "
              f"{trained} trained in {format_seconds(time.time() - t_start)} this session | {eta}", flush=True)
        if state == "todo" and (run.dir / "metrics.jsonl").exists():
            (run.dir / "metrics.jsonl").unlink()  # epochs of a start killed before its first checkpoint
        seconds = _train(run.dir, train_command(run), f"run {run.key}")
        if state == "todo":
            timing.record(run.key, seconds)
        trained += 1
        on_progress()
    print(f"[ablate] all {len(runs)} runs done ({trained} trained in {format_seconds(time.time() - t_start)})",
          flush=True)


def describe_plan(rows: Sequence[Row], runs: Sequence[Run], out: Path, cumulative: bool) -> str:
    """The dry run's text: rows and their resolved differences, runs by state, and the time estimate."""
    seeds = sorted({r.seed for r in runs}, key=[r.seed for r in runs].index)
    lines = [f"study under {out}: {len(rows)} rows x {len(seeds)} seed(s) {seeds} = {len(runs)} runs "
             f"({'cumulative: each row on top of the one before' if cumulative else 'independent: each step alone'})"]
    for row in rows:
        sets = f" --set {' '.join(row.overrides)}" if row.overrides else ""
        lines.append(f"row {row.index} '{row.name}': {row.recipe}{sets}")
        if row.parent is not None:
            lines += [f"    vs row {row.parent}: {k}: {fmt_value(a)} -> {fmt_value(b)}" for k, a, b in row.changes]
    per_row, source = estimate(runs, out)
    lines.append("runs:")
    for row in rows:
        mine = [r for r in runs if r.row.index == row.index]
        states = ", ".join(f"seed {r.seed} {r.state}" + (f" ({r.epochs_done()}/{_epochs(row.cfg)} epochs)"
                                                         if r.state == "partial" else "") for r in mine)
        est = per_row[row.index]
        lines.append(f"  {row.slug}: {states} | {format_seconds(est) + ' per run' if est is not None else '?'} "
                     f"({source[row.index]})")
    left, unknown = remaining_seconds(runs, per_row)
    n_left = sum(r.state != "done" for r in runs)
    if unknown:
        how = "counted as the mean measured row" if any(v is not None for v in per_row.values()) else "not counted"
        lines.append(f"estimated time left: ~{format_seconds(left)} for {n_left} run(s); {unknown} run(s) of rows with no "
                     f"measured epoch are {how}: add --measure to train one epoch of each such row first (in "
                     "DIR/measure), or start the study (its ETA updates after every run)")
    else:
        lines.append(f"estimated time left: {format_seconds(left)} for {n_left} run(s)")
    return "\n".join(lines)

