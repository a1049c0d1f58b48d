"""An export-friendly formulation of one layer, swapped in only while a method is traced for export.

The replacement computes the same numbers as the original (``tests/deploy`` compares them); only the operators the
tracer records differ. :func:`export_friendly` applies it for the duration of an export and restores the original
on exit (also on an error). (WS-DAN's object crop exports as it is: ``attention_crop.crop_and_resize`` numbers its
regions with ``boxes.shape[0]``, which stays symbolic, so the batch axis stays dynamic.)

* **The count sketch of compact bilinear pooling** (``CompactBilinearPooling.sketch``) is an ``index_add_`` with
  repeated bin indices, exported as ``ScatterND(reduction="add")``. ONNX Runtime's CPU kernel for it (1.32) races
  when it runs on more than one intra-op thread: measured, 4 of 30 runs of a 512-channel sketch gave wrong bins, and
  a B-CNN's logits then differed from PyTorch by 5 % on half of a batch, on some runs only. :func:`gather_sketch`
  computes each bin as a gather of its (fixed, at most a handful of) signed channels and a sum: no scatter, no race,
  deterministic.

Once the ORT kernel is fixed, this module can go.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from fgvc.models.pooling import CompactBilinearPooling

__all__ = ["bin_table", "gather_sketch", "export_friendly"]


def bin_table(hashes: Tensor, in_dim: int, out_dim: int) -> Tensor:
    """``d x m`` channel indices per sketch bin (``m`` = the fullest bin's count), in channel order, padded with
    ``in_dim`` (an all-zero column appended to the input)."""
    order = torch.argsort(hashes, stable=True)  # channels grouped by bin, channel order within a bin
    counts = torch.bincount(hashes, minlength=out_dim)  # d
    starts = torch.cumsum(counts, 0) - counts  # first sorted position of each bin
    sorted_bins = hashes[order]
    table = torch.full((out_dim, max(int(counts.max()), 1)), in_dim, dtype=torch.long, device=hashes.device)
    table[sorted_bins, torch.arange(in_dim, device=hashes.device) - starts[sorted_bins]] = order
    return table


def gather_sketch(self: nn.Module, x: Tensor, i: int) -> Tensor:
    """``CompactBilinearPooling.sketch`` without a scatter: count sketch ``x: N, C -> N, d`` as
    ``sum_k (s * x)[:, T[:, k]]`` over the bin table ``T`` (:func:`bin_table`, prepared by :func:`export_friendly`),
    one gather per column of ``T`` (a few), added in channel order like ``index_add_``; peak memory two ``N x d``."""
    table = self._export_bins[i]  # d, m
    signed = torch.cat([x * getattr(self, f"sign{i}"), x.new_zeros(x.shape[0], 1)], 1)  # N, C+1
    out = signed[:, table[:, 0]]  # N, d
    for k in range(1, table.shape[1]):
        out = out + signed[:, table[:, k]]
    return out


@contextlib.contextmanager
def export_friendly(method: nn.Module) -> Iterator[None]:
    """Inside the block every compact bilinear pooling of ``method`` sketches with :func:`gather_sketch`."""
    pools = [m for m in method.modules() if isinstance(m, CompactBilinearPooling)]
    for pool in pools:
        pool._export_bins = {i: bin_table(getattr(pool, f"hash{i}"), pool.in_dim, pool.out_dim) for i in (1, 2)}
    sketch = CompactBilinearPooling.sketch
    CompactBilinearPooling.sketch = gather_sketch  # type: ignore[method-assign]
    try:
        yield
    finally:
        CompactBilinearPooling.sketch = sketch  # type: ignore[method-assign]
        for pool in pools:
            del pool._export_bins
