"""Beta(alpha, alpha) draws from a ``torch.Generator``, for the plan's lam.

``torch.distributions`` cannot take a generator, and a generator is what makes a
resumed run draw the same plans. Beta comes from two Gamma variates (Marsaglia and
Tsang, 2000), in log space so that tiny alphas do not underflow; Beta(1, 1), the most
used alpha, is the uniform distribution and takes one uniform per value. Each round takes one
block of uniforms from the generator (normals by Box-Muller), because on a handful of
numbers the host cost is the number of calls, not the arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from multimix._checks import check_alpha, check_generator, check_positive_int

__all__ = ["sample_beta"]

_SMALL = 8  # up to this many Gamma variates, plain floats cost less host time than NumPy calls


def _candidates(count: int) -> int:
    """Candidates per round: acceptance is above 95%, so one round almost always suffices."""
    return count + count // 8 + 2


def _log_gammas_small(shape: float, count: int, generator: torch.Generator) -> list[float]:
    """``count`` values of log(Gamma(shape, 1)) with Marsaglia-Tsang rejection, as plain floats."""
    boost = shape < 1.0  # Gamma(k) = Gamma(k + 1) * U ** (1 / k), kept in log space
    d = (shape + 1.0 if boost else shape) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out: list[float] = []
    while len(out) < count:
        need = _candidates(count - len(out))
        u = torch.rand(3 * need + (count if boost else 0), generator=generator, dtype=torch.float64).tolist()
        for k in range(need):
            x = math.sqrt(-2.0 * math.log(1.0 - u[3 * k])) * math.cos(2.0 * math.pi * u[3 * k + 1])
            v = (1.0 + c * x) ** 3
            accept_u = u[3 * k + 2]
            if v > 0 and (accept_u == 0 or math.log(accept_u) < 0.5 * x * x + d - d * v + d * math.log(v)):
                out.append(math.log(d) + math.log(v))
                if len(out) == count:
                    break
        if boost and len(out) == count:
            extra = u[3 * need :]
            out = [g + math.log(max(e, 2.0**-60)) / shape for g, e in zip(out, extra, strict=True)]
    return out


def _log_gammas(shape: float, count: int, generator: torch.Generator) -> np.ndarray:
    """``count`` values of log(Gamma(shape, 1)) with Marsaglia-Tsang rejection, vectorised."""
    boost = shape < 1.0
    d = (shape + 1.0 if boost else shape) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = np.empty(count)
    filled = 0
    while filled < count:  # the same uniforms, in the same order, as the plain-float path
        need = _candidates(count - filled)
        drawn = torch.rand(3 * need + (count if boost else 0), generator=generator, dtype=torch.float64).numpy()
        u = drawn[: 3 * need].reshape(need, 3)
        x = np.sqrt(-2.0 * np.log1p(-u[:, 0])) * np.cos(2.0 * np.pi * u[:, 1])
        v = (1.0 + c * x) ** 3
        with np.errstate(divide="ignore", invalid="ignore"):
            log_v = np.log(v)
            accept = (v > 0) & ((u[:, 2] == 0) | (np.log(u[:, 2]) < 0.5 * x * x + d - d * v + d * log_v))
        accepted = (math.log(d) + log_v[accept])[: count - filled]
        out[filled : filled + accepted.size] = accepted
        filled += accepted.size
    if boost:  # the last round's extra uniforms
        out += np.log(np.maximum(drawn[3 * need :], 2.0**-60)) / shape  # a uniform of exactly 0 would give -inf
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
    return torch.from_numpy(beta_values(alpha, count, generator))


def beta_values(alpha: float, count: int, generator: torch.Generator) -> np.ndarray:
    """:func:`sample_beta` for arguments already checked, as a float64 NumPy array."""
    if alpha == 1.0:  # Beta(1, 1) is the uniform distribution on [0, 1]: one uniform per value, exactly
        return torch.rand(count, generator=generator, dtype=torch.float64).numpy()
    if 2 * count <= _SMALL:
        logs = _log_gammas_small(alpha, 2 * count, generator)
        return np.array([_sigmoid(a - b) for a, b in zip(logs[:count], logs[count:], strict=True)])
    logs = _log_gammas(alpha, 2 * count, generator)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(logs[count:] - logs[:count]))  # Gx / (Gx + Gy) from the logs


def _sigmoid(value: float) -> float:
    """``1 / (1 + exp(-value))`` without overflow for any float."""
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    e = math.exp(value)
    return e / (1.0 + e)
