"""Atomic, verified checkpoints; weights_only loading."""
import os
import pickle

import pytest
import torch

from fgvc.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "progress": {"epoch": 3}, "rng": {"torch": torch.get_rng_state()}}
    save_checkpoint(state, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["progress"]["epoch"] == 3
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_corruption_detected(tmp_path):
    save_checkpoint({"model": {"w": torch.ones(100)}}, tmp_path / "c.pt")
    blob = bytearray((tmp_path / "c.pt").read_bytes())
    blob[-50] ^= 0xFF
    (tmp_path / "c.pt").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "c.pt")
    (tmp_path / "t.pt").write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "t.pt")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_arbitrary_pickle_refused(tmp_path):
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="not an fgvc checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_failed_write_keeps_previous(tmp_path, monkeypatch):
    save_checkpoint({"model": {"w": torch.zeros(2)}}, tmp_path / "c.pt")
    import fgvc.engine.checkpoint as ck

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            raise OSError(28, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    monkeypatch.setattr(ck.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(CheckpointError, match="previous checkpoint .* is intact"):
        save_checkpoint({"model": {"w": torch.ones(2)}}, tmp_path / "c.pt")
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["model"]["w"], torch.zeros(2))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
