"""Fixtures of the serve tests: a tiny trained run (3 classes, 32 px) and a real server on a free loopback port."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("httpx", reason="the serve extra is not installed (pip install -e '.[serve]')")

from serve_helpers import LiveServer  # noqa: E402  (after the skips: it needs the serve extra)

@pytest.fixture(scope="session")
def serve_data(synthetic_set) -> Path:
    return synthetic_set(4)


@pytest.fixture(scope="session")
def serve_run(serve_data, tiny_run) -> Path:
    """A baseline trained for two steps: a real run directory."""
    return tiny_run(serve_data, "train.max_steps=2")


@pytest.fixture(scope="session")
def live_server(serve_run) -> Iterator[LiveServer]:
    """One real server on the tiny run, shared by the load and browser tests."""
    server = LiveServer(str(serve_run), "--max-wait-ms", "10")
    try:
        yield server
    finally:
        server.stop()
