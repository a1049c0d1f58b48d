"""Shared command-line plumbing: user errors print one clear line (no traceback) and exit 2."""
from __future__ import annotations

import functools
import sys
from typing import Callable

USER_ERRORS: tuple[type[BaseException], ...] = ()


def user_errors() -> tuple[type[BaseException], ...]:
    from fgvc.config import ConfigError
    from fgvc.engine.checkpoint import CheckpointError
    from fgvc.engine.trainer import TrainingDiverged
    from fgvc.models.backbone import WeightsError
    from fgvc.registry import RegistryError

    errors: list[type[BaseException]] = [ConfigError, CheckpointError, TrainingDiverged, WeightsError, RegistryError]
    try:
        from fgvc.data.base import DataError

        errors.append(DataError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def friendly(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a CLI main: known user errors -> 'error: ...' on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:  # type: ignore[no-untyped-def]
        try:
            return main(*args, **kwargs)
        except user_errors() as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
