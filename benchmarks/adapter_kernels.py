"""The per-sample writes of ResizeMix's and FMix's CPU loops, each against CutMix's box copy, side by side.

    python benchmarks/adapter_kernels.py          # 128x3x224x224 fp32, 2 threads

Every variant runs the same loop (sample i from partner perm[i]) over the same batch,
with box sides drawn as the adapters draw them before clipping at the border
(ResizeMix: an even side of about tau of the image, tau = 0.1 + 0.7 lam; CutMix: area
1 - lam; lam ~ U(0, 1)), so the printed ratios say what each way of doing an adapter's
work costs against the copy that CutMix does. FMix's rows (per batch and per sample)
take the masks FMix draws. "(used)" marks the write ``multimix.image.resizemix`` and
``multimix.image.fmix`` run in their CPU loops (large samples on a CPU, in place).
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
from multimix.image import FMix


def resize_variants(x: torch.Tensor, perm: list[int], lam: np.ndarray) -> dict[str, Callable[[], None]]:
    """CutMix's box copy, a full-image copy, and two ways of pasting the partner resized (nearest) into a box."""
    size = x.shape[-1]
    cut = [int(size * (1 - v) ** 0.5) for v in lam]  # CutMix: area 1 - lam
    side = [max(2 * (int(size * (0.1 + 0.7 * v)) // 2), 1) for v in lam]  # ResizeMix: side tau, even
    sources = {s: torch.clamp(torch.floor(torch.arange(s, dtype=torch.float32) * (size / s)), max=size - 1).long()
               for s in set(side)}  # fmt: skip

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

    return {"CutMix box copy": cutmix_copy, "full-image copy": full_copy,
            "ResizeMix: nearest kernel": nearest_kernel,
            "ResizeMix: row, then column index_select (used)": row_then_column_gather}  # fmt: skip


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
    """FMix's select over every pixel (``where``), a run decomposition of its rows, NumPy's masked copy and a
    0/1 lerp.

    Each call takes the next of ``draws`` masks drawn by FMix (per batch one lam per draw,
    and how many rows are pure depends on it), the same sequence for every variant.
    """
    adapter = FMix(1.0)
    mixer = multimix.Mixer(adapter, num_classes=10, per_sample=per_sample, seed=0)
    masks = []
    for k in range(draws):
        mask = adapter.mask(x, adapter.draw_region(x, mixer.draw(x.shape[0]), torch.Generator().manual_seed(k)))
        masks.append((mask, row_runs_of(mask.numpy()), (~mask).numpy(), mask.float()))
    numpy_x = x.numpy()
    sequences = [itertools.cycle(masks) for _ in range(4)]  # one per variant: each sees the same masks

    def select_every_pixel() -> None:  # what FMix does
        mask = next(sequences[0])[0]
        for i in range(x.shape[0]):
            torch.where(mask[i % mask.shape[0]], x[i], x[perm[i]], out=x[i])

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
    return {f"FMix {mode}: select every pixel (used)": select_every_pixel,
            f"FMix {mode}: row runs": row_runs,
            f"FMix {mode}: np.copyto where": numpy_copyto,
            f"FMix {mode}: lerp, 0/1 weight (not exact)": lerp_every_pixel}  # fmt: skip


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
    variants = {**resize_variants(x, perm, lam), **fmix_variants(x, perm, False, draws),
                **fmix_variants(x, perm, True, draws)}  # fmt: skip
    print(f"batch {tuple(x.shape)} fp32, {args.threads} threads, torch {torch.__version__}, median of {args.reps}")
    times = {name: median_ms(fn, args.reps, warmup=1) for name, fn in variants.items()}
    print(f"{'variant':<72}{'ms':>9}{'x CutMix copy':>15}")
    for name, ms in times.items():
        print(f"{name:<72}{ms:>9.2f}{ms / times['CutMix box copy']:>15.2f}")


if __name__ == "__main__":
    main()
