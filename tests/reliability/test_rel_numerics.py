"""Numerical safety end to end (in-process runs): a NaN/Inf loss stops the run with a message and keeps the
last good checkpoint (train.on_nan=stop), or skips the step and counts it (train.on_nan=skip); 20 skipped steps
in a row stop the run even across epochs; train.clip_grad bounds the total gradient norm of every step."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from rel_helpers import (
    base_recipe, copy_data, metrics_rows, one_line_error, torch_globals, train_inprocess, write_recipe,
)
from torch.optim.optimizer import register_optimizer_step_pre_hook

from fgvc.engine.checkpoint import load_checkpoint
from fgvc.methods.baseline import Baseline
from fgvc.registry import METHODS

assert torch_globals  # a fixture, used by name below

NAME = "rel_test_nan_baseline"


class NaNAt(Baseline):
    """The baseline whose loss is NaN (or +Inf) on the training-step calls listed in ``bad_calls`` (1-based)."""

    def __init__(self, *args, bad_calls: tuple[int, ...] = (), value: float = math.nan, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bad_calls, self.value, self.calls = set(bad_calls), value, 0

    def training_step(self, images, targets):
        out = super().training_step(images, targets)
        self.calls += 1
        if self.calls in self.bad_calls or -1 in self.bad_calls:
            out["loss"] = out["loss"] * self.value
        return out


@pytest.fixture
def nan_method():
    METHODS.register(NAME)(NaNAt)
    yield NAME
    del METHODS._table[NAME]


def _recipe(tmp_path: Path, **train) -> Path:
    cfg = base_recipe(copy_data(tmp_path / "data"), model={"name": NAME, "args": train.pop("model_args", {})})
    cfg["train"].update(checkpoint_every_steps=1, **train)
    return write_recipe(tmp_path / "r.yaml", cfg)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys, torch_globals, nan_method, value):
    recipe = _recipe(tmp_path, model_args={"bad_calls": [8], "value": value})  # epoch 2, batch 3
    run = tmp_path / "run"
    rc, err = train_inprocess([recipe, "--output", run], capsys)
    assert rc == 2
    line = one_line_error(err)
    assert line.startswith(f"error: loss became {value} at epoch 2, batch 3; the last good checkpoint ")
    assert str(run / "checkpoints" / "last.pt") in line and "train.on_nan=skip" in line and "train.clip_grad" in line
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["progress"]["global_step"] == 7 and state["progress"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (run / "final.json").exists()
    # the kept checkpoint resumes (the NaN came from the method, which restarts its call count)
    rc, _ = train_inprocess(["--resume", run], capsys)
    assert rc == 0 and json.loads((run / "final.json").read_text())["steps"] == 10


def test_nan_loss_skip_counts_skipped_steps(tmp_path, capsys, torch_globals, nan_method):
    recipe = _recipe(tmp_path, on_nan="skip", model_args={"bad_calls": [2, 3]})
    run = tmp_path / "run"
    rc, err = train_inprocess([recipe, "--output", run], capsys)
    assert rc == 0, err
    rows = metrics_rows(run)
    assert rows[0]["skipped_steps"] == 2 and "skipped_steps" not in rows[1]
    assert rows[0]["step"] == 3 and rows[1]["step"] == 8  # 5 batches per epoch, 2 skipped
    assert all(math.isfinite(r["loss"]) for r in rows)
    log = (run / "train.log").read_text()
    assert log.count("step skipped (train.on_nan=skip)") == 2 and "non-finite loss (nan) at epoch 1, batch 2" in log
    assert json.loads((run / "final.json").read_text())["steps"] == 8


def test_always_nan_skip_gives_up_after_20_in_a_row(tmp_path, capsys, torch_globals, nan_method):
    recipe = _recipe(tmp_path, on_nan="skip", batch_size=2, model_args={"bad_calls": [-1]})  # 10 batches/epoch
    run = tmp_path / "run"
    rc, err = train_inprocess([recipe, "--output", run], capsys)
    assert rc == 2
    line = one_line_error(err)  # counted across the epoch boundary (10 per epoch)
    assert line.startswith("error: 20 non-finite losses in a row up to epoch 2, batch 10; the last good checkpoint")
    assert not (run / "final.json").exists()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["global_step"] == 0


def _step_norms(run_args: list, capsys) -> list[float]:
    """Total gradient norm seen by the optimizer at every step of a run."""
    norms: list[float] = []

    def hook(opt, args, kwargs):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        rc, err = train_inprocess(run_args, capsys)
    finally:
        handle.remove()
    assert rc == 0, err
    return norms


def test_clip_grad_bounds_the_total_norm(tmp_path, capsys, torch_globals):
    cfg = base_recipe(copy_data(tmp_path / "data"))
    recipe = write_recipe(tmp_path / "r.yaml", cfg)
    free = _step_norms([recipe, "--output", tmp_path / "free"], capsys)
    clip = 0.5 * min(free)  # below every unclipped norm: each step must be clipped
    clipped = _step_norms([recipe, "--output", tmp_path / "clipped", "--set", f"train.clip_grad={clip}"], capsys)
    assert len(free) == len(clipped) == 10
    assert min(free) > clip and max(clipped) <= clip * (1 + 1e-4)
    assert max(clipped) >= clip * 0.99  # clipped to the bound, not zeroed
