"""fgvc.engine.host_memory: glibc keeps freed step memory on the CPU (no page faults per training step)."""
from __future__ import annotations

import platform

import pytest
import torch

from fgvc.engine import host_memory


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(host_memory, "_done", None)  # the settings are applied once per process
    return host_memory


def test_only_for_the_cpu(fresh):
    assert fresh.keep_freed_memory("cuda") is False
    assert fresh.keep_freed_memory(torch.device("cuda", 0)) is False
    assert fresh._done is None  # nothing was decided for the CPU yet


def test_switched_off_by_the_environment(fresh, monkeypatch):
    monkeypatch.setenv("FGVC_KEEP_FREED_MEMORY", "0")
    assert fresh.keep_freed_memory(torch.device("cpu")) is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_applied_once_on_glibc(fresh):
    assert fresh.keep_freed_memory("cpu") is True
    assert fresh.keep_freed_memory(torch.device("cpu")) is True  # idempotent
    x = torch.empty(64 << 20, dtype=torch.uint8)  # a 64 MiB block from the heap instead of mmap: still usable
    x.fill_(1)
    assert int(x[-1]) == 1
