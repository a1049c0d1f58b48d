"""Export-friendly formulations of two layers, swapped in only while a method is traced for export.

Each replacement computes the same numbers as the original (``tests/deploy`` compares them); only the operators the
tracer records differ. :func:`export_friendly` applies both for the duration of an export and restores the
originals on exit (also on an error).

* **WS-DAN's object crop** (``fgvc.models.attention_crop.crop_and_resize``) numbers the regions of interest with
  ``torch.arange(len(boxes))``. ``len()`` of a tensor is a Python int, so both exporters freeze it: ``torch.export``
  specialises the batch axis to the example's size, and ``torch.jit.trace`` bakes the example's batch into the graph
  (ONNX Runtime then fails on any other batch with a Concat shape error). :func:`crop_and_resize` builds the index
  from ``boxes.shape[0]``, which stays symbolic; otherwise it is the original (the same ``roi_align`` call).
* **The count sketch of compact bilinear pooling** (``CompactBilinearPooling.sketch``) is an ``index_add_`` with
  repeated bin indices, exported as ``ScatterND(reduction="add")``. ONNX Runtime's CPU kernel for it (1.32) races
  when it runs on more than one intra-op thread: measured, 4 of 30 runs of a 512-channel sketch gave wrong bins, and
  a B-CNN's logits then differed from PyTorch by 5 % on half of a batch, on some runs only. :func:`gather_sketch`
  computes each bin as a gather of its (fixed, at most a handful of) signed channels and a sum: no scatter, no race,
  deterministic.

Once ``attention_crop`` uses ``boxes.shape[0]`` and the ORT kernel is fixed, this module can go.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

__all__ = ["crop_and_resize", "bin_table", "gather_sketch", "export_friendly"]


def crop_and_resize(images: Tensor, boxes: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """:func:`fgvc.models.attention_crop.crop_and_resize` with the region index built from ``boxes.shape[0]``."""
    from torchvision.ops import roi_align

    size = size or (images.shape[-2], images.shape[-1])
    index = torch.arange(boxes.shape[0], device=boxes.device, dtype=boxes.dtype)[:, None]  # B, 1
    rois = torch.cat([index, boxes], 1)  # B, 5
    return roi_align(images, rois.to(images.dtype), output_size=size, spatial_scale=1.0, sampling_ratio=-1,
                     aligned=True)


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
    """Inside the block WS-DAN crops with :func:`crop_and_resize` and every compact bilinear pooling of ``method``
    sketches with :func:`gather_sketch`."""
    from fgvc.methods import wsdan
    from fgvc.models.pooling import CompactBilinearPooling

    pools = [m for m in method.modules() if isinstance(m, CompactBilinearPooling)]
    for pool in pools:
        pool._export_bins = {i: bin_table(getattr(pool, f"hash{i}"), pool.in_dim, pool.out_dim) for i in (1, 2)}
    crop, sketch = wsdan.crop_and_resize, CompactBilinearPooling.sketch
    wsdan.crop_and_resize, CompactBilinearPooling.sketch = crop_and_resize, gather_sketch  # type: ignore[method-assign]
    try:
        yield
    finally:
        wsdan.crop_and_resize, CompactBilinearPooling.sketch = crop, sketch  # type: ignore[method-assign]
        for pool in pools:
            del pool._export_bins
