"""The user errors of fgvc: problems a user can fix (a recipe key, a file, a flag), as opposed to bugs.

Every floor raises one of these with a message that names what was wrong, where (file, line, key) and
what to do; every command catches :class:`UserError` and prints it as one ``error: ...`` line with exit
code 2, without a traceback (:func:`fgvc.cli.friendly`). This module imports nothing of fgvc, so any
floor (and the CLI) can import it without pulling in torch or the trainer.

A check that ran and failed (an export's parity, a benchmark's bar) is not a user error: it is a
:class:`CheckFailed`, printed as one ``error: ...`` line with exit code 1. The exit codes of every command:
0 ok, 1 a check failed, 2 a user error, 130 interrupted (:data:`EXIT_CODES`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "UserError", "ConfigError", "RegistryError", "CheckpointError", "WeightsError", "TrainingDiverged",
    "DataError", "SpeedError", "BenchError", "EmbeddingError", "DeployError", "PredictError", "ServeError",
    "PruningError", "ZeroShotError", "FlagError", "MissingExtraError", "CheckFailed", "EXIT_OK", "EXIT_CHECK_FAILED",
    "EXIT_USER_ERROR", "EXIT_INTERRUPTED", "EXIT_CODES", "exit_codes_text", "CHECK_HINT", "BadImageError",
    "AnnotationError", "DatasetNotFoundError", "MissingImagesError", "UnsafeArchiveError", "PathUnavailable",
    "ParityError",
]

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = {EXIT_OK: "ok", EXIT_CHECK_FAILED: "a check failed (parity, data check, benchmark bar)",
              EXIT_USER_ERROR: "user error (one 'error:' line)", EXIT_INTERRUPTED: "interrupted (Ctrl-C)"}


def exit_codes_text() -> str:
    """One line: ``exit codes: 0 ok, 1 a check failed (...), 2 user error (...), 130 interrupted (...)``."""
    return "exit codes: " + ", ".join(f"{code} {what}" for code, what in EXIT_CODES.items())


class CheckFailed(Exception):
    """A check that ran and failed (an exported file's parity, a benchmark bar): exit code 1, one ``error:`` line.
    Not a :class:`UserError`: the input was valid, the result was not good enough."""


class UserError(Exception):
    """Base class: something the user can fix. The message is the whole story (one line, with the fix)."""


class ConfigError(UserError, ValueError):
    """A recipe or command-line problem: says which key, where it came from, and the fix."""


class RegistryError(UserError, KeyError, ValueError):
    """An unknown component name (method, dataset, loss, protocol) or an argument its builder does not take."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that could not be written or read; the message says which file and what to do."""


class WeightsError(UserError, RuntimeError):
    """A weight file that is missing, unreadable or does not fit the backbone."""


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN/Inf (train.on_nan=stop, or too many skipped steps)."""


class DataError(UserError, ValueError):
    """Anything wrong with a data set on disk (see :mod:`fgvc.data.base` for the specific kinds)."""


class SpeedError(UserError, ValueError):
    """A speed measurement that cannot run as asked (e.g. fp16 on the CPU)."""


class BenchError(UserError, ValueError):
    """A run directory or published table that cannot be read; the message names the file and the fix."""


class EmbeddingError(UserError, ValueError):
    """Embeddings that cannot be scored (NaN/Inf, labels of another length, no class with two images, an
    optional backend such as faiss that is not installed); the message says which and what to do."""


class DeployError(UserError, ValueError):
    """An export, quantization or ONNX prediction that cannot run as asked (an unknown format, an input size the
    backbone cannot take, an ONNX file without fgvc metadata); the message names the flag or file and the fix."""


class FlagError(UserError, ValueError):
    """A command-line flag outside its range (``--n 0``); the message names the flag, the bound and the value."""


class PredictError(UserError, ValueError):
    """A prediction request that cannot run as given (a missing path, a bad flag, a recipe instead of a run)."""


class ServeError(UserError, ValueError):
    """A server that cannot start as asked (a bad flag, a port in use, the serve extra missing)."""


class PruningError(UserError, ValueError):
    """A method, backbone or setting that structured pruning cannot handle; the message says why."""


class ZeroShotError(UserError, ValueError):
    """A zero-shot classification that cannot run as given (a templates file without ``{}``, a CLIP model name
    open_clip does not know, weights that do not fit it); the message names the flag or file and the fix."""


class MissingExtraError(UserError, ImportError):
    """An optional package a command needs is not installed; the message names the pip command."""


CHECK_HINT = "run `python -m fgvc.datasets check ROOT` to list every bad file, or set data.on_bad_image=skip"


class BadImageError(DataError):
    """An image file that is missing, empty, truncated, corrupt or too large to decode safely."""

    def __init__(self, path: str | Path, problem: str, hint: str = CHECK_HINT, kind: str = "corrupt") -> None:
        self.path, self.problem, self.kind = Path(path), problem, kind  # kind: missing/empty/truncated/corrupt/bomb
        super().__init__(f"bad image {path}: {problem}; {hint}")


class AnnotationError(DataError):
    """A malformed annotation file: names the file, the line and the offending text."""

    def __init__(self, path: str | Path, line: int | None, problem: str, text: str | None = None) -> None:
        self.path, self.line, self.problem = Path(path), line, problem
        where = f"{path}, line {line}" if line is not None else str(path)
        shown = f": {text.strip()[:120]!r} (fix or delete this line)" if text is not None else ""
        super().__init__(f"{where}: {problem}{shown}")


class DatasetNotFoundError(DataError):
    """The data set (or a required file of it) is not where the recipe says."""


class MissingImagesError(DatasetNotFoundError):
    """The annotation files are there but (some of) the image files are not."""


class UnsafeArchiveError(DataError):
    """A tar member that would write outside the target folder (or a device file)."""


class PathUnavailable(DeployError):
    """A path that cannot run here (fp16 on the CPU, an exported file on CUDA, onnxruntime not installed)."""


class ParityError(CheckFailed, RuntimeError):
    """The exported file disagrees with the PyTorch model beyond the tolerance (not a user error: exit code 1)."""

    def __init__(self, result: Any) -> None:  # a fgvc.deploy.export.ExportResult
        super().__init__(f"{result.parity.line() if result.parity else 'parity failed'}; the file is kept as "
                         f"{result.path}")
        self.result = result
