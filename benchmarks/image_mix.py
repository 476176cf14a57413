"""Image mixing speed: multimix vs timm vs torchvision vs a plain copy, side by side.

    python benchmarks/image_mix.py                 # 128x3x224x224 fp32, CPU, 2 threads
    python benchmarks/image_mix.py --device cuda   # the same on a GPU
    python benchmarks/image_mix.py --host-only     # host time and read-backs per call only (meta tensors)
    python benchmarks/image_mix.py --adapters-only # ResizeMix, FMix and SaliencyMix against CutMix only

A plain ``copy_`` of the batch into preallocated memory is the physical floor (one
read, one write). Times are medians over ``--reps`` calls on the same batch; the
ratios printed are what to compare, since absolute times depend on the machine.
Peak extra memory is measured in a fresh subprocess per method (CPU, Linux: the peak
resident set of one call above the resident set before it, via /proc/self/clear_refs; CUDA: ``max_memory_allocated``).

A second table gives each method's host time per call and its read-backs of device
values, measured on ``meta`` tensors (see ``benchmarks/host.py``): what a call costs the
CPU while the GPU works, and how often it would make the CPU wait for the GPU. On CUDA
a third column counts the synchronisations torch reports.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import timm.data.mixup as timm_mixup
import torch
from host import cuda_syncs, device_kernels, host_time_us, kernel_time_us, readbacks
from torchvision.transforms import v2

import multimix
from multimix.image import CutMix, Mixup

NUM_CLASSES = 1000


def make_methods(device: torch.device) -> dict[str, Callable[[torch.Tensor, torch.Tensor], object]]:
    """Every contender, as ``fn(images, labels)``; the timm/torchvision ones at their defaults."""
    sink = {}

    def copy(x: torch.Tensor, y: torch.Tensor) -> None:
        if "dst" not in sink:
            sink["dst"] = torch.empty_like(x)
        sink["dst"].copy_(x)

    def timm_mixer(mode: str, cutmix: bool) -> timm_mixup.Mixup:
        return timm_mixup.Mixup(
            mixup_alpha=0.0 if cutmix else 1.0, cutmix_alpha=1.0 if cutmix else 0.0,
            mode=mode, label_smoothing=0.0, num_classes=NUM_CLASSES,
        )

    def ours(adapter: multimix.Adapter, per_sample: bool) -> multimix.Mixer:
        return multimix.Mixer(adapter, num_classes=NUM_CLASSES, per_sample=per_sample, seed=0)

    return {
        "copy_ (floor)": copy,
        "timm Mixup batch": timm_mixer("batch", False),
        "torchvision v2.MixUp batch": v2.MixUp(alpha=1.0, num_classes=NUM_CLASSES),
        "multimix Mixup batch": ours(Mixup(1.0), False),
        "multimix Mixup batch inplace=False": ours(Mixup(1.0, inplace=False), False),
        "timm Mixup per-sample (elem)": timm_mixer("elem", False),
        "multimix Mixup per-sample": ours(Mixup(1.0), True),
        "timm CutMix batch": timm_mixer("batch", True),
        "torchvision v2.CutMix batch": v2.CutMix(alpha=1.0, num_classes=NUM_CLASSES),
        "multimix CutMix batch": ours(CutMix(1.0), False),
        "timm CutMix per-sample (elem)": timm_mixer("elem", True),
        "multimix CutMix per-sample": ours(CutMix(1.0), True),
        "multimix CutMix per-sample inplace=False": ours(CutMix(1.0, inplace=False), True),
    }


def make_batch(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(device)
    return x, torch.randint(0, NUM_CLASSES, (args.batch,), generator=g).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_method(fn: Callable, x: torch.Tensor, y: torch.Tensor, reps: int, device: torch.device,
                warmup: int = 2) -> float:  # fmt: skip
    """Median wall time of one call in milliseconds, after ``warmup`` calls."""
    for _ in range(warmup):
        fn(x, y)
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        fn(x, y)
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def interleaved_ms(fns: dict[str, Callable], x: torch.Tensor, y: torch.Tensor, reps: int, device: torch.device,
                   rounds: int = 5) -> dict[str, list[float]]:  # fmt: skip
    """Per method, the median ms of a call in each of ``rounds`` rounds; each round times every method in turn,
    ``reps`` calls each, so that a machine's drift hits them alike (ratios are taken round by round)."""
    for fn in fns.values():
        for _ in range(2):
            fn(x, y)
    per_round: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            per_round[name].append(time_method(fn, x, y, reps, device, warmup=0))
    return per_round


