"""The one error wrapper of every command's ``main``: what the user can fix is one line, never a traceback.

==== ==========================================================================================================
exit meaning
==== ==========================================================================================================
0    ok
1    a check ran and failed (:class:`fgvc.errors.CheckFailed`: an export's parity, a benchmark bar); one
     ``error: ...`` line
2    a user error (:class:`fgvc.errors.UserError`, a disk that is full or read-only, a bad flag); one
     ``error: ...`` line
130  interrupted (Ctrl-C)
==== ==========================================================================================================

A command's ``main`` returns nothing when it succeeded; every other outcome is raised (a :class:`UserError`, a
:class:`CheckFailed`), so the exit codes above are decided here and nowhere else. Anything else (a ``ValueError`` of a
bug, say) keeps its traceback.
"""
from __future__ import annotations

import argparse
import errno
import functools
import re
import sys
from typing import Callable

from fgvc.errors import (EXIT_CHECK_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR, CheckFailed, UserError,
                         exit_codes_text)

__all__ = ["command", "friendly", "worker_error", "disk_error", "exit_codes_text"]

_WORKER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")
_LAST = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*): (.*)$")


def _subclass_names(types: tuple[type[BaseException], ...]) -> set[str]:
    names, todo = set(), list(types)
    while todo:
        t = todo.pop()
        if t.__name__ not in names:
            names.add(t.__name__)
            todo += t.__subclasses__()
    return names


def worker_error(exc: BaseException) -> str | None:
    """The one-line message of a user error raised inside a DataLoader worker.

    torch re-raises it in the main process as ``RuntimeError`` (or as its own type when it takes one
    argument) with the worker's whole traceback as the message; the last line is the original error."""
    text = str(exc).strip()
    if not _WORKER.match(text):
        return None
    m = _LAST.match(text.splitlines()[-1].strip())
    if m is None or m.group(1) not in _subclass_names((UserError,)):
        return None
    return m.group(2)


_DISK_ERRNOS = {errno.ENOSPC: "free disk space", errno.EDQUOT: "free disk space (the disk quota is full)",
                errno.EROFS: "give a writable folder (e.g. --output elsewhere)",
                errno.EACCES: "fix the file's permissions or give another path",
                errno.EPERM: "fix the file's permissions or give another path"}


def disk_error(exc: OSError) -> str | None:
    """One line for an ``OSError`` a user fixes on the machine (disk full, read-only, no permission), naming the
    file; None for any other."""
    fix = _DISK_ERRNOS.get(exc.errno or 0)
    if fix is None:
        return None
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; {fix}, then run the command again"


def friendly(main: Callable[..., None]) -> Callable[..., int]:
    """Wrap a CLI main that returns nothing: its return -> exit 0, a user error -> one ``error: ...`` line on stderr
    and exit 2, a failed check -> one line and exit 1, Ctrl-C -> exit 130; any other exception (a bug) propagates
    with its traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:  # type: ignore[no-untyped-def]
        try:
            main(*args, **kwargs)
            return EXIT_OK
        except UserError as exc:
            return _error(worker_error(exc) or str(exc), EXIT_USER_ERROR)
        except CheckFailed as exc:
            return _error(str(exc), EXIT_CHECK_FAILED)
        except (RuntimeError, OSError) as exc:
            # a user error from a DataLoader worker (re-wrapped by torch as a RuntimeError); a full disk, a read-only
            # folder, a file without permission (an OSError): not bugs of fgvc. Any other keeps its traceback.
            msg = disk_error(exc) if isinstance(exc, OSError) else worker_error(exc)
            if msg is None:
                raise
            return _error(msg, EXIT_USER_ERROR)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return wrapper


def command(parse: Callable[[list[str] | None], argparse.Namespace]
            ) -> Callable[[Callable[[argparse.Namespace], None]], Callable[..., int]]:
    """Make a command's ``main(args) -> None`` its entry point ``main(argv=None) -> int`` (the exit code):
    ``argv`` (default ``sys.argv[1:]``) parsed by ``parse``, then ``main(args)``, inside :func:`friendly`::

        @command(parse_args)
        def main(args: argparse.Namespace) -> None:
            ...
    """

    def decorate(run: Callable[[argparse.Namespace], None]) -> Callable[..., int]:
        @functools.wraps(run)
        def main(argv: list[str] | None = None) -> None:
            run(parse(argv))

        return friendly(main)

    return decorate


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
