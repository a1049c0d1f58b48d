"""Helpers of the serve tests: solid-colour images as bytes, and a fake model whose answer is the image's colour."""
from __future__ import annotations

import io
import threading

import numpy as np
import torch
from PIL import Image

from fgvc.serving.model import ServedModel

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