def peak_extra_mb(name: str, args: argparse.Namespace) -> float:
    """Run one call of ``name`` in a fresh process and return its peak extra memory in MB."""
    cmd = [sys.executable, __file__, "--measure-memory", name, "--batch", str(args.batch), "--size", str(args.size),
           "--device", args.device, "--threads", str(args.threads)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["mb"]


def measure_memory(args: argparse.Namespace, device: torch.device) -> None:
    x, y = make_batch(args, device)
    fn = make_methods(device)[args.measure_memory]
    np.random.seed(0)
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn(x, y)
        torch.cuda.synchronize()
        mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        fn(x, y)  # warm-up: thread pools and first-touch costs are not the method's
        reset_peak_rss()
        before = status_kib("VmRSS")
        fn(x, y)
        mb = (status_kib("VmHWM") - before) / 1024
    print(json.dumps({"mb": mb}))


def status_kib(field: str) -> int:
    """A memory field of /proc/self/status in KiB (Linux)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def reset_peak_rss() -> None:
    """Reset the peak resident set (VmHWM) to the current one, so the peak of one call can be read."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def host_table(args: argparse.Namespace) -> None:
    """Host time (meta tensors) and read-backs per call of every method; CUDA syncs when on a GPU."""
    meta = torch.device("meta")
    x = torch.empty(args.batch, 3, args.size, args.size, device=meta)
    y = torch.zeros(args.batch, dtype=torch.long, device=meta)
    methods = {name: fn for name, fn in make_methods(meta).items() if "torchvision" not in name}
    on_cuda = args.device.startswith("cuda")
    if on_cuda:
        gx, gy = make_batch(args, torch.device(args.device))
    print(f"\nhost time per call on meta tensors {tuple(x.shape)} (median of blocks of 10 calls)")
    syncs = f"{'cuda syncs':>12}" if on_cuda else ""
    print(f"{'method':<42}{'host us':>10}{'x timm batch':>14}{'read-backs':>12}{syncs}")
    np.random.seed(0)
    times = {}
    for name, fn in methods.items():
        reps = 20 if "(elem)" in name else args.host_reps  # timm's elem mode loops in Python: slow to time
        times[name] = host_time_us(lambda fn=fn: fn(x, y), reps)
    anchors = {"Mixup": times["timm Mixup batch"], "CutMix": times["timm CutMix batch"]}
    for name, fn in methods.items():
        anchor = anchors["CutMix" if "CutMix" in name else "Mixup"]
        line = f"{name:<42}{times[name]:>10.0f}{times[name] / anchor:>14.2f}{readbacks(lambda fn=fn: fn(x, y)):>12}"
        if on_cuda:
            line += f"{cuda_syncs(lambda fn=fn: fn(gx, gy)):>12}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-method memory subprocesses")
    parser.add_argument("--host-only", action="store_true", help="only the host-time and read-back table")
    parser.add_argument("--adapters-only", action="store_true", help="only the ResizeMix, FMix, SaliencyMix table")
    parser.add_argument("--no-adapters", action="store_true", help="skip the ResizeMix, FMix, SaliencyMix table")
    parser.add_argument("--host-reps", type=int, default=300, help="calls timed per method for host time")
    parser.add_argument("--measure-memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.measure_memory:
        return measure_memory(args, device)
    if args.host_only:
        return host_table(args)
    if args.adapters_only:
        return new_adapters_table(args, device)
    x, y = make_batch(args, device)
    methods = make_methods(device)
    name_cpu = platform.processor() or platform.machine()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{name_cpu}, {args.threads} threads"
    print(f"batch {tuple(x.shape)} fp32 on {where}; torch {torch.__version__}, median of {args.reps}")
    np.random.seed(0)
    results = {name: time_method(fn, x, y, args.reps, device) for name, fn in methods.items()}
    copy_ms = results["copy_ (floor)"]
    anchors = {"Mixup": results["timm Mixup batch"], "CutMix": results["timm CutMix batch"]}
    print(f"{'method':<42}{'ms':>9}{'x copy':>9}{'timm batch / this':>19}{'peak extra MB':>15}")
    for name, ms in results.items():
        anchor = anchors["CutMix" if "CutMix" in name else "Mixup"] if name != "copy_ (floor)" else None
        speedup = f"{anchor / ms:.1f}x" if anchor else "-"
        memory = "-" if args.no_memory else f"{peak_extra_mb(name, args):.0f}"
        print(f"{name:<42}{ms:>9.2f}{ms / copy_ms:>9.2f}{speedup:>19}{memory:>15}")
    host_table(args)
    if not args.no_adapters:
        new_adapters_table(args, device)


# ----------------------------------------------------------------------------- ResizeMix, FMix, SaliencyMix


def reference_methods(device: torch.device) -> dict[str, Callable[[torch.Tensor, torch.Tensor], object]]:
    """Straightforward torch/NumPy versions of each method (OpenMixup's and the FMix paper's code paths)."""
    import torch.nn.functional as F

    from multimix.image.fmix import fourier_noise

    def resizemix(x: torch.Tensor, y: torch.Tensor) -> None:  # OpenMixup: one box, the batch's partners resized in
        tau = 0.1 + np.random.beta(1.0, 1.0) * 0.7
        h, w = int(x.shape[-2] * tau), int(x.shape[-1] * tau)
        cy, cx = np.random.randint(x.shape[-2] - h + 1), np.random.randint(x.shape[-1] - w + 1)
        x[..., cy : cy + h, cx : cx + w] = F.interpolate(x.flip(0), size=(h, w), mode="nearest")

    def fmix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # the FMix code: a full-size mask, a blend
        noise = fourier_noise(1, x.shape[-2], x.shape[-1], 3.0, torch.Generator(), grid=max(x.shape[-2:]))[0]
        order = noise.flatten().argsort(descending=True)
        mask = torch.zeros(noise.numel(), device=x.device)
        mask[order[: round(np.random.beta(1.0, 1.0) * noise.numel())].to(x.device)] = 1
        mask = mask.view(noise.shape)
        return mask * x + (1 - mask) * x.flip(0)

    def saliencymix(x: torch.Tensor, y: torch.Tensor) -> None:  # per image: full-size gradient saliency, a box there
        grey = x.mean(1, keepdim=True)
        dy, dx = torch.gradient(F.avg_pool2d(grey, 3, 1, 1), dim=(2, 3))
        peaks = (dy.square() + dx.square()).flatten(1).argmax(1).tolist()
        partner = x.flip(0).clone()
        h, w = x.shape[-2:]
        for i, peak in enumerate(peaks[::-1]):
            half = int(0.5 * np.sqrt(1 - np.random.beta(1.0, 1.0)) * h)
            cy, cx = divmod(peak, w)
            x[i, :, max(cy - half, 0) : cy + half, max(cx - half, 0) : cx + half] = partner[
                i, :, max(cy - half, 0) : cy + half, max(cx - half, 0) : cx + half
            ]

    return {"ResizeMix": resizemix, "FMix": fmix, "SaliencyMix": saliencymix}


def gpu_time(fn: Callable[[], object]) -> str:
    """``kernel_time_us`` as a table cell; "-" where the profiler cannot see the GPU (it needs CUPTI)."""
    try:
        us = kernel_time_us(fn)
    except (RuntimeError, AssertionError) as error:  # torch's profiler raises either when it cannot start
        print(f"profiler unavailable: {error}", file=sys.stderr)
        return "-"
    return "-" if us is None else f"{us:.0f}"


def new_adapters_table(args: argparse.Namespace, device: torch.device) -> None:
    """ResizeMix, FMix and SaliencyMix beside multimix CutMix on the same batch, with their host time and kernels."""
    from multimix.image import FMix, ResizeMix, SaliencyMix

    def ours(adapter: multimix.Adapter, per_sample: bool) -> multimix.Mixer:
        return multimix.Mixer(adapter, num_classes=NUM_CLASSES, per_sample=per_sample, seed=0)

    x, y = make_batch(args, device)
    references = reference_methods(device)
    print(f"\nnew adapters on {tuple(x.shape)}: ms per call, x multimix CutMix in the same mode (interleaved rounds)")
    on_cuda = device.type == "cuda"
    cuda_columns = f"{'cuda syncs':>12}{'gpu us':>9}" if on_cuda else ""
    columns = f"{'ms':>9}{'x CutMix':>10}{'host us (meta)':>16}{'read-backs':>12}{'kernels':>9}{cuda_columns}"
    print(f"{'method':<40}{columns}")
    meta_x = torch.empty(args.batch, 3, args.size, args.size, device="meta")
    meta_y = torch.zeros(args.batch, dtype=torch.long, device="meta")
    np.random.seed(0)
    for mode, per_sample in (("batch", False), ("per-sample", True)):
        adapters = (CutMix(1.0), ResizeMix(1.0), FMix(1.0), SaliencyMix(1.0))
        mixers = {type(adapter).__name__: ours(adapter, per_sample) for adapter in adapters}
        rounds = interleaved_ms(mixers, x, y, args.reps, device)
        for adapter, mixer in mixers.items():  # ms: median over the rounds; ratio: median of the rounds' ratios
            ms = statistics.median(rounds[adapter])
            ratio = statistics.median(t / c for t, c in zip(rounds[adapter], rounds["CutMix"], strict=True))
            host = host_time_us(lambda mixer=mixer: mixer(meta_x, meta_y), 50)
            backs = readbacks(lambda mixer=mixer: mixer(meta_x, meta_y))
            kernels = device_kernels(lambda mixer=mixer: mixer(meta_x, meta_y))
            line = f"{'multimix ' + adapter + ' ' + mode:<40}{ms:>9.2f}{ratio:>10.2f}{host:>16.0f}{backs:>12}"
            if on_cuda:
                line += f"{kernels:>9}{cuda_syncs(lambda mixer=mixer: mixer(x, y)):>12}"
                print(f"{line}{gpu_time(lambda mixer=mixer: mixer(x, y)):>9}")
            else:
                print(f"{line}{kernels:>9}")
    for name, fn in references.items():
        ms = time_method(fn, x, y, args.reps, device)
        print(f"{'reference ' + name:<40}{ms:>9.2f}{'-':>10}")
    print(
        "host us (meta) is an upper bound for FMix, SaliencyMix and ResizeMix per sample: on meta tensors torch runs "
        "some of their ops (bilinear upsampling, pooling, FFT, sort) as Python decompositions, which CUDA runs as "
        "native kernels; kernels: "
        "operations on the device per call (launches on a GPU, host-to-device copies included), counted on meta"
        + ("; gpu us: time the GPU spends in this call's kernels (profiler, mean of 20 calls)" if on_cuda else "")
    )


if __name__ == "__main__":
    main()
