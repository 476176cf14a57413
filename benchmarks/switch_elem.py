"""The per-sample Mixup/CutMix switch against timm's ``mode="elem"``, side by side in one run.

    python benchmarks/switch_elem.py                  # 128x3x224x224 fp32 on the CPU (and CUDA if there is one)
    python benchmarks/switch_elem.py --rounds 9 --reps 7 --threads 2

Contenders, on the same batch and labels (1000 classes, label smoothing 0.1 in both):

- ``multimix.Mixer([Mixup(0.8), CutMix(1.0)], per_sample=True, switch="sample")``
- timm's ``Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem")`` (a Python loop over samples)
- ``copy_`` of the batch into preallocated memory: one read and one write, the floor.

Every call gets a fresh clone of the batch, made outside the timed region (both mixers
write in place). Rounds are interleaved, every contender ``--reps`` calls per round, the
order reversed each round, so a machine's drift hits them alike; a round's time is the
median of its calls, and the ratio multimix / timm is taken round by round. Raw call
times are appended to ``benchmarks/results/<card>-torch<version>.csv``, each with the
process's CPU time of the call (all threads): on a shared machine other work stretches a
call's wall time but hardly its CPU time, so the two tell undisturbed rounds apart.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import timm
import timm.data.mixup as timm_mixup
import torch
from _results import append, card_name

import multimix
from multimix.image import CutMix, Mixup

NUM_CLASSES = 1000
COLUMNS = ["timm", "shape", "dtype", "method", "round", "call", "ms", "cpu_ms"]
Times = dict[str, list[list[tuple[float, float]]]]  # per contender, per round, (wall ms, CPU ms) of each call


def contenders(x: torch.Tensor) -> dict[str, Callable[[torch.Tensor, torch.Tensor], object]]:
    sink = torch.empty_like(x)
    theirs = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", label_smoothing=0.1,
                              num_classes=NUM_CLASSES)  # fmt: skip
    ours = multimix.Mixer([Mixup(0.8), CutMix(1.0)], num_classes=NUM_CLASSES, per_sample=True, switch="sample",
                          label_smoothing=0.1, seed=0)  # fmt: skip
    return {"copy_ (floor)": lambda batch, labels: sink.copy_(batch), "timm Mixup elem": theirs,
            "multimix switch=sample": ours}  # fmt: skip


def measure(device: torch.device, args: argparse.Namespace) -> Times:
    """Per contender, per round, wall and CPU ms of each call (a fresh clone each, made outside the timed region)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(0, NUM_CLASSES, (args.batch,), generator=g).to(device)
    fns = contenders(x)
    np.random.seed(0)  # timm draws from NumPy's global generator
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():  # warm-up: thread pools, allocator, first-touch pages
        for _ in range(2):
            fn(x.clone(), y)
    times: Times = {name: [] for name in fns}
    for round_ in range(args.rounds):
        order = list(fns) if round_ % 2 == 0 else list(fns)[::-1]
        for name in order:
            calls = []
            for _ in range(args.reps):
                batch = x.clone()
                sync()
                start, cpu = time.perf_counter(), time.process_time()
                fns[name](batch, y)
                sync()
                calls.append(((time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3))
            times[name].append(calls)
    return times


def report(device: torch.device, times: Times, args: argparse.Namespace) -> None:
    rounds = {
        name: [statistics.median(ms for ms, _ in calls) for calls in per_round] for name, per_round in times.items()
    }
    cpu = {name: statistics.median(c for calls in per_round for _, c in calls) for name, per_round in times.items()}
    ratios = [ours / theirs for ours, theirs in zip(rounds["multimix switch=sample"], rounds["timm Mixup elem"],
                                                     strict=True)]  # fmt: skip
    where = f"{card_name(device)}" + ("" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
    print(f"\n{(args.batch, 3, args.size, args.size)} float32 on {device.type} ({where}); torch {torch.__version__}, "
          f"timm {timm.__version__}; {args.rounds} interleaved rounds of {args.reps} calls")  # fmt: skip
    print(f"{'method':<26}{'ms (median)':>13}{'rounds min-max':>18}{'CPU ms':>10}")
    for name, per_round in rounds.items():
        spread = f"{min(per_round):.1f}-{max(per_round):.1f}"
        print(f"{name:<26}{statistics.median(per_round):>13.2f}{spread:>18}{cpu[name]:>10.1f}")
    print(f"multimix / timm elem: {statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}x)")


def append_rows(device: torch.device, times: Times, args: argparse.Namespace) -> Path:
    """Append every call's time to ``results/<card>-torch<version>.csv`` through ``_results`` (one layout a file)."""
    fixed = {"timm": timm.__version__, "shape": f"{args.batch}x3x{args.size}x{args.size}", "dtype": "float32"}
    rows = [{**fixed, "method": name, "round": round_, "call": call, "ms": f"{ms:.3f}", "cpu_ms": f"{cpu_ms:.3f}"}
            for name, per_round in times.items() for round_, calls in enumerate(per_round)
            for call, (ms, cpu_ms) in enumerate(calls)]  # fmt: skip
    return append("switch_elem", device, rows, COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--no-cuda", action="store_true", help="measure the CPU only")
    parser.add_argument("--no-csv", action="store_true", help="print only; append nothing to benchmarks/results/")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))
    for device in devices:
        times = measure(device, args)
        report(device, times, args)
        if not args.no_csv:
            print(f"raw call times appended to {append_rows(device, times, args)}")


if __name__ == "__main__":
    main()
