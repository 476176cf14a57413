"""Several devices with ``torchrun`` or ``accelerate launch``: one process per device, gradients averaged.

Both launchers set ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; each process trains on
its shard of every epoch (``DistributedSampler``), draws its own mixing plans (its
generator is seeded from the seed, its rank and the epoch, so a resumed run draws
the same plans), and the gradients are averaged before each step. Rank 0 evaluates
and writes the results. NCCL on GPUs, gloo on CPUs (which is how the tests run it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["World", "average_gradients", "current", "rank_seed"]


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current(device_type: str = "cpu") -> World:
    """The process group this process belongs to, started on first use (one process: size 1)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """A distinct, reproducible seed per (seed, rank, epoch)."""
    return (seed * 1_000_003 + rank * 10_007 + epoch) % 2**63


def average_gradients(parameters: list[torch.nn.Parameter], world: World) -> None:
    """All-reduce and average the gradients, so every rank takes the same step."""
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad.div_(world.size)
