"""Keep freed host memory in the process during CPU training (glibc ``mallopt``), so no step pays page faults.

A training step frees its activations at the end and allocates them again in the next one. glibc hands large
blocks straight back to the kernel (blocks above the mmap threshold are ``munmap``-ed, and the heap top is trimmed
above the trim threshold), so the next step touches fresh pages and takes a page fault for every 4 KiB of them.
WS-DAN keeps three graphs alive at once (raw, crop and drop views): measured on our 2-core CPU
(tf_efficientnet_lite0, 160 px, batch 32, channels-last, fp32), a WS-DAN step took ~255,000-335,000 minor page
faults and 2.1-2.5 s, the plain step none. With mmap off and a 1 GiB trim threshold, WS-DAN took ~700 faults and
1.96 s (3.19x the plain step instead of 3.63x in the same back-to-back measurement), and the plain step was unchanged.
At 448 px (batch 16) a 1 GiB threshold was not enough: each view's freed graph left more than 1 GiB free at the heap
top, glibc trimmed it, and WS-DAN took 360,000-680,000 faults and 8.1-9.7 s per step; with trimming off (``-1``, the
value mallopt(3) documents for that) 0-75,000 faults and 6.5-7.2 s, the plain step unchanged (2.1 s, no faults).

The price is that the process keeps its peak heap instead of returning it to the system between steps, which is
what a training process needs anyway. Only glibc (Linux) has these settings; elsewhere :func:`keep_freed_memory` does
nothing and says so. ``FGVC_KEEP_FREED_MEMORY=0`` switches it off.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Any

log = logging.getLogger("fgvc")

__all__ = ["keep_freed_memory", "M_TRIM_THRESHOLD", "M_MMAP_MAX", "TRIM_THRESHOLD"]

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = -1  # glibc: never return the free heap top to the kernel (a finite bound fits in an int: <= 2 GiB)
_done: bool | None = None


def keep_freed_memory(device: Any = "cpu") -> bool:
    """Tell glibc to serve every allocation from the heap and keep freed memory (:data:`TRIM_THRESHOLD`), when
    the model runs on the CPU (``device``: a torch device or its type). Returns True when the settings took effect
    (applied once per process; later calls return the first result)."""
    global _done
    if str(getattr(device, "type", device)) != "cpu":
        return False
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("FGVC_KEEP_FREED_MEMORY", "1") == "0":
        log.info("FGVC_KEEP_FREED_MEMORY=0: glibc's malloc settings left as they are")
        return _done
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        log.debug("no glibc mallopt here: host memory settings unchanged")
        return _done
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_MMAP_MAX, 0))
    if _done:
        log.debug("glibc malloc: no mmap, no trimming (freed step memory stays in the process)")
    return _done
