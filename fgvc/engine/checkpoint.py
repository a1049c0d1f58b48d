"""Crash-safe checkpoints.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'd, then
renamed over the old one (``os.replace`` is atomic on POSIX), so a kill at any moment leaves
either the old or the new file, never half of one (the next save removes a killed save's temporary
file). The file starts with a magic line and the SHA-256 of the payload, checked on load, so damage
after writing is caught. A full disk while saving removes the temporary file and leaves the previous
checkpoint untouched.

Loading always uses ``torch.load(weights_only=True)``: a checkpoint holds tensors, numbers,
strings, lists and dicts only, and a file that needs arbitrary unpickling is refused.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from fgvc.errors import CheckpointError

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "atomic_write_bytes", "FORMAT"]

FORMAT = "fgvc-checkpoint-v1"


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (another thread could create a file
    while ``os.umask`` briefly holds a temporary value)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename (see the module docstring). The file gets
    the mode an ordinary ``open(path, "w")`` gives (0666 less the umask, 0644 usually), not mkstemp's 0600, so
    final.json, environment.json and checkpoints read like the rest of the run directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


MAGIC = b"FGVCCKPT1\n"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Serialise ``state`` and write it atomically, prefixed by a magic line and its SHA-256."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    payload = buf.getvalue()
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a save that was killed mid-write
        stale.unlink(missing_ok=True)
    try:
        atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).digest() + payload)
    except OSError as exc:
        kept = (f"the previous checkpoint {path.name} is intact" if path.is_file()
                else "no earlier checkpoint existed at this path")
        raise CheckpointError(
            f"could not write checkpoint {path}: {exc}; {kept}. "
            "Free disk space (or set --output to another disk) and resume with --resume."
        ) from exc


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read, verify (checksum, format tag) and unpickle with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 32:
        raise CheckpointError(
            f"{path} is not an fgvc checkpoint (it lacks the fgvc header); "
            "fgvc.evaluate and --resume take the checkpoints/last.pt or best.pt of an fgvc run"
        )
    digest, payload = blob[len(MAGIC) : len(MAGIC) + 32], blob[len(MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"checkpoint {path} is corrupt (checksum mismatch: the file was damaged after it was written). "
            "Use the run's other checkpoint (checkpoints/best.pt or last.pt) or retrain."
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} was refused: it needs arbitrary unpickling ({_refusal_reason(exc)}). "
            "fgvc loads with weights_only=True and never runs code from a file."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an fgvc checkpoint (no '{FORMAT}' tag)")
    return state


def _refusal_reason(exc: BaseException) -> str:
    """The part of torch's weights_only error that says what was refused (not its advice to turn safety off)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    else:
        text = text.splitlines()[0] if text.strip() else type(exc).__name__
    return " ".join(text.split()).split(". ")[0][:200]
