"""Move a batch's small CPU tensors (plan, region, labels) to the device in one copy.

Each host-to-device copy costs host time, and a copy from pageable memory makes the
CPU wait for it. So the leaves of the tree are packed as bytes into one buffer,
pinned on CUDA, copied once with ``non_blocking=True`` and split back into views of
their own dtype and shape on the device: one transfer per call, no synchronisation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import _pytree as pytree

__all__ = ["to_device"]

_ALIGN = 8  # every chunk starts on an 8-byte boundary, so it can be viewed as any dtype


def to_device(tree: Any, device: torch.device) -> Any:
    """Return ``tree`` with every CPU tensor leaf moved to ``device`` in a single copy.

    Leaves that are not tensors, or that are already off the CPU, pass through
    unchanged; on the CPU the tree is returned as it is.

    Example:
        >>> tree = {"index": torch.tensor([1, 0]), "lam": torch.tensor([0.25, 0.75], dtype=torch.float64)}
        >>> moved = to_device(tree, torch.device("meta"))
        >>> moved["index"].device, moved["lam"].dtype, moved["lam"].shape
        (device(type='meta'), torch.float64, torch.Size([2]))
    """
    if device.type == "cpu":
        return tree
    leaves, spec = pytree.tree_flatten(tree)
    cpu = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor) and leaf.device.type == "cpu"]
    for i in cpu:  # tensors with autograd history move on their own, keeping it
        if leaves[i].requires_grad:
            leaves[i] = leaves[i].to(device, non_blocking=True)
    slots = [i for i in cpu if not leaves[i].requires_grad]
    if not slots:
        return pytree.tree_unflatten(leaves, spec)
    chunks, layout, offset = [], [], 0
    for i in slots:
        raw = leaves[i].contiguous().view(-1).view(torch.uint8)
        size = raw.numel()
        padded = -(-size // _ALIGN) * _ALIGN
        chunks.append(raw)
        if padded != size:
            chunks.append(torch.zeros(padded - size, dtype=torch.uint8))
        layout.append((i, offset, size))
        offset += padded
    buffer = torch.cat(chunks)
    if device.type == "cuda":
        buffer = buffer.pin_memory()
    moved = buffer.to(device, non_blocking=True)
    for i, start, size in layout:
        leaf = leaves[i]
        leaves[i] = moved[start : start + size].view(leaf.dtype).view(leaf.shape)
    return pytree.tree_unflatten(leaves, spec)
