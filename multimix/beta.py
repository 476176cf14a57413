"""Beta(alpha, alpha) draws from a ``torch.Generator``, for the plan's lam.

``torch.distributions`` cannot take a generator, and a generator is what makes a
resumed run draw the same plans. Beta comes from two Gamma variates (Marsaglia and
Tsang, 2000), in log space so that tiny alphas do not underflow. The uniforms and
normals come from the torch generator; the arithmetic runs in NumPy (or plain floats
for a per-batch draw), which costs far less host time than torch on a handful of numbers.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from multimix._checks import check_alpha, check_generator, check_positive_int

__all__ = ["sample_beta"]


def _log_gamma_variates(shape: float, count: int, generator: torch.Generator) -> np.ndarray:
    """Draw ``count`` values of log(Gamma(shape, 1)) with Marsaglia-Tsang rejection."""
    boost = shape < 1.0  # Gamma(k) = Gamma(k + 1) * U ** (1 / k), kept in log space
    k = shape + 1.0 if boost else shape
    d = k - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = np.empty(count)
    filled = 0
    while filled < count:
        need = (count - filled) * 9 // 8 + 4  # acceptance is above 95%: one round almost always suffices
        x = torch.randn(need, generator=generator, dtype=torch.float64).numpy()
        u = torch.rand(need, generator=generator, dtype=torch.float64).numpy()
        accepted = _accept(x, u, c, d)[: count - filled]
        out[filled : filled + accepted.size] = accepted
        filled += accepted.size
    if boost:
        u = torch.rand(count, generator=generator, dtype=torch.float64).numpy()
        out += np.log(np.maximum(u, 2.0**-60)) / shape  # a uniform of exactly 0 would give -inf
    return out


def _accept(x: np.ndarray, u: np.ndarray, c: float, d: float) -> np.ndarray:
    """The log-Gamma values of the accepted candidates, in order (Marsaglia-Tsang's squeeze-free test)."""
    if x.size <= 8:  # a per-batch draw (5 candidates): plain floats cost less than array calls
        accepted = []
        for xi, ui in zip(x.tolist(), u.tolist(), strict=True):
            v = (1.0 + c * xi) ** 3
            if v > 0 and (ui == 0 or math.log(ui) < 0.5 * xi * xi + d - d * v + d * math.log(v)):
                accepted.append(math.log(d) + math.log(v))
        return np.array(accepted)
    v = (1.0 + c * x) ** 3
    with np.errstate(divide="ignore", invalid="ignore"):
        log_v = np.log(v)
        accept = (v > 0) & (np.log(u) < 0.5 * x * x + d - d * v + d * log_v)
    return math.log(d) + log_v[accept]


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
    diff = _log_gamma_variates(alpha, count, generator) - _log_gamma_variates(alpha, count, generator)
    with np.errstate(over="ignore"):
        return torch.from_numpy(1.0 / (1.0 + np.exp(-diff)))  # sigmoid: Gx / (Gx + Gy) from the logs
