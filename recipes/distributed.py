"""Several devices with ``torchrun`` or ``accelerate launch``: one process per device, torch DDP.

Both launchers set ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``. The engine wraps the model
in :class:`torch.nn.parallel.DistributedDataParallel` (bucketed all-reduce overlapped
with the backward pass, buffers broadcast, ``no_sync`` while accumulating); each process
trains on its shard of every epoch and draws its own mixing plans (seeded from the seed,
its rank and the epoch). Every rank evaluates its shard of the test set and the
logits are gathered, so no rank waits on another. NCCL on GPUs, gloo on CPUs (how
the tests run it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

__all__ = ["World", "current", "gather", "rank_seed"]


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


def gather(obj: Any, world: World) -> list[Any]:
    """``obj`` of every rank, in rank order (a collective: every rank must call it)."""
    if world.size == 1:
        return [obj]
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, obj)
    return gathered
