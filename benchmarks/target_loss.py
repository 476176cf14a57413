"""Memory and time of the two loss paths of a batch mixed from class indices, side by side.

- ``rows``: the soft targets ``(B, C)`` built (``MixedBatch.targets``), then
  ``soft_cross_entropy(logits, rows)``: what a loss on materialised rows costs.
- ``index``: ``soft_cross_entropy(logits, batch)``, two index cross-entropies weighted by
  lam (:func:`multimix.losses.mixed_cross_entropy`): no ``(B, C)`` rows.

Each step is the loss and its backward for logits ``(B, C)`` (label smoothing 0.1), at
C = 1,000 (ImageNet-1k) and 21,841 (ImageNet-21k). Memory is the peak the step allocates
above what was live before it (the gradient of the logits included): on the CPU from
torch's profiler, on CUDA the allocator's peak. Raw rows go to ``benchmarks/results/``.

    python benchmarks/target_loss.py [--batch 256] [--repeats 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import multimix
from multimix.image import Mixup

try:
    from _results import append
except ImportError:  # run as a module
    from benchmarks._results import append


def peak_mb(run: Callable[[], None]) -> float:
    """The peak of the memory ``run`` allocates on the CPU, above what was live before it.

    torch's profiler records every allocation and free (``[memory]`` events for those
    outside an operation); their running sum in time order is the memory live, and its
    maximum the peak.
    """
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profile:
        run()
    events = sorted(profile.events(), key=lambda event: event.time_range.start)
    return round(max(itertools.accumulate((event.self_cpu_memory_usage for event in events), initial=0)) / 2**20, 3)


def step(path: str, logits: torch.Tensor, batch: multimix.MixedBatch) -> None:
    batch.__dict__["_targets"] = None  # the rows of the last step are not reused
    targets = batch.targets if path == "rows" else batch
    multimix.soft_cross_entropy(logits, targets).backward()


def measure(path: str, batch_size: int, classes: int, repeats: int, device: torch.device) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    mixer = multimix.Mixer(Mixup(1.0), num_classes=classes, per_sample=True, label_smoothing=0.1, seed=0)
    images, labels = torch.rand(batch_size, 3, 4, 4, generator=g), torch.randint(0, classes, (batch_size,), generator=g)
    batch = mixer(images, labels).to(device)
    logits = torch.randn(batch_size, classes, generator=g).to(device).requires_grad_()
    for _ in range(3):  # warm-up
        step(path, logits, batch)
    logits.grad = None
    peak = peak_mb(lambda: step(path, logits, batch)) if device.type == "cpu" else ""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(path, logits, batch)
        torch.cuda.synchronize(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    times = []
    for _ in range(repeats):
        logits.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step(path, logits, batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return {"path": path, "batch": batch_size, "classes": classes, "ms": 1e3 * statistics.median(times),
            "peak_mb": peak, "repeats": repeats}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-save", action="store_true", help="print only, append no rows to benchmarks/results/")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(f"{'C':>7} {'rows ms':>9} {'index ms':>9} {'speed-up':>9} {'rows MB':>9} {'index MB':>9} {'ratio':>7}")
    for classes in (1000, 21841):
        pair = {path: measure(path, args.batch, classes, args.repeats, device) for path in ("rows", "index")}
        rows += pair.values()
        soft, index = pair["rows"], pair["index"]
        ratio = soft["peak_mb"] / index["peak_mb"] if soft["peak_mb"] != "" and index["peak_mb"] else float("nan")
        print(f"{classes:>7} {soft['ms']:>9.2f} {index['ms']:>9.2f} {soft['ms'] / index['ms']:>8.2f}x "
              f"{soft['peak_mb'] or 0:>9.1f} {index['peak_mb'] or 0:>9.1f} {ratio:>6.2f}x")  # fmt: skip
    if not args.no_save:
        columns = ["path", "batch", "classes", "ms", "peak_mb", "repeats"]
        print("rows appended to", append("target_loss", device, rows, columns))


if __name__ == "__main__":
    main()
