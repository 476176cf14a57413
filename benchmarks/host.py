"""Host time and device read-backs of one call, measured without a GPU.

``meta`` tensors have shapes but no values: running a mixer on them does all of its
host work (Python, dispatch, plan drawing, shape checks) and none of the device work,
so its wall time is the host overhead per call. A read-back of a device value
(``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``) is what makes a CUDA call wait for
the GPU; on ``meta`` it would raise, so :func:`readbacks` intercepts and counts them
(returning dummy values so the call can finish). On CUDA, :func:`cuda_syncs` counts the
synchronisations torch itself reports. :func:`device_kernels` counts the operations
a call runs on the device (a kernel launch each on a GPU, copies included), the part
of a GPU call's host time that grows with the method.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

_SCALAR_OPS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default}


class _Counter(TorchDispatchMode):
    """A dispatch mode that counts something about the operations of a call in ``count``."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0


class _CountReadbacks(_Counter):
    """Count reads of device values; answer them with zeros so the call goes on."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if func in _SCALAR_OPS and source is not None and source.device.type != "cpu":
            self.count += 1
            return False if func is torch.ops.aten.is_nonzero.default else 0
        to_host = kwargs.get("device") is not None and torch.device(kwargs["device"]).type == "cpu"
        if func is torch.ops.aten._to_copy.default and to_host and source is not None and source.device.type != "cpu":
            self.count += 1
            return torch.zeros(source.shape, dtype=kwargs.get("dtype") or source.dtype)
        return func(*args, **kwargs)


_ALLOCATIONS = {torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default}


class _CountKernels(_Counter):
    """Count the operations that read or write device tensors; views and bare allocations launch nothing."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if not func.is_view and func not in _ALLOCATIONS:
            tensors = [t for t in pytree.tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
            self.count += any(t.device.type != "cpu" for t in tensors)
        return out


def device_kernels(fn: Callable[[], Any]) -> int:
    """How many operations ``fn`` runs on the device: kernel launches on a GPU (run it on ``meta`` tensors)."""
    with _CountKernels() as mode:
        fn()
    return mode.count


def readbacks(fn: Callable[[], Any]) -> int:
    """How many device values ``fn`` reads back to the host (run it on ``meta`` tensors)."""
    with _CountReadbacks() as mode:
        fn()
    return mode.count


def host_time_us(fn: Callable[[], Any], reps: int = 200) -> float:
    """Median host time of one call of ``fn`` in microseconds (run it on ``meta`` tensors), in blocks of 10."""
    for _ in range(10):
        fn()
    blocks = []
    for _ in range(max(1, reps // 10)):
        start = time.perf_counter()
        for _ in range(10):
            fn()
        blocks.append((time.perf_counter() - start) / 10 * 1e6)
    return statistics.median(blocks)


def cuda_syncs(fn: Callable[[], Any]) -> int:
    """Synchronisations torch reports during one call of ``fn`` on CUDA tensors."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sync_warnings(str(w.message) for w in caught)


def sync_warnings(messages: Iterable[str]) -> int:
    """How many of ``messages`` report a synchronisation: torch's sync debug mode warns once per sync, and once per
    process that the mode is a prototype ("does not yet detect all synchronizing operations"), which is no sync."""
    return sum("called a synchronizing CUDA operation" in message for message in messages)


def kernel_time_us(fn: Callable[[], Any], calls: int = 20) -> float | None:
    """Mean time the GPU spends in ``fn``'s kernels and copies per call, from the profiler: the device side of a
    call, apart from the host time that issues it (a call can be host-bound while its kernels take microseconds).
    Only device activity is recorded, so no operator's time is counted with its kernels'. None when the profiler
    saw no device work (it needs CUPTI)."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    total = sum(event.self_device_time_total for event in profile.key_averages())
    return total / calls if total > 0 else None


def median_ms(fn: Callable[[], Any], reps: int, device: torch.device | None = None, warmup: int = 3) -> float:
    """Median wall time of ``fn`` in milliseconds after ``warmup`` calls, the GPU synchronised around each call."""
    on_cuda = device is not None and device.type == "cuda"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if on_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if on_cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
