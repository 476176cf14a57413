"""The mixing plan: who is mixed with whom, and how much.

A :class:`MixPlan` is drawn once per batch on the CPU from a ``torch.Generator`` and
then applied by every adapter, hook and target mixer of that batch, so images, audio,
hidden states and labels always agree (kornia separates drawing from applying the
same way). The draw order is fixed: adapter choice, partner map, lam, then the
per-sample ``p`` coin. Two mixers with the same seed, ``per_sample`` and alpha therefore
draw the same ``index`` and ``lam`` whatever their adapter; adapter-specific draws (a
CutMix box, SpecMix bands) come after. With ``switch="sample"`` (timm's ``mode="elem"``)
the adapter is chosen per sample, before the partner map, and each lam is drawn from
its own adapter's alpha.

The partner map is one random cycle through the batch (each sample's partner is
uniform over the others, as torchvision's ``roll`` but shuffled): a permutation with
no fixed point, so with ``p=1`` every sample of a batch of two or more is mixed and the
device kernels need no "unmixed rows" pass.

lam ~ Beta(alpha, alpha) comes from :func:`multimix.beta.sample_beta` (the same generator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import torch

from multimix._checks import check_generator, check_positive_int, check_probability
from multimix._transfer import to_device
from multimix.beta import sample_beta

__all__ = ["MixPlan", "Share", "draw_plan", "identity_plan", "sample_beta", "split_by_choice"]

SWITCHES = ("batch", "sample")


@dataclass(frozen=True)
class MixPlan:
    """One batch's mixing decisions.

    Drawn on the CPU; :meth:`to` places a copy on the batch's device for the kernels,
    which keeps the CPU original as ``host`` for decisions made on the host (no
    read-back from the device is ever needed).

    Attributes:
        index: ``(B,)`` long, the partner each sample is mixed with; ``index[i] == i``
            for samples that are not mixed.
        lam: ``(B,)`` float64, the drawn weight of each sample's own input, 1 where
            not mixed. Adapters may correct it (CutMix reports the area kept).
        choice: position of the adapter chosen for this batch in the mixer's list
            (0 when the adapter is chosen per sample: see ``choices``).
        per_sample: whether lam was drawn per sample; if not, adapters also draw
            one region for the whole batch.
        choices: ``(B,)`` long, the adapter each sample chose, for a per-sample switch
            (``switch="sample"``); None when one adapter mixes the whole batch.
        host: the CPU plan this one was placed from (None for a CPU plan).
    """

    index: torch.Tensor
    lam: torch.Tensor
    choice: int = 0
    per_sample: bool = False
    choices: torch.Tensor | None = None
    host: MixPlan | None = field(default=None, repr=False, compare=False)
    placed_mixed: torch.Tensor | None = field(default=None, repr=False, compare=False)
    placed_other: torch.Tensor | None = field(default=None, repr=False, compare=False)
    placed_label_weights: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def batch_size(self) -> int:
        return int(self.index.shape[0])

    @property
    def device(self) -> torch.device:
        return self.index.device

    @property
    def on_host(self) -> MixPlan:
        """The CPU plan: index and lam that may be read without touching the device."""
        return self if self.host is None else self.host

    @cached_property
    def mixed(self) -> torch.Tensor:
        """``(B,)`` bool, on the plan's device: samples that take anything from a partner."""
        if self.placed_mixed is not None:
            return self.placed_mixed
        if self.device.type == "cpu":  # NumPy: cheaper host work on B numbers
            return torch.from_numpy((self.lam.numpy() < 1) & (self.index.numpy() != np.arange(self.batch_size)))
        return (self.lam < 1) & (self.index != torch.arange(self.batch_size, device=self.device))

    @cached_property
    def other(self) -> torch.Tensor:
        """``(B,)`` float64 ``1 - lam``, the partner's weight, computed on the host and placed with the plan."""
        if self.placed_other is not None:
            return self.placed_other
        if self.device.type == "cpu":
            return torch.from_numpy(1.0 - self.lam.numpy())
        return 1.0 - self.lam

    @cached_property
    def label_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lam, 1 - lam)`` as float32 ``(B, 1)`` columns, the weights of soft target rows.

        Computed on the host and placed with the plan, so building targets on the device
        takes no cast or subtraction kernels.
        """
        if self.placed_label_weights is not None:
            return self.placed_label_weights
        if self.device.type == "cpu":
            lam = self.lam.numpy()[:, None]
            return torch.from_numpy(lam.astype(np.float32)), torch.from_numpy((1.0 - lam).astype(np.float32))
        own = self.lam.to(torch.float32).unsqueeze(1)
        return own, 1.0 - own

    @cached_property
    def scalar_lam(self) -> float | None:
        """The one lam of a plan that mixes every sample with the same weight, as a host float; else None."""
        host = self.on_host
        if host.per_sample or not host.all_mixed:
            return None
        return float(host.lam.numpy()[0])

    def region_lam(self) -> torch.Tensor:
        """The lam a region is drawn from, on the host: every sample's, or one for the batch.

        With one lam per batch and ``p < 1``, samples the coin left out hold lam = 1; the
        batch's region (one CutMix box, one set of bands) is drawn from a mixed sample's lam.
        """
        host = self.on_host
        if host.per_sample:
            return host.lam
        lam = host.lam.numpy()
        mixed = np.flatnonzero(host.mixed.numpy())
        first = int(mixed[0]) if mixed.size else 0
        return torch.from_numpy(lam[first : first + 1])

    @cached_property
    def any_mixed(self) -> bool:
        """Whether any sample is mixed (decided on the host)."""
        return bool(self.on_host.mixed.numpy().any())

    @cached_property
    def all_mixed(self) -> bool:
        """Whether every sample is mixed (decided on the host)."""
        return bool(self.on_host.mixed.numpy().all())

    def to(self, device: torch.device, extra: Any = None) -> tuple[MixPlan, Any]:
        """Place the plan (and ``extra``: a region, labels, lengths) on ``device`` in one copy.

        Returns the placed plan and ``extra`` with its CPU tensors moved. On the CPU
        both come back unchanged.
        """
        if device.type == "cpu" or self.device == device:
            return self, extra
        moved, extra = to_device((self.tensors(), extra), device)
        return self.placed(moved), extra

    def tensors(self) -> tuple[torch.Tensor | None, ...]:
        """What :meth:`to` moves: the CPU plan's index, lam, other, mixed and choices.

        For callers that place several plans in one copy: put ``plan.tensors()`` in the
        tree given to :func:`~multimix._transfer.to_device`, then :meth:`placed` on the result.
        """
        host = self.on_host
        other = host.other if host.per_sample or not host.all_mixed else None  # per-batch: a host scalar
        return host.index, host.lam, other, host.mixed, host.choices, host.label_weights

    def placed(self, moved: tuple[torch.Tensor | None, ...]) -> MixPlan:
        """The plan rebuilt from its :meth:`tensors` once moved, keeping the CPU plan as ``host``."""
        index, lam, other, mixed, choices, label_weights = moved
        host = self.on_host
        return replace(host, index=index, lam=lam, choices=choices, host=host, placed_mixed=mixed, placed_other=other,
                       placed_label_weights=label_weights)  # fmt: skip


def identity_plan(batch_size: int) -> MixPlan:
    """The plan that mixes nothing: every sample keeps itself with lam = 1."""
    check_positive_int(batch_size, "batch_size")
    return MixPlan(torch.arange(batch_size), torch.ones(batch_size, dtype=torch.float64))


def random_cycle(batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """A partner map that is one random cycle: ``index[order[k]] = order[k + 1]``, no fixed point for B >= 2."""
    order = torch.randperm(batch_size, generator=generator).numpy()
    index = np.empty_like(order)
    index[order] = np.roll(order, -1)
    return torch.from_numpy(index)


def _choose(weights: Sequence[float] | None, count: int, generator: torch.Generator) -> int:
    """Index of the adapter chosen for this batch, with probability proportional to ``weights``."""
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    cumulative = np.cumsum(np.ones(count) if weights is None else np.asarray(weights, dtype=np.float64))
    return min(int(np.searchsorted(cumulative, u * cumulative[-1], side="right")), count - 1)


def _choose_each(
    weights: Sequence[float] | None, count: int, batch_size: int, generator: torch.Generator
) -> np.ndarray:
    """``(B,)`` adapter index of each sample, with probability proportional to ``weights``."""
    u = torch.rand(batch_size, generator=generator, dtype=torch.float64).numpy()
    cumulative = np.cumsum(np.ones(count) if weights is None else np.asarray(weights, dtype=np.float64))
    return np.minimum(np.searchsorted(cumulative, u * cumulative[-1], side="right"), count - 1)


def draw_plan(
    batch_size: int,
    alphas: Sequence[float],
    generator: torch.Generator,
    *,
    weights: Sequence[float] | None = None,
    per_sample: bool = False,
    p: float = 1.0,
    switch: str = "batch",
) -> MixPlan:
    """Draw the plan for one batch.

    Args:
        batch_size: number of samples B (1 works: the sample is its own partner).
        alphas: Beta concentration of each candidate adapter.
        generator: the CPU generator every random choice comes from.
        weights: relative probability of choosing each adapter (uniform if None).
        per_sample: one lam per sample instead of one for the batch.
        p: probability that each sample is mixed at all.
        switch: ``"batch"`` chooses one adapter for the batch; ``"sample"`` one per
            sample (timm's ``mode="elem"``), each lam drawn from the chosen adapter's
            alpha; it needs ``per_sample=True``.

    Example:
        >>> plan = draw_plan(6, [0.8, 1.0], torch.Generator().manual_seed(0), per_sample=True, switch="sample")
        >>> plan.choices.shape, plan.choices.dtype
        (torch.Size([6]), torch.int64)
    """
    check_positive_int(batch_size, "batch_size")
    check_generator(generator)
    p = check_probability(p, "p")
    if len(alphas) == 0:
        raise ValueError("alphas must name at least one adapter's alpha, got an empty sequence")
    if switch not in SWITCHES:
        raise ValueError(f"switch must be 'batch' (one adapter per batch) or 'sample' (one per sample), got {switch!r}")
    if switch == "sample" and not per_sample:
        raise ValueError("switch='sample' draws one lam per sample from each sample's adapter; pass per_sample=True")
    choices = None
    if switch == "sample":
        chosen = _choose_each(weights, len(alphas), batch_size, generator)
        index = random_cycle(batch_size, generator)
        lam = torch.ones(batch_size, dtype=torch.float64)
        for k, alpha in enumerate(alphas):  # each sample's lam from its own adapter's alpha
            members = np.flatnonzero(chosen == k)
            if members.size:
                lam[torch.from_numpy(members)] = sample_beta(alpha, int(members.size), generator)
        choice, choices = 0, torch.from_numpy(chosen.astype(np.int64))
    else:
        choice = _choose(weights, len(alphas), generator) if len(alphas) > 1 else 0
        index = random_cycle(batch_size, generator)
        lam = sample_beta(alphas[choice], batch_size, generator) if per_sample else \
            torch.full((batch_size,), float(sample_beta(alphas[choice], 1, generator).numpy()[0]), dtype=torch.float64)
    if p < 1.0:
        keep = torch.rand(batch_size, generator=generator, dtype=torch.float64) >= p
        lam[keep] = 1.0
        index[keep] = torch.arange(batch_size)[keep]
    return MixPlan(index=index, lam=lam, choice=choice, per_sample=per_sample, choices=choices)


class Share(NamedTuple):
    """One adapter's share of a per-sample switch: its samples, gathered with their partners into a sub-batch.

    Attributes:
        rows: ``(n,)`` long, the samples of the batch this adapter mixes, ascending.
        sources: ``(S,)`` long, the batch rows gathered into the sub-batch: ``rows``
            first, then the partners that are not among them.
        plan: the CPU plan over the sub-batch: its first ``n`` samples are mixed with
            their partners' positions in the sub-batch, the others are left unmixed.
    """

    rows: torch.Tensor
    sources: torch.Tensor
    plan: MixPlan


def split_by_choice(plan: MixPlan, count: int) -> list[Share | None]:
    """Split a per-sample-switch plan (``plan.choices``) into one :class:`Share` per adapter (None if it mixes none).

    Each adapter then mixes a sub-batch gathered from the batch before anything is
    written, so every sample reads its partner's original value whatever adapter the
    partner chose (timm reads from ``x.clone()``), and only its own samples are
    written back. Works on the CPU plan, on the host.

    Example:
        >>> plan = MixPlan(torch.tensor([1, 2, 0]), torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64),
        ...                per_sample=True, choices=torch.tensor([0, 1, 1]))
        >>> first, second = split_by_choice(plan, 2)
        >>> first.rows.tolist(), first.sources.tolist(), first.plan.index.tolist(), first.plan.lam.tolist()
        ([0], [0, 1], [1, 1], [0.5, 1.0])
        >>> second.rows.tolist(), second.sources.tolist(), second.plan.index.tolist()
        ([1], [1, 2], [1, 1])
    """
    plan = plan.on_host
    if plan.choices is None:
        raise ValueError("split_by_choice needs a plan drawn with switch='sample' (plan.choices is None)")
    choices, mixed = plan.choices.numpy(), plan.mixed.numpy()
    index, lam = plan.index.numpy(), plan.lam.numpy()
    position = np.empty(plan.batch_size, dtype=np.int64)
    shares: list[Share | None] = []
    for k in range(count):
        rows = np.flatnonzero(mixed & (choices == k))
        if rows.size == 0:
            shares.append(None)
            continue
        partners = index[rows]
        sources = np.concatenate([rows, np.setdiff1d(partners, rows, assume_unique=False)])
        position[sources] = np.arange(sources.size)
        sub_index = np.arange(sources.size)
        sub_index[: rows.size] = position[partners]
        sub_lam = np.ones(sources.size)
        sub_lam[: rows.size] = lam[rows]
        sub = MixPlan(torch.from_numpy(sub_index), torch.from_numpy(sub_lam), choice=k, per_sample=True)
        shares.append(Share(torch.from_numpy(rows), torch.from_numpy(sources), sub))
    return shares
