"""Training samplers beyond the plain shuffle: :class:`PKSampler`, ``P`` classes x ``K`` images per batch.

The P x K batch of metric learning (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss for Person
Re-Identification", arXiv:1703.07737): every batch holds ``K`` images of each of ``P`` classes, so in-batch losses
(triplet mining, multi-similarity) always find positives and negatives. ``data.sampler: pk`` with
``data.sampler_args: {p: P, k: K}`` in a recipe; ``P x K`` is ``train.batch_size`` (``p: null`` derives
``P = train.batch_size / K``).

* **Classes** come from a seeded stream of class permutations, ``P`` distinct ones per batch, so over an epoch
  every class is drawn about equally often (a class that would repeat within a batch at a permutation boundary is
  deferred to the next batch). Only classes with at least one image take part.
* **Images** of a class with at least ``K`` images come from that class's own stream of permutations (``K``
  distinct per batch, every image once before any repeats); a class with fewer than ``K`` images gives each of
  its images once and draws the rest uniformly with replacement.
* **Epoch**: ``len(labels) // (P * K)`` batches (at least one), about one pass over the data, so ``train.epochs``
  keeps its meaning. The plan is a function of ``(seed, epoch)`` only.
* **DDP**: every rank computes the same global plan of P x K batches and takes its own ``P / W`` classes of each
  (``P`` must be a multiple of the world size ``W``): the global batch is the same P x K batch a single process
  would train on, each rank's share is itself a (P / W) x K batch, and the ranks' images never overlap.
* **Exact resume**: like :class:`fgvc.engine.distributed.EpochSampler`, it yields this rank's indices batch after
  batch and ``set_epoch(epoch, start)`` skips the first ``start`` of them, so a run resumed mid-epoch continues
  with the same batches.
* **Repeated images** (drawn again in the same epoch) are yielded as ``index + draw * len(labels)``
  (:func:`split_token`), so the training set wrapper (:class:`fgvc.engine.builder.SeededSamples`) gives every
  draw its own augmentation; the first draw is the plain index.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from fgvc.errors import ConfigError

__all__ = ["PKSampler", "split_token"]


def split_token(token: int, n: int) -> tuple[int, int]:
    """A sampler token -> ``(dataset index, draw)``; draw 0 is an image's first appearance in the epoch."""
    draw, index = divmod(int(token), n)
    return index, draw


class _Cycle:
    """Items ``0..n-1`` from a seeded stream of permutations; :meth:`take` gives ``count <= n`` distinct items."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.g = n, generator
        self.pool: list[int] = []  # the rest of the current permutation, popped from the end

    def take(self, count: int) -> list[int]:
        chosen: list[int] = []
        seen: set[int] = set()
        deferred: list[int] = []
        while len(chosen) < count:
            if not self.pool:
                self.pool = torch.randperm(self.n, generator=self.g).tolist()
            item = self.pool.pop()
            if item in seen:
                deferred.append(item)  # a repeat across the permutation boundary: first in line next time
            else:
                seen.add(item)
                chosen.append(item)
        self.pool.extend(deferred)
        return chosen


class PKSampler(Sampler[int]):
    """``P`` classes x ``K`` images per (global) batch; this rank yields its ``P / W`` classes of each, ``K`` images
    of a class in a row. ``labels``: the class of every image of the training split."""

    def __init__(self, labels: Sequence[int], p: int, k: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if p < 1 or k < 1:
            raise ConfigError(f"data.sampler_args: p and k must be >= 1, got p={p}, k={k}")
        self.n = len(labels)
        by_class: dict[int, list[int]] = {}
        for i, y in enumerate(labels):
            by_class.setdefault(int(y), []).append(i)
        self.members = [by_class[c] for c in sorted(by_class)]  # image indices of each class that has images
        if p > len(self.members):
            raise ConfigError(f"data.sampler=pk: data.sampler_args.p={p} classes per batch, but the training split has "
                              f"only {len(self.members)} classes with images; lower p (and train.batch_size = p * k)")
        if p % world_size:
            raise ConfigError(f"data.sampler=pk on {world_size} processes: each takes P / {world_size} of the P={p} "
                              f"classes of a batch, so P must be a multiple of {world_size}; set data.sampler_args.p "
                              f"(and train.batch_size = p * k={k}) accordingly")
        self.p, self.k, self.seed, self.rank, self.world_size = p, k, seed, rank, world_size
        self.classes_per_rank = p // world_size
        self.batch_size = self.classes_per_rank * k  # this rank's images per batch
        self.num_batches = max(1, self.n // (p * k))
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """``start``: number of this rank's samples already consumed in this epoch."""
        self.epoch, self.start = epoch, start

    def plan(self) -> list[list[int]]:
        """The epoch's global batches, each ``P * K`` tokens, class by class (``K`` in a row); the same on every
        rank."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        class_cycle = _Cycle(len(self.members), g)
        image_cycles = [_Cycle(len(m), g) for m in self.members]
        draws: dict[int, int] = {}  # dataset index -> times yielded so far this epoch
        batches = []
        for _ in range(self.num_batches):
            batch = []
            for c in class_cycle.take(self.p):
                members = self.members[c]
                if len(members) >= self.k:
                    picks = [members[j] for j in image_cycles[c].take(self.k)]
                else:  # every image once, the rest with replacement
                    extra = torch.randint(len(members), (self.k - len(members),), generator=g).tolist()
                    picks = [members[j] for j in torch.randperm(len(members), generator=g).tolist() + extra]
                for i in picks:
                    batch.append(i + self.n * draws.get(i, 0))
                    draws[i] = draws.get(i, 0) + 1
            batches.append(batch)
        return batches

    def indices(self) -> list[int]:
        """This rank's tokens for the whole epoch: its ``P / W`` classes of every global batch, in batch order."""
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        return [t for batch in self.plan() for t in batch[lo:hi]]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start:])

    def __len__(self) -> int:
        return self.num_batches * self.batch_size - self.start
