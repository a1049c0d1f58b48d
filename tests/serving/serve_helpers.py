"""Helpers of the serve tests: solid-colour images as bytes, a fake model whose answer is the image's colour, and a
real server in a child process (:class:`LiveServer`)."""
from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fgvc.serving.model import ServedModel

REPO = Path(__file__).resolve().parents[2]
COLOURS = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}


def image_bytes(colour: str | tuple[int, int, int] = "red", size: tuple[int, int] = (24, 16), fmt: str = "PNG") -> bytes:
    rgb = COLOURS[colour] if isinstance(colour, str) else colour
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format=fmt)
    return buf.getvalue()


class FakeModel:
    """Three classes red/green/blue: the class is the image's brightest channel. Records each forward pass's batch
    size; ``gate`` (an Event), when set up, holds every forward pass until it is set."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate: threading.Event | None = None
        self.lock = threading.Lock()

    def transform(self, array: np.ndarray) -> torch.Tensor:
        means = torch.from_numpy(array.reshape(-1, 3).mean(0)).float() / 255.0  # 3
        return means[:, None, None].expand(3, 4, 4).clone()

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        with self.lock:
            self.batches.append(len(images))
        return (images.mean((2, 3)) * 20).softmax(1)  # B, 3

    def served(self) -> ServedModel:
        info = {"method": "fake", "backbone": "none", "img_size": 4, "classes": 3, "backend": "test", "version": "0",
                "cam": False}
        return ServedModel(self.transform, list(COLOURS), self.probabilities, info, img_size=4)


def truncated_jpeg() -> bytes:
    """The first half of a 64 x 64 noise JPEG: a valid header, then the data stops."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


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
