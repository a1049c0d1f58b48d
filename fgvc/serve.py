"""``python -m fgvc.serve RUN_DIR_OR_ONNX [--host 127.0.0.1] [--port 8000] [--max-batch 32] [--max-wait-ms 5]
[--queue 256] [--max-bytes 10000000] [--max-pixels 50000000] [--token TOKEN] [--backend auto|...]``

Serves a trained run (or its fp32 / INT8 ``.onnx`` export) over HTTP, loaded once exactly as ``fgvc.predict`` loads
it. ``POST /predict`` takes one or more photos (multipart field ``image``; ``?topk=K``, ``?cam=1`` for a run's
Grad-CAM overlay) and answers ``{"results": [...]}`` with ``fgvc.predict --json``'s objects; ``GET /`` is a page to
try it in a browser; ``/classes``, ``/info``, ``/health`` (200 once the model answered a warm-up batch) and
``/metrics`` (Prometheus text) describe it. Concurrent requests are gathered for up to ``--max-wait-ms`` into one
forward pass of at most ``--max-batch`` images (:mod:`fgvc.serving.batching`).

Safe by default: it listens on 127.0.0.1 only (``--host 0.0.0.0`` to open it, with ``--token``); a body over
``--max-bytes`` or an image over ``--max-pixels`` gets 413, a file that is not an image 415, a truncated one 400,
a full queue (``--queue`` pending images) 503 with ``Retry-After``; ``--token`` (or ``FGVC_SERVE_TOKEN``) requires
``Authorization: Bearer TOKEN`` on everything but ``/`` and ``/health``. No request names a file on the server.
SIGTERM or Ctrl-C stops accepting, answers the requests in flight, and exits 0. ``--port 0`` takes a free port;
the line ``fgvc.serve: listening on http://HOST:PORT`` (stderr) says which.

Needs the ``serve`` extra: ``pip install -e '.[serve]'``.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import signal
import socket
import sys
from dataclasses import fields
from typing import Any, Iterator

from fgvc.cli import add_model_source_arguments, add_threads, command, model_source, require_at_least
from fgvc.errors import ServeError  # defined with every user error; importable here as before
from fgvc.extras import require
from fgvc.serving.app import Settings, create_app, default_decode_threads
from fgvc.serving.limits import Limits
from fgvc.serving.model import load_model

__all__ = ["ServeError", "main", "parse_args", "TOKEN_ENV"]

TOKEN_ENV = "FGVC_SERVE_TOKEN"
GRACEFUL_S = 30  # seconds in-flight requests get to finish after SIGTERM


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fgvc-serve", description="Serve a trained fgvc run (or its .onnx export) "
                                 "over HTTP, with dynamic batching and a web page.")
    add_model_source_arguments(ap)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: a free one, printed)")
    for f in (*fields(Settings), *fields(Limits)):  # --max-batch ... --queue: default and help written once, there
        if "help" in f.metadata:
            ap.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                            help=f"{f.metadata['help']} (default {f.default:,})")
    ap.add_argument("--token", default=None,
                    help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV} when set, else none)")
    add_threads(ap, "of a forward pass: ONNX Runtime's intra-op threads for an .onnx file, torch's for a run")
    ap.add_argument("--decode-threads", type=int, default=None, help="threads decoding uploads (default: cores, <= 4)")
    ap.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                    help="uvicorn's log level (default warning; info logs every request)")
    return ap.parse_args(argv)


def _check(args: argparse.Namespace) -> None:
    require_at_least(args, 1, "max_batch", "queue", "max_bytes", "max_pixels", "max_files", "threads", "decode_threads")
    if args.max_wait_ms < 0 or args.max_wait_ms > 10_000:
        raise ServeError(f"--max-wait-ms must be in [0, 10000], got {args.max_wait_ms}")
    if not 0 <= args.port <= 65535:
        raise ServeError(f"--port must be in [0, 65535], got {args.port}")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), or a :class:`ServeError` saying what to do."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name: resolved by bind
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is in use; pick another --port (or --port 0 for a free one)") \
                from None
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e}); check --host and --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but SIGTERM / SIGINT end it with exit code 0 after the graceful shutdown (uvicorn
        re-raises the signal, which would kill the process with it)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            import threading

            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)

    return Server


@command(parse_args)
def main(args: argparse.Namespace) -> None:
    _check(args)
    require("fastapi", "fastapi", "serving a model", extra="serve")
    require("uvicorn", "uvicorn", "serving a model", extra="serve")
    require("python_multipart", "python-multipart", "serving a model", extra="serve")
    target, _ = model_source(args, ServeError)  # load_model tells a run from an .onnx file itself
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    sock = bind(args.host, args.port)  # before loading: a port in use fails in a second, not after the model
    try:
        import uvicorn  # the serve extra, checked by require() above

        onnx_options = {"img_size": args.img_size, "mean": args.mean, "std": args.std, "crop_pct": args.crop_pct,
                        "classes": args.classes}
        model = load_model(target, args.checkpoint, args.sets, args.weights, args.backend, onnx_options,
                           args.threads)
        settings = Settings(args.max_batch, args.max_wait_ms,
                            Limits(args.max_bytes, args.max_pixels, args.max_files, args.queue), token,
                            args.decode_threads or default_decode_threads())
        app = create_app(model, settings)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"fgvc.serve: {target} ({model.info['backend']}), {len(model.class_names)} classes", file=sys.stderr)
        if not _is_loopback(args.host):
            print(f"fgvc.serve: warning: listening on {args.host}, reachable from other machines"
                  + ("" if token else "; anyone can use it (set --token)"), file=sys.stderr)
        print(f"fgvc.serve: listening on http://{shown}:{port}  (Ctrl-C or SIGTERM to stop)", file=sys.stderr,
              flush=True)
        config = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=GRACEFUL_S,
                                server_header=False, access_log=args.log_level in ("info", "debug"))
        _server_class()(config).run(sockets=[sock])
    finally:
        sock.close()
    print("fgvc.serve: stopped", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
