"""What a run was trained with: package versions, platform and device, written as ``RUN/environment.json``.

The HTML run report (:mod:`fgvc.report`) shows it next to the recipe, so that a number can be traced to the
software and hardware that produced it. Nothing here imports a package that training does not already import.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from typing import Any

__all__ = ["PACKAGES", "environment", "package_version"]

PACKAGES = ("fgvc", "torch", "torchvision", "timm", "albumentations", "numpy", "pandas", "pillow")


def package_version(package: str) -> str | None:
    """``package``'s installed version, or None when it is not installed as a distribution."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: Any = None, world_size: int = 1, resumed: bool = False) -> dict[str, Any]:
    """Versions of :data:`PACKAGES`, Python, the OS and CPU, and the torch device (with the GPU's name on CUDA)."""
    import torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" and torch.cuda.is_available() else None
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "resumed": resumed,
        "python": sys.version.split()[0], "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": str(dev), "gpu": gpu, "world_size": world_size,
        "cuda": torch.version.cuda if gpu else None,
        "packages": {p: package_version(p) for p in PACKAGES},
    }
