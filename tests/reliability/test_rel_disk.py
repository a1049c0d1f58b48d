"""A full disk while a real (in-process) training run saves its checkpoint: the write fails half-way with ENOSPC,
the user sees one line saying the previous checkpoint is intact, that checkpoint loads, no temporary file is left,
and ``--resume`` continues once there is space again, ending exactly like an undisturbed run."""
from __future__ import annotations

import errno
import json
import os

import pytest
from rel_helpers import (
    base_recipe, copy_data, one_line_error, torch_globals, train_inprocess, without_timing, write_recipe,
)

import fgvc.engine.checkpoint as ck
from fgvc.engine.checkpoint import load_checkpoint

assert torch_globals  # a fixture, used by name below
pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names open files through /proc (Linux)")


class _FullDisk:
    """A file object whose writes stop half-way with ENOSPC (what a full disk does)."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.f, name)


# fail_at: a step checkpoint, and the epoch-end save after step 5 (each trains: ~1.5-3 s)
@pytest.mark.parametrize("fail_at", [4, pytest.param(6, marks=pytest.mark.slow)])
def test_full_disk_while_saving_keeps_previous_checkpoint(tmp_path, capsys, monkeypatch, torch_globals, fail_at):
    cfg = base_recipe(copy_data(tmp_path / "data"))
    cfg["train"].update(checkpoint_every_steps=1, scheduler="none")
    recipe = write_recipe(tmp_path / "r.yaml", cfg)
    run = tmp_path / "run"
    saves = {"n": 0}
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        if "w" in mode and os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".last.pt."):
            saves["n"] += 1
            if saves["n"] == fail_at:
                return _FullDisk(f)
        return f

    monkeypatch.setattr(ck.os, "fdopen", fdopen)
    rc, err = train_inprocess([recipe, "--output", run], capsys)
    monkeypatch.undo()
    assert rc == 2
    line = one_line_error(err)
    last = run / "checkpoints" / "last.pt"
    assert line == (f"error: could not write checkpoint {last}: [Errno 28] No space left on device; the previous "
                    "checkpoint last.pt is intact. Free disk space (or set --output to another disk) and resume "
                    "with --resume.")
    state = load_checkpoint(last)
    assert state["progress"]["global_step"] == (fail_at - 1 if fail_at < 6 else 5)
    assert not [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")]
    # space again: resume, and the run ends as an undisturbed one
    rc, err = train_inprocess(["--resume", run], capsys)
    assert rc == 0, err
    rc, err = train_inprocess([recipe, "--output", tmp_path / "ref"], capsys)
    assert rc == 0, err
    got, ref = (without_timing(json.loads((r / "final.json").read_text())) for r in (run, tmp_path / "ref"))
    assert got == ref
