"""The mixing plan: who is mixed with whom, and how much.

A :class:`MixPlan` is drawn once per batch on the CPU from a ``torch.Generator`` and
then applied by every adapter, hook and target mixer of that batch, so images, audio,
hidden states and labels always agree (kornia separates drawing from applying the
same way). The draw order is fixed: partner map, adapter choice (with several
adapters), lam, then the per-sample ``p`` coin. Two mixers of one adapter each with the
same seed, ``per_sample`` and alpha therefore draw the same ``index`` and ``lam`` whatever
their adapter (and any number of adapters the same ``index``); adapter-specific draws (a
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
from typing import Any

import numpy as np
import torch

from multimix._checks import check_alpha, check_generator, check_positive_int, check_probability, check_weights
from multimix._transfer import to_device
from multimix.beta import beta_values

__all__ = ["MixPlan", "draw_plan", "identity_plan"]

SWITCHES = ("batch", "sample")


@dataclass(frozen=True)
class MixPlan:
    """One batch's mixing decisions.

    Drawn on the CPU; :meth:`to` places a copy on the batch's device for the kernels,
    which keeps the CPU original as ``host``. Everything a kernel branches on is a
    host value fixed when the plan is drawn (``per_sample``, ``choice``, ``any_mixed``,
    ``all_mixed``), so applying a plan reads nothing back from the device and traces
    whole under ``torch.compile``. Kernels read the two flags through
    :attr:`nothing_to_mix` and :attr:`nothing_to_keep`, which a traced call ignores: one
    graph then serves every plan of an adapter, whichever samples it mixes.

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
        mixed: ``(B,)`` bool, samples that take anything from a partner (computed
            when not given).
        any_mixed: whether any sample is mixed, decided on the host.
        all_mixed: whether every sample is mixed, decided on the host.
        region: what the adapter drew beyond the plan (a box, bands), set by
            :meth:`multimix.Mixer.plan_for`; per field for dict batches.
        host: the CPU plan this one was placed from (None for a CPU plan).
        sample_shape: the shape of one sample (``x.shape[1:]``, per field for dict batches)
            the region was drawn for, so :meth:`multimix.Mixer.apply` refuses other
            inputs; None for a plan built by hand.
        drawn_by: the names of the adapters whose region the plan holds (per field, members of
            a switch included), so a Mixer of other adapters refuses it; None for a plan built by hand.
    """

    index: torch.Tensor
    lam: torch.Tensor
    choice: int = 0
    per_sample: bool = False
    choices: torch.Tensor | None = None
    mixed: torch.Tensor | None = field(default=None, repr=False, compare=False)
    any_mixed: bool | None = field(default=None, repr=False, compare=False)
    all_mixed: bool | None = field(default=None, repr=False, compare=False)
    region: Any = field(default=None, repr=False, compare=False)
    host: MixPlan | None = field(default=None, repr=False, compare=False)
    sample_shape: Any = field(default=None, repr=False, compare=False)
    drawn_by: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        index, lam = self.index, self.lam
        if not isinstance(index, torch.Tensor) or not isinstance(lam, torch.Tensor):
            raise TypeError(f"MixPlan needs index and lam tensors, got {type(index).__name__} and {type(lam).__name__}")
        if index.dim() != 1 or lam.shape != index.shape or index.is_floating_point() or not lam.is_floating_point():
            raise ValueError(
                f"MixPlan needs an integer index (B,) and a float lam (B,) of the same length, got index "
                f"{tuple(index.shape)} {index.dtype} and lam {tuple(lam.shape)} {lam.dtype}"
            )
        if self.mixed is None:
            if self.host is not None:
                mixed = self.host.mixed.to(self.index.device)
            elif self.index.device.type == "cpu":  # NumPy: cheaper host work on B numbers
                mixed = torch.from_numpy((self.lam.numpy() < 1) & (self.index.numpy() != np.arange(self.batch_size)))
            else:
                mixed = (self.lam < 1) & (self.index != torch.arange(self.batch_size, device=self.index.device))
            object.__setattr__(self, "mixed", mixed)
        if self.any_mixed is None or self.all_mixed is None:
            # a plan built by hand on a device is read back once here; drawn plans come with both
            flags = self.on_host.mixed.cpu().numpy()
            object.__setattr__(self, "any_mixed", bool(flags.any()))
            object.__setattr__(self, "all_mixed", bool(flags.all()))

    @property
    def nothing_to_mix(self) -> bool:
        """No sample is mixed (known on the host) and the call is eager: an adapter may return its input as is.

        Never true while traced: a branch on the host flag would make every value a graph
        of its own, and the masked path gives the same values for every plan (an unmixed
        sample is selected from its input, at lam = 1).
        """
        return not torch.compiler.is_compiling() and not self.any_mixed

    @property
    def nothing_to_keep(self) -> bool:
        """Every sample is mixed (known on the host) and the call is eager: no selection of unmixed samples.

        Never true while traced, for the reason :attr:`nothing_to_mix` gives.
        """
        return not torch.compiler.is_compiling() and bool(self.all_mixed)

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

    def region_lam(self) -> torch.Tensor:
        """The lam a region is drawn from, on the host: every sample's, or one for the batch.

        With one lam per batch and ``p < 1``, samples the coin left out hold lam = 1; the
        batch's region (one CutMix box, one set of bands) is drawn from a mixed sample's lam.
        """
        host = self.on_host
        if host.per_sample or host.all_mixed:
            return host.lam if host.per_sample else host.lam[:1]
        mixed = np.flatnonzero(host.mixed.numpy())
        first = int(mixed[0]) if mixed.size else 0
        return host.lam[first : first + 1]

    def with_region(self, region: Any, sample_shape: Any = None, drawn_by: Any = None) -> MixPlan:
        """This CPU plan carrying ``region``, drawn for samples of ``sample_shape`` by the adapters ``drawn_by`` names
        (a copy of the fields as they are: nothing recomputed)."""
        plan = object.__new__(MixPlan)
        plan.__dict__.update(self.__dict__, region=region, sample_shape=sample_shape, drawn_by=drawn_by)
        return plan

    def to(self, device: torch.device, extra: Any = None) -> tuple[MixPlan, Any]:
        """Place the plan, its region and ``extra`` (labels, lengths) on ``device`` in one copy.

        Returns the placed plan and ``extra`` with its CPU tensors moved. On the CPU the
        CPU plan comes back, and ``extra`` unchanged.
        """
        if device.type == "cpu":
            return self.on_host, extra
        if self.device == device:
            return self, to_device(extra, device)
        host = self.on_host
        moved, extra = to_device(((host.index, host.lam, host.mixed, host.choices, host.region), extra), device)
        index, lam, mixed, choices, region = moved
        placed = replace(host, index=index, lam=lam, mixed=mixed, choices=choices, region=region, host=host)
        return placed, extra


def placed_on(plan: MixPlan, cache: dict[str, MixPlan], device: torch.device) -> MixPlan:
    """``plan`` on ``device``: itself where it lies, else placed once and kept in ``cache`` (a step's layers on
    other devices: model parallelism, offloading)."""
    if device == plan.device:
        return plan
    key = str(device)
    if key not in cache:
        cache[key] = plan.to(device)[0]
    return cache[key]


def identity_plan(batch_size: int) -> MixPlan:
    """The plan that mixes nothing: every sample keeps itself with lam = 1."""
    check_positive_int(batch_size, "batch_size")
    return MixPlan(torch.arange(batch_size), torch.ones(batch_size, dtype=torch.float64))


def _cycle(batch_size: int, generator: torch.Generator) -> np.ndarray:
    """A partner map that is one random cycle: ``index[order[k]] = order[k + 1]``, no fixed point for B >= 2."""
    order = torch.randperm(batch_size, generator=generator).numpy()
    index = np.empty_like(order)
    index[order[:-1]] = order[1:]
    index[order[-1]] = order[0]
    return index


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
    alphas = [check_alpha(alpha) for alpha in alphas]
    if switch not in SWITCHES:
        raise ValueError(f"switch must be 'batch' (one adapter per batch) or 'sample' (one per sample), got {switch!r}")
    if switch == "sample" and not per_sample:
        raise ValueError("switch='sample' draws one lam per sample from each sample's adapter; pass per_sample=True")
    return _draw(batch_size, alphas, generator, check_weights(weights, len(alphas)), per_sample, p, switch)


def _draw(
    batch_size: int,
    alphas: Sequence[float],
    generator: torch.Generator,
    weights: Sequence[float] | None,
    per_sample: bool,
    p: float,
    switch: str,
    matched: bool = False,
) -> MixPlan:
    """:func:`draw_plan` for arguments already checked (the Mixer checks them once, when they are set).

    ``matched``: the draws are for pairs that find their partners elsewhere (timm's pair and half modes), so a
    single draw is not a sample that is its own partner: its lam stays unless the ``p`` coin leaves it out.
    """
    if switch == "sample":
        chosen = _choose_each(weights, len(alphas), batch_size, generator)
        index = _cycle(batch_size, generator)
        lam = np.ones(batch_size)
        for k, alpha in enumerate(alphas):  # each sample's lam from its own adapter's alpha
            members = np.flatnonzero(chosen == k)
            if members.size:
                lam[members] = beta_values(alpha, int(members.size), generator)
        choice, choices = 0, torch.from_numpy(chosen.astype(np.int64))
    else:
        index = _cycle(batch_size, generator)
        choice, choices = (_choose(weights, len(alphas), generator) if len(alphas) > 1 else 0), None
        lam = beta_values(alphas[choice], batch_size if per_sample else 1, generator)
        if not (per_sample or p < 1.0 or batch_size == 1):  # one lam, every sample on the cycle: all mixed or none
            mixed = bool(lam[0] < 1)
            return _plan(index, lam.repeat(batch_size), choice, False, None, np.full(batch_size, mixed), mixed, mixed)
        lam = lam if per_sample else lam.repeat(batch_size)
    if p < 1.0:
        keep = torch.rand(batch_size, generator=generator, dtype=torch.float64).numpy() >= p
        lam[keep] = 1.0
        index[keep] = np.flatnonzero(keep)
    mixed = lam < 1
    if (batch_size == 1 or p < 1.0) and not matched:  # a random cycle has no fixed point for B >= 2
        mixed &= index != np.arange(batch_size)
        lam[~mixed] = 1.0  # a sample that is its own partner keeps all of itself (B = 1)
    all_mixed = bool(mixed.all())
    return _plan(index, lam, choice, per_sample, choices, mixed, all_mixed or bool(mixed.any()), all_mixed)


def _plan(
    index: np.ndarray,
    lam: np.ndarray,
    choice: int,
    per_sample: bool,
    choices: torch.Tensor | None,
    mixed: np.ndarray,
    any_mixed: bool,
    all_mixed: bool,
) -> MixPlan:
    """A drawn CPU plan from its NumPy fields, every field given (no ``__post_init__`` work to redo)."""
    plan = object.__new__(MixPlan)
    plan.__dict__.update(index=torch.from_numpy(index), lam=torch.from_numpy(lam), choice=choice,
                         per_sample=per_sample, choices=choices, mixed=torch.from_numpy(mixed), any_mixed=any_mixed,
                         all_mixed=all_mixed, region=None, host=None, sample_shape=None, drawn_by=None)  # fmt: skip
    return plan
