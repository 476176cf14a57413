"""The kernels behind ResizeMix and FMix on a CPU, each against CutMix's box copy, side by side.

    python benchmarks/adapter_kernels.py          # 128x3x224x224 fp32, 2 threads

Every per-sample variant runs the same loop (sample i from partner perm[i]) over the
same batch, with box sides drawn as the adapters draw them before clipping at the
border (ResizeMix: an even side of about tau of the image, tau = 0.1 + 0.7 lam;
CutMix: area 1 - lam; lam ~ U(0, 1)), so the printed ratios say what each way of doing
an adapter's work costs against the copy that CutMix does. ResizeMix per batch: call k
pastes the k-th draw's box into every sample, against CutMix pasting its k-th box into
every sample. FMix's rows (per batch too) compare with CutMix's per-sample copy. NumPy
runs on one thread, torch on ``--threads``. The last rows time FMix's threshold sort of
128 coarse noise maps (32 x 32), torch's against NumPy's. It backs the choices in
``multimix.resizemix`` (NumPy's take per sample; per batch the partners' rows, then
columns for boxes up to 64 x 64, else one batched nearest resize unless the resized batch
passes 32 MiB) and ``multimix.fmix`` (per batch the bits
selected as integers, per sample ``torch.where``) and the reasons in
docs/performance.md why FMix stays above 2x of CutMix and ResizeMix near it.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from host import median_ms

import multimix
from multimix._kernels import select_bits, select_bits_dtype
from multimix.image import FMix
from multimix.resizemix import _partner_boxes


def resize_variants(x: torch.Tensor, perm: list[int], lam: np.ndarray) -> dict[str, Callable[[], None]]:
    """CutMix's box copy, a full-image copy, and three ways of pasting the partner resized (nearest) into a box."""
    size = x.shape[-1]
    cut = [int(size * (1 - v) ** 0.5) for v in lam]  # CutMix: area 1 - lam
    side = [max(2 * (int(size * (0.1 + 0.7 * v)) // 2), 1) for v in lam]  # ResizeMix: side tau, even
    sources = {s: torch.clamp(torch.floor(torch.arange(s, dtype=torch.float32) * (size / s)), max=size - 1).long()
               for s in set(side)}  # fmt: skip
    numpy_x = x.numpy()

    def cutmix_copy() -> None:
        for i, s in enumerate(cut):
            x[i, :, :s, :s].copy_(x[perm[i], :, :s, :s])

    def full_copy() -> None:
        for i in range(x.shape[0]):
            x[i].copy_(x[perm[i]])

    def nearest_kernel() -> None:
        for i, s in enumerate(side):
            resized = F.interpolate(x[perm[i]].reshape(-1, 1, size, size), size=(s, s), mode="nearest")
            x[i, :, :s, :s].copy_(resized.view(-1, s, s))

    def row_then_column_gather() -> None:
        for i, s in enumerate(side):
            x[i, :, :s, :s].copy_(x[perm[i]].index_select(1, sources[s]).index_select(2, sources[s]))

    def numpy_take() -> None:  # what ResizeMix does per sample
        for i, s in enumerate(side):
            rows = sources[s].numpy()
            numpy_x[i, :, :s, :s] = numpy_x[perm[i]].take(rows, axis=1).take(rows, axis=2)

    boxes = [itertools.cycle(zip(cut, side, strict=True)) for _ in range(3)]  # per batch: call k, the k-th lam's box

    def batch_cutmix_copy() -> None:  # what CutMix does per batch on a CPU: the one box, copied sample by sample
        s = next(boxes[0])[0]
        for i in range(x.shape[0]):
            x[i, :, :s, :s].copy_(x[perm[i], :, :s, :s])

    def batch_resize_per_sample() -> None:
        s = next(boxes[1])[1]
        for i in range(x.shape[0]):
            resized = F.interpolate(x[perm[i]].reshape(-1, 1, size, size), size=(s, s), mode="nearest")
            x[i, :, :s, :s].copy_(resized.view(-1, s, s))

    def batch_resize_once() -> None:  # what ResizeMix does per batch
        s = next(boxes[2])[1]
        resized = F.interpolate(x.view(-1, 1, size, size), size=(s, s), mode="nearest").view(-1, 3, s, s)
        for i in range(x.shape[0]):
            x[i, :, :s, :s].copy_(resized[perm[i]])

    return {"CutMix box copy": cutmix_copy, "full-image copy": full_copy,
            "ResizeMix: nearest kernel": nearest_kernel,
            "ResizeMix: row, then column index_select": row_then_column_gather,
            "ResizeMix: NumPy take (used)": numpy_take,
            "per batch: CutMix box copy": batch_cutmix_copy,
            "ResizeMix per batch: nearest kernel per sample": batch_resize_per_sample,
            "ResizeMix per batch: one nearest resize (used from 65 x 65 px to 32 MiB)": batch_resize_once}  # fmt: skip


def box_baselines(x: torch.Tensor, perm: list[int], sides: list[int]) -> tuple[Callable[[], None], ...]:
    """Per batch, one square box for every sample, call k the k-th of ``sides`` (cycled): CutMix's box copy and
    ResizeMix's older route, one 2-D nearest resize of the batch then a copy per sample."""
    n, size = x.shape[0], x.shape[-1]
    copy_sides, resize_sides = itertools.cycle(sides), itertools.cycle(sides)

    def cutmix_copy() -> None:
        s = next(copy_sides)
        for i in range(n):
            x[i, :, :s, :s].copy_(x[perm[i], :, :s, :s])

    def resize_once() -> None:
        s = next(resize_sides)
        resized = F.interpolate(x.view(-1, 1, size, size), size=(s, s), mode="nearest").view(-1, 3, s, s)
        for i in range(n):
            x[i, :, :s, :s].copy_(resized[perm[i]])

    return cutmix_copy, resize_once


def small_box_variants(x: torch.Tensor, perm: list[int]) -> dict[str, Callable[[], None]]:
    """ResizeMix per batch with boxes of 32-64 px a side, where torch's 2-D nearest kernel is slow per pixel."""
    size, sides = x.shape[-1], [32, 40, 48, 56, 64]
    cutmix_copy, resize_once = box_baselines(x, perm, sides)
    used_sides, partners = itertools.cycle(sides), torch.tensor(perm)

    def rows_then_columns() -> None:  # what ResizeMix does for a small box of a contiguous batch
        s = next(used_sides)
        x[:, :, :s, :s].copy_(_partner_boxes(x, partners, (s, s)))

    def kernel_at(h: int, w: int) -> Callable[[], None]:  # torch's 2-D kernel alone, just below and above 4,096 px
        return lambda: F.interpolate(x.view(-1, 1, size, size), size=(h, w), mode="nearest")

    return {"small boxes: torch's 2-D nearest resize alone, 64 x 64": kernel_at(64, 64),
            "small boxes: torch's 2-D nearest resize alone, 64 x 65": kernel_at(64, 65),
            "small boxes: torch's 2-D nearest resize alone, 68 x 68": kernel_at(68, 68),
            "small boxes: CutMix box copy": cutmix_copy,
            "small boxes, ResizeMix per batch: one nearest resize": resize_once,
            "small boxes, ResizeMix per batch: partners' rows, then columns (used)": rows_then_columns}  # fmt: skip


def large_box_variants(x: torch.Tensor, perm: list[int]) -> dict[str, Callable[[], None]]:
    """ResizeMix per batch with the boxes whose resized batch passes 32 MiB (sides up to 0.8 of the image).

    Above that size glibc maps fresh pages for the batch-sized temporary on every call;
    ResizeMix then resizes one sample at a time. CutMix copies a box of the same side.
    """
    n, size = x.shape[0], x.shape[-1]
    smallest = next((s for s in range(1, size + 1) if n * 3 * s * s * x.element_size() > 32 * 2**20), size)
    sides = np.linspace(smallest, max(smallest, int(0.8 * size)), 5).astype(int).tolist()
    cutmix_copy, resize_once = box_baselines(x, perm, sides)
    used_sides = itertools.cycle(sides)

    def resize_per_sample() -> None:
        s = next(used_sides)
        for i in range(n):
            resized = F.interpolate(x[perm[i]].reshape(-1, 1, size, size), size=(s, s), mode="nearest")
            x[i, :, :s, :s].copy_(resized.view(-1, s, s))

    print(f"large boxes: sides {sides[0]}-{sides[-1]} (the resized batch passes 32 MiB)")
    return {"large boxes: CutMix box copy": cutmix_copy,
            "large boxes, ResizeMix per batch: one nearest resize": resize_once,
            "large boxes, ResizeMix per batch: per sample (used)": resize_per_sample}  # fmt: skip


def row_runs_of(mask: np.ndarray) -> list[list[tuple[int, int, int]]]:
    """Per mask ``(H, W)`` of ``(K, H, W)``: runs of rows that are the partner's (kind 1) or mixed (kind 2)."""
    own, partner = mask.all(-1), ~mask.any(-1)
    kinds = np.where(own, 0, np.where(partner, 1, 2))  # per row: own (skip), partner (copy), mixed (select)
    runs = []
    for row_kinds in kinds:
        edges = np.flatnonzero(np.diff(row_kinds)) + 1
        starts, ends = np.r_[0, edges], np.r_[edges, len(row_kinds)]
        runs.append([(int(row_kinds[a]), int(a), int(b)) for a, b in zip(starts, ends, strict=True) if row_kinds[a]])
    return runs


def fmix_variants(x: torch.Tensor, perm: list[int], per_sample: bool, draws: int) -> dict[str, Callable[[], None]]:
    """FMix's select over every pixel (``where``, integer bits), a run decomposition of its rows, NumPy's
    masked copy and a 0/1 lerp.

    Each call takes the next of ``draws`` masks drawn by FMix (per batch one lam per draw,
    and how many rows are pure depends on it), the same sequence for every variant.
    """
    adapter = FMix(1.0)
    mixer = multimix.Mixer(adapter, num_classes=10, per_sample=per_sample, seed=0)
    masks = []
    for k in range(draws):
        mask = adapter.mask(x, adapter.draw_region(x, mixer.draw(x.shape[0]), torch.Generator().manual_seed(k)))
        masks.append((mask, row_runs_of(mask.numpy()), (~mask).numpy(), mask.float(), mask.int()))
    numpy_x, bits, scratch = x.numpy(), x.view(torch.int32), torch.empty_like(x[0], dtype=torch.int32)
    sequences = [itertools.cycle(masks) for _ in range(5)]  # one per variant: each sees the same masks

    def select_every_pixel() -> None:  # what FMix does per sample
        mask = next(sequences[0])[0]
        for i in range(x.shape[0]):
            torch.where(mask[i % mask.shape[0]], x[i], x[perm[i]], out=x[i])

    def select_bits_every_pixel() -> None:  # what FMix does per batch: the bits as integers, two vectorised passes
        keep = next(sequences[4])[4]  # per sample the masks' conversion (in the call) costs more than it saves
        for i in range(x.shape[0]):
            select_bits(bits[i], bits[perm[i]], keep[i % keep.shape[0]], scratch)

    def row_runs() -> None:
        mask, runs = next(sequences[1])[:2]
        for i in range(x.shape[0]):
            k = i % mask.shape[0]
            for kind, a, b in runs[k]:
                if kind == 1:
                    x[i, :, a:b].copy_(x[perm[i], :, a:b])
                else:
                    torch.where(mask[k, a:b], x[i, :, a:b], x[perm[i], :, a:b], out=x[i, :, a:b])

    def numpy_copyto() -> None:
        partner = next(sequences[2])[2]
        for i in range(x.shape[0]):
            np.copyto(numpy_x[i], numpy_x[perm[i]], where=partner[i % partner.shape[0]])

    def lerp_every_pixel() -> None:  # vectorised, but NaN where the other image is inf (0 * inf)
        weight = next(sequences[3])[3]
        for i in range(x.shape[0]):
            torch.lerp(x[perm[i]], x[i], weight[i % weight.shape[0]], out=x[i])

    mode = "per sample" if per_sample else "per batch"
    return {f"FMix {mode}: select every pixel" + (" (used)" if per_sample else ""): select_every_pixel,
            f"FMix {mode}: integer bit select" + ("" if per_sample else " (used)"): select_bits_every_pixel,
            f"FMix {mode}: row runs": row_runs,
            f"FMix {mode}: np.copyto where": numpy_copyto,
            f"FMix {mode}: lerp, 0/1 weight (not exact)": lerp_every_pixel}  # fmt: skip


def select_dtype_variants(x: torch.Tensor, perm: list[int]) -> dict[str, Callable[[], None]]:
    """FMix's per-batch selection in other dtypes: ``torch.where`` against the bits selected as integers.

    One mask drawn by FMix for the batch; each dtype's batch is a converted copy of ``x``.
    """
    adapter = FMix(1.0)
    mixer = multimix.Mixer(adapter, num_classes=10, seed=0)
    mask = adapter.mask(x, adapter.draw_region(x, mixer.draw(x.shape[0]), torch.Generator().manual_seed(0)))[0]
    variants = {}
    for dtype in (torch.bfloat16, torch.uint8, torch.float64):
        batch = (x * 255 if dtype == torch.uint8 else x).to(dtype)
        bits = select_bits_dtype(batch)

        def select_where(batch: torch.Tensor = batch) -> None:
            for i in range(batch.shape[0]):
                torch.where(mask, batch[i], batch[perm[i]], out=batch[i])

        name = str(dtype).removeprefix("torch.")
        variants[f"FMix per batch, {name}: select every pixel" + (" (used)" if bits is None else "")] = select_where
        if bits is None:
            continue
        keep, scratch, as_bits = mask.to(bits), torch.empty_like(batch[0], dtype=bits), batch.view(bits)

        def select_as_integers(as_bits: torch.Tensor = as_bits, keep=keep, scratch=scratch) -> None:
            for i in range(as_bits.shape[0]):
                select_bits(as_bits[i], as_bits[perm[i]], keep, scratch)

        variants[f"FMix per batch, {name}: integer bit select (used)"] = select_as_integers
    int64 = x.view(torch.int32).to(torch.int64)  # what an integer select of 8-byte values would cost
    keep64, scratch64 = mask.to(torch.int64), torch.empty_like(int64[0])

    def select_int64() -> None:
        for i in range(int64.shape[0]):
            select_bits(int64[i], int64[perm[i]], keep64, scratch64)

    variants["FMix per batch, float64: integer bit select (not used)"] = select_int64
    return variants


def sort_variants(count: int, generator: torch.Generator) -> dict[str, Callable[[], None]]:
    """FMix's thresholds come from each coarse noise map sorted: torch's sort against NumPy's."""
    noise = torch.randn(count, 32 * 32, generator=generator)

    def torch_sort() -> None:
        noise.sort(dim=1, descending=True)

    def numpy_sort() -> None:  # what FMix does
        np.sort(noise.numpy(), axis=1)[:, ::-1]

    return {"FMix threshold sort: torch.sort": torch_sort, "FMix threshold sort: np.sort (used)": numpy_sort}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    if args.batch < 2 or args.size < 8 or args.threads < 1 or args.reps < 1:
        parser.error("--batch >= 2, --size >= 8, --threads >= 1 and --reps >= 1")
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=generator)
    perm = torch.randperm(args.batch, generator=generator).tolist()
    lam = torch.rand(args.batch, generator=generator, dtype=torch.float64).numpy()
    draws = args.reps + 1  # one mask per call: median_ms makes a warm-up call and --reps timed ones
    variants = {**resize_variants(x, perm, lam), **small_box_variants(x, perm), **large_box_variants(x, perm),
                **fmix_variants(x, perm, False, draws), **fmix_variants(x, perm, True, draws),
                **select_dtype_variants(x, perm), **sort_variants(args.batch, generator)}  # fmt: skip
    print(f"batch {tuple(x.shape)} fp32, {args.threads} threads, torch {torch.__version__}, median of {args.reps}")
    times = {name: median_ms(fn, args.reps, warmup=1) for name, fn in variants.items()}
    print(f"{'variant':<72}{'ms':>9}{'x CutMix copy':>15}")
    for name, ms in times.items():  # ResizeMix's per-batch rows against CutMix's per-batch copy, the rest per sample
        if name.startswith(("small boxes", "large boxes")):
            anchor = times[name.split(":")[0].split(",")[0] + ": CutMix box copy"]
        elif name.startswith(("ResizeMix per batch", "per batch:")):
            anchor = times["per batch: CutMix box copy"]
        else:
            anchor = times["CutMix box copy"]
        print(f"{name:<72}{ms:>9.2f}{ms / anchor:>15.2f}")


if __name__ == "__main__":
    main()
