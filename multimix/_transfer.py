"""Move a batch's small CPU tensors (plan, region, labels) to the device in one copy.

Each host-to-device copy costs host time (a few microseconds of dispatch and a driver
call), so the leaves of the tree are packed as bytes into one NumPy buffer, copied once
with ``non_blocking=True`` and split back into views of their own dtype and shape on
the device: one transfer per call. The buffer is not pinned: for a copy of a few
hundred bytes, CUDA stages pageable memory at once and returns without waiting for
the device, and pinning (a page-locked allocation and its bookkeeping) cost more host
time than the copy (measured on an H100 machine: 1.05 ms against 1.21 ms per Mixer call).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

__all__: list[str] = []

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
    sizes = [leaves[i].numel() * leaves[i].element_size() for i in slots]
    padded = [-(-size // _ALIGN) * _ALIGN for size in sizes]
    buffer = np.zeros(sum(padded), dtype=np.uint8)
    start = 0
    for i, size, chunk in zip(slots, sizes, padded, strict=True):
        buffer[start : start + size] = _bytes(leaves[i])
        start += chunk
    pieces = torch.from_numpy(buffer).to(device, non_blocking=True).split_with_sizes(padded)
    for i, size, piece in zip(slots, sizes, pieces, strict=True):  # one split, then a view per leaf
        leaf = leaves[i]
        if size != piece.numel():
            piece = piece[:size]
        if leaf.dtype != torch.uint8:
            piece = piece.view(leaf.dtype)
        leaves[i] = piece if leaf.dim() == 1 else piece.view(leaf.shape)
    return pytree.tree_unflatten(leaves, spec)


def _bytes(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's values as flat bytes (NumPy's view where it has the dtype, else torch's)."""
    try:
        return np.ascontiguousarray(tensor.numpy()).reshape(-1).view(np.uint8)
    except (TypeError, RuntimeError):  # a dtype NumPy lacks (bfloat16, ...), or a lazy conjugate/negative view
        return tensor.resolve_conj().resolve_neg().contiguous().view(-1).view(torch.uint8).numpy()
