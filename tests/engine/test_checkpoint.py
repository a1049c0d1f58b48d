"""Atomic, verified checkpoints; weights_only loading."""
import hashlib
import os
import pickle
from pathlib import Path

import pytest
import torch

from fgvc.engine.checkpoint import FORMAT, MAGIC, CheckpointError, load_checkpoint, save_checkpoint


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
    """Unpickling it creates ``marker``: the proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_without_the_fgvc_header_is_refused(tmp_path):
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil(tmp_path / "pwned")))
    with pytest.raises(CheckpointError, match="not an fgvc checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_with_a_valid_header_is_refused_by_weights_only(tmp_path):
    """The header and checksum pass, so only weights_only=True stands between the file and its code."""
    payload = pickle.dumps({"format": FORMAT, "model": Evil(tmp_path / "pwned")})
    (tmp_path / "evil.pt").write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
    with pytest.raises(CheckpointError, match="refused: it needs arbitrary unpickling"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    pickle.loads(payload)  # control: the payload is live when unpickled unsafely
    assert (tmp_path / "pwned").exists()


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
