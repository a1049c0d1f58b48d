"""Fixtures of the serve tests: a tiny trained run (3 classes, 32 px) and a real server on a free loopback port."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("httpx", reason="the serve extra is not installed (pip install -e '.[serve]')")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def serve_data(synthetic_set) -> Path:
    return synthetic_set(4)


@pytest.fixture(scope="session")
def serve_run(serve_data, tiny_run) -> Path:
    """A baseline trained for two steps: a real run directory."""
    return tiny_run(serve_data, "train.max_steps=2")


class LiveServer:
    """``python -m fgvc.serve`` as a child process on 127.0.0.1 and a free port; ``url`` once /health is 200."""

    def __init__(self, *args: str, ready_s: float = 120.0) -> None:
        import httpx

        self.proc = subprocess.Popen([sys.executable, "-m", "fgvc.serve", *args, "--host", "127.0.0.1", "--port", "0"],
                                     cwd=REPO, stderr=subprocess.PIPE, text=True)
        self.url, self.lines = "", []
        deadline = time.monotonic() + ready_s
        assert self.proc.stderr is not None
        while time.monotonic() < deadline and not self.url:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(f"the server exited ({self.proc.wait()}) before listening: {self.lines}")
            self.lines.append(line)
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            self.url = m.group(1) if m else ""
        assert self.url, f"no 'listening on' line within {ready_s} s: {self.lines}"
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"/health never answered 200 within {ready_s} s")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code (killed after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()


@pytest.fixture(scope="session")
def live_server(serve_run) -> Iterator[LiveServer]:
    """One real server on the tiny run, shared by the load and browser tests."""
    server = LiveServer(str(serve_run), "--max-wait-ms", "10")
    try:
        yield server
    finally:
        server.stop()
