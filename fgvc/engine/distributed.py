"""Distributed data parallel under ``torchrun``, and the sampler every loader uses.

``torchrun --nproc_per_node=N -m fgvc.train RECIPE`` sets RANK/WORLD_SIZE/LOCAL_RANK; we join
the process group (NCCL on CUDA, gloo on CPU), shard every epoch's permutation across ranks,
log and checkpoint on rank 0 only, and reduce metrics across ranks.

:class:`EpochSampler` is the training sampler of ``data.sampler: random``: a seeded permutation per
epoch (the same on every rank), padded to a multiple of the world size and strided by rank; it can
start mid-epoch (``start``), which is how ``--resume`` continues exactly where a killed run stopped.
``data.sampler: pk`` uses :class:`fgvc.data.samplers.PKSampler` instead, with the same interface.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["DistEnv", "init_distributed", "EpochSampler", "ShardSampler", "all_gather_tensors", "reduce_mean"]


class DistEnv:
    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device_kind: str) -> DistEnv:
    """Join the process group when launched by torchrun; a single-process env otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistEnv(rank, world, local)


class EpochSampler(Sampler[int]):
    """Seeded permutation per epoch, sharded by rank, resumable at any position."""

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """``start``: number of this rank's samples already consumed in this epoch."""
        self.epoch, self.start = epoch, start

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        per_rank = -(-self.n // self.world_size)
        order += order[: per_rank * self.world_size - self.n]  # pad so every rank has the same count
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return -(-self.n // self.world_size) - self.start


class ShardSampler(Sampler[int]):
    """Evaluation: rank r takes indices r, r+W, ... with no padding, so nothing is counted twice."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.idx = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.idx)

    def __len__(self) -> int:
        return len(self.idx)


def all_gather_tensors(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Concatenate a (variable-length) tensor from every rank along dim 0."""
    if not env.enabled:
        return t
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, t.cpu())
    return torch.cat(out, 0)


def reduce_mean(value: float, env: DistEnv) -> float:
    if not env.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item() / env.world_size)
