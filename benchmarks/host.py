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

Meta time is an upper bound, not a GPU's host time: some operators' meta functions are
written in Python (``lerp``, ``addcmul``, ``rsub``: 60-140 us each on meta, against 1-12 us
for a native one such as ``mul_`` or ``index_select``), while a CUDA launch
of the same operator runs none of that Python. Compare methods on meta by their kernel
counts as well as their times.
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


# ----------------------------------------------------------------------------- the script

def _contenders(mode: str, x: torch.Tensor, num_classes: int) -> dict[str, Callable[[], Any]]:
    """One call of each library in ``mode`` ("mixup batch", ...) on ``x``: multimix, timm and torchvision v2."""
    import multimix
    from multimix.image import CutMix, Mixup

    method, scope = mode.split()
    y = torch.randint(0, num_classes, (x.shape[0],), device=x.device)
    adapter = Mixup(1.0) if method == "mixup" else CutMix(1.0)
    mixer = multimix.Mixer(adapter, num_classes=num_classes, per_sample=scope == "sample", seed=0)
    calls: dict[str, Callable[[], Any]] = {"multimix": lambda: mixer(x, y).targets}  # targets built, as the others do
    if scope == "batch":  # the per-sample goal is timm's batch time: the same row holds it
        try:
            from timm.data import Mixup as TimmMixup

            alphas = {"mixup_alpha": 1.0, "cutmix_alpha": 0.0} if method == "mixup" else \
                {"mixup_alpha": 0.0, "cutmix_alpha": 1.0}  # fmt: skip
            timm_mixer = TimmMixup(**alphas, num_classes=num_classes, label_smoothing=0.0)
            calls["timm"] = lambda: timm_mixer(x, y)
        except ImportError:
            pass
        if method == "mixup" and x.device.type == "cpu":
            calls["straight-line"] = straight_line_mixup(x, y, num_classes)
        try:
            from torchvision.transforms import v2

            tv = v2.MixUp(alpha=1.0, num_classes=num_classes) if method == "mixup" else \
                v2.CutMix(alpha=1.0, num_classes=num_classes)  # fmt: skip
            calls["torchvision"] = lambda: tv(x, y)
        except ImportError:
            pass
    return calls


def straight_line_mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> Callable[[], torch.Tensor]:
    """multimix's per-batch Mixup work as bare torch calls, no library around them: the CPU label-range check,
    the partner cycle and Beta(1, 1) lam from a generator, the blend, and the targets (one-hot rows lerped from
    the partner's).

    What the operations alone cost; the difference to the multimix row is the library's own host work.
    """
    import numpy as np

    generator = torch.Generator().manual_seed(0)

    def call() -> torch.Tensor:
        low, high = torch.aminmax(y)
        if int(low) < 0 or int(high) >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes})")
        order = torch.randperm(x.shape[0], generator=generator).numpy()
        cycle = np.empty_like(order)
        cycle[order[:-1]], cycle[order[-1]] = order[1:], order[0]
        index = torch.from_numpy(cycle)
        lam = float(torch.rand(1, generator=generator, dtype=torch.float64)[0])
        x.lerp_(x.index_select(0, index), 1.0 - lam)
        rows = torch.zeros(x.shape[0], num_classes).scatter_(1, y.unsqueeze(1), 1.0)
        return rows.index_select(0, index).lerp_(rows, torch.full((x.shape[0], 1), lam))

    return call


def main() -> None:
    """Print the host time of one call per library, dispatch-bound (tiny CPU batch) and on meta, side by side, and
    the device kernels each call launches (counted on meta)."""
    import argparse

    from _results import append

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is printed")
    parser.add_argument("--no-csv", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    modes = ["mixup batch", "cutmix batch", "mixup sample", "cutmix sample"]
    places = {"cpu (dispatch-bound)": (torch.device("cpu"), (args.batch, 3, 4, 4)),
              "meta": (torch.device("meta"), (args.batch, 3, 224, 224))}  # fmt: skip
    rows = []
    print(f"host time of one call, us (median of {args.rounds} interleaved rounds); batch {args.batch}")
    print(f"{'where':<22}{'mode':<15}{'multimix':>10}{'timm':>10}{'torchvision':>13}{'multimix/timm':>15}"
          f"{'device kernels':>16}")  # fmt: skip
    timm_batch: dict[tuple[str, str], float] = {}
    timm_kernels: dict[str, int | None] = {}
    floor: float | None = None
    for where, (device, shape) in places.items():
        for mode in modes:
            x = torch.rand(shape) if device.type == "cpu" else torch.empty(shape, device=device)
            calls = _contenders(mode, x, 10)
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, fn in calls.items():
                    try:
                        times[name].append(host_time_us(fn, args.reps))
                    except Exception:  # a library that cannot run on meta tensors
                        times[name] = []
            med = {name: statistics.median(t) for name, t in times.items() if t}
            method = mode.split()[0]
            if "timm" in med:
                timm_batch[(where, method)] = med["timm"]
            floor = med.get("straight-line", floor)
            anchor = timm_batch.get((where, method))
            ratio = f"{med['multimix'] / anchor:.2f}x" if anchor else "-"
            cells = [f"{med[name]:>10.0f}" if name in med else f"{'-':>10}" for name in ("multimix", "timm")]
            tv = f"{med['torchvision']:>13.0f}" if "torchvision" in med else f"{'-':>13}"
            kernels = "-"
            if device.type == "meta":  # what a GPU call launches: multimix / timm (timm's per-batch call)
                counts = {name: device_kernels(fn) for name, fn in calls.items() if name in med}
                anchor_kernels = timm_kernels.setdefault(method, counts.get("timm"))
                kernels = f"{counts['multimix']} / {anchor_kernels if anchor_kernels is not None else '-'}"
            print(f"{where:<22}{mode:<15}{''.join(cells)}{tv}{ratio:>15}{kernels:>16}")
            rows += [{"place": where, "mode": mode, "library": name, "round": k, "us": f"{t:.1f}"}
                     for name, ts in times.items() for k, t in enumerate(ts)]  # fmt: skip
    print("per-sample rows compare with timm's per-batch call of the same method")
    if floor is not None:
        print(f"multimix's per-batch Mixup operations as bare torch calls (straight_line_mixup): {floor:.0f} us")
    if not args.no_csv:
        path = append("host", torch.device("cpu"), rows, ["place", "mode", "library", "round", "us"])
        print(f"raw rows appended to {path}")


if __name__ == "__main__":
    main()
