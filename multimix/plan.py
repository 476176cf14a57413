"""The mixing plan: who is mixed with whom, and how much.

A :class:`MixPlan` is drawn once per batch from a ``torch.Generator`` and then
applied by every adapter, hook and target mixer of that batch, so images, audio,
hidden states and labels always agree (kornia separates drawing from applying the
same way). The draw order is fixed: adapter choice, partner permutation, lam,
then the per-sample ``p`` coin. Two mixers with the same seed, ``per_sample`` and
alpha therefore draw the same ``index`` and ``lam`` whatever their adapter;
adapter-specific draws (a CutMix box, SpecMix bands) come after.

Beta(alpha, alpha) is sampled from the generator through two Gamma variates
(Marsaglia and Tsang, 2000), in log space so that tiny alphas do not underflow:
``torch.distributions`` cannot take a generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from multimix._checks import check_alpha, check_generator, check_positive_int, check_probability

__all__ = ["MixPlan", "draw_plan", "identity_plan", "sample_beta"]


@dataclass(frozen=True)
class MixPlan:
    """One batch's mixing decisions, on the CPU.

    Attributes:
        index: ``(B,)`` long, the partner each sample is mixed with; ``index[i] == i``
            for samples that are not mixed.
        lam: ``(B,)`` float64, the drawn weight of each sample's own input, 1 where
            not mixed. Adapters may correct it (CutMix reports the area kept).
        choice: position of the adapter chosen for this batch in the mixer's list.
        per_sample: whether lam was drawn per sample; if not, adapters also draw
            one region for the whole batch.
    """

    index: torch.Tensor
    lam: torch.Tensor
    choice: int = 0
    per_sample: bool = False

    @property
    def batch_size(self) -> int:
        return int(self.index.numel())

    @property
    def mixed(self) -> torch.Tensor:
        """``(B,)`` bool: samples that take anything from a partner."""
        return (self.lam < 1) & (self.index != torch.arange(self.batch_size))


def _log_gamma_variates(shape: float, count: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``count`` values of log(Gamma(shape, 1)) with Marsaglia-Tsang rejection."""
    boost = shape < 1.0  # Gamma(k) = Gamma(k + 1) * U ** (1 / k), kept in log space
    k = shape + 1.0 if boost else shape
    d = k - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(count, dtype=torch.float64)
    filled = 0
    while filled < count:
        need = count - filled
        x = torch.randn(need, generator=generator, dtype=torch.float64)
        u = torch.rand(need, generator=generator, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        positive = v > 0
        log_v = torch.log(torch.where(positive, v, torch.ones_like(v)))
        accept = positive & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        accepted = math.log(d) + log_v[accept]
        out[filled : filled + accepted.numel()] = accepted
        filled += accepted.numel()
    if boost:
        u = torch.rand(count, generator=generator, dtype=torch.float64)
        out = out + torch.log(u) / shape
    return out


def sample_beta(alpha: float, count: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``count`` samples of Beta(alpha, alpha) as a float64 CPU tensor.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> lam = sample_beta(1.0, 4, g)
        >>> lam.shape, bool(((lam >= 0) & (lam <= 1)).all())
        (torch.Size([4]), True)
    """
    alpha = check_alpha(alpha)
    check_positive_int(count, "count")
    check_generator(generator)
    log_x = _log_gamma_variates(alpha, count, generator)
    log_y = _log_gamma_variates(alpha, count, generator)
    return torch.sigmoid(log_x - log_y)


def identity_plan(batch_size: int) -> MixPlan:
    """The plan that mixes nothing: every sample keeps itself with lam = 1."""
    check_positive_int(batch_size, "batch_size")
    return MixPlan(torch.arange(batch_size), torch.ones(batch_size, dtype=torch.float64))


def draw_plan(
    batch_size: int,
    alphas: Sequence[float],
    generator: torch.Generator,
    *,
    weights: Sequence[float] | None = None,
    per_sample: bool = False,
    p: float = 1.0,
) -> MixPlan:
    """Draw the plan for one batch.

    Args:
        batch_size: number of samples B (1 works: the sample is its own partner).
        alphas: Beta concentration of each candidate adapter.
        generator: the CPU generator every random choice comes from.
        weights: relative probability of choosing each adapter (uniform if None).
        per_sample: one lam per sample instead of one for the batch.
        p: probability that each sample is mixed at all.
    """
    check_positive_int(batch_size, "batch_size")
    check_generator(generator)
    p = check_probability(p, "p")
    if len(alphas) == 0:
        raise ValueError("alphas must name at least one adapter's alpha, got an empty sequence")
    choice = 0
    if len(alphas) > 1:
        probs = (
            torch.ones(len(alphas), dtype=torch.float64)
            if weights is None
            else torch.tensor(weights, dtype=torch.float64)
        )
        choice = int(torch.multinomial(probs, 1, generator=generator))
    index = torch.randperm(batch_size, generator=generator)
    lam = sample_beta(alphas[choice], batch_size if per_sample else 1, generator).expand(batch_size).clone()
    if p < 1.0:
        keep = torch.rand(batch_size, generator=generator, dtype=torch.float64) >= p
        lam[keep] = 1.0
        index[keep] = torch.arange(batch_size)[keep]
    return MixPlan(index=index, lam=lam, choice=choice, per_sample=per_sample)
