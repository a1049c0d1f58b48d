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


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_freed_memory_above_1_gib_stays_in_the_process(fresh):
    """WS-DAN at 448 px frees more than 1 GiB per view: a finite trim threshold gave it 360,000+ faults per step."""
    import os

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    assert fresh.keep_freed_memory("cpu") is True
    graph = [torch.ones(40 << 20, dtype=torch.uint8) for _ in range(32)]  # 1.25 GiB of activations, pages touched
    held = rss()
    del graph  # as a view's backward frees its graph (a 1 GiB threshold returned 1 GiB of it to the kernel here)
    assert rss() > held - (256 << 20)  # kept: the next view reuses these pages without faulting them in
