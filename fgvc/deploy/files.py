"""Files that appear whole or not at all: write to a temporary name in the destination's folder, rename at the end.

:class:`Staged` gives the temporary path (hidden, same folder, so the final ``os.replace`` is atomic on one file
system); :meth:`Staged.commit` renames it into place. Leaving the ``with`` block without a commit (an error, a failed
check) deletes the temporary file and any folder the stage created, so a failed command leaves nothing behind.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

__all__ = ["Staged", "size_mb"]


def size_mb(path: str | Path) -> float:
    """The size of a file in megabytes (10^6 bytes)."""
    return Path(path).stat().st_size / 1e6


class Staged:
    """``stage = Staged(final)``; ``with stage as tmp: write(tmp); stage.commit()`` -- ``final`` appears only at the
    commit."""

    def __init__(self, final: str | Path) -> None:
        self.final = Path(final)
        self.created: list[Path] = []  # folders the stage makes for the file, innermost first
        folder = self.final.parent
        while not folder.exists():
            self.created.append(folder)
            folder = folder.parent
        self.temp = self.final.parent / f".{self.final.stem}.tmp{os.getpid()}{self.final.suffix}"
        self.committed = False

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        return self.temp

    def commit(self, dest: str | Path | None = None) -> Path:
        """Rename the temporary file to ``dest`` (default: the final path) and return that path."""
        target = Path(dest) if dest is not None else self.final
        os.replace(self.temp, target)
        self.committed = True
        return target

    def discard(self) -> None:
        """Delete the temporary file and the folders the stage created, innermost first, while they are empty."""
        self.temp.unlink(missing_ok=True)
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:
                break

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.committed:
            self.discard()
