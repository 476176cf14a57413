"""Calibration after training: temperature scaling and proper scoring rules (NLL, Brier).

Mixup-trained networks are often under-confident, plainly trained ones over-confident
(Guo et al., "On Calibration of Modern Neural Networks", ICML 2017; Wang et al.,
"On the Pitfall of Mixup for Uncertainty Calibration", CVPR 2023). Temperature
scaling fits one scalar T on held-out data and divides the logits by it: accuracy is
unchanged, NLL and ECE usually drop. Fit T on a validation split, never on the test set.
"""

from __future__ import annotations

import math
import warnings
from numbers import Real

import torch

from multimix.metrics import _check_scores

__all__ = ["brier_score", "fit_temperature", "negative_log_likelihood"]

_GOLDEN = (math.sqrt(5) - 1) / 2
_STEPS = 64  # the log-T interval shrinks by 0.618**64 ~ 4e-14: far below the statistical error of T


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float64 where the device has it (MPS does not), so a sum over many samples keeps its digits."""
    return x.to(torch.float32 if x.device.type == "mps" else torch.float64)


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood ``-log softmax(z)_y`` of the true class (the test loss).

    Args:
        logits: ``(N, C)`` finite logits (divide by a fitted temperature first to score it).
        labels: ``(N,)`` class indices or ``(N, C)`` rows (argmax is the label).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
        >>> round(negative_log_likelihood(logits, torch.tensor([0, 1])), 4)  # (0.1269 + 0.6931) / 2
        0.41
    """
    logits, labels = _check_scores(logits, labels)
    log_probs = torch.log_softmax(_wide(logits), dim=1)
    return float(-log_probs.gather(1, labels.unsqueeze(1)).mean())


def brier_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Multi-class Brier score ``mean_n sum_c (p_nc - [c = y_n])^2``, in [0, 2] (Brier, 1950).

    A proper scoring rule like NLL, but bounded, so one confidently wrong sample
    cannot dominate it.

    Args:
        logits: ``(N, C)`` finite logits.
        labels: ``(N,)`` class indices or ``(N, C)`` rows (argmax is the label).

    Example:
        >>> round(brier_score(torch.tensor([[0.0, 0.0]]), torch.tensor([1])), 4)  # 0.5**2 + 0.5**2
        0.5
    """
    logits, labels = _check_scores(logits, labels)
    probs = torch.softmax(_wide(logits), dim=1)
    one_hot = torch.zeros_like(probs).scatter_(1, labels.unsqueeze(1), 1.0)
    return float((probs - one_hot).square().sum(dim=1).mean())


def _check_bounds(bounds: object) -> tuple[float, float]:
    if (
        not isinstance(bounds, (tuple, list))
        or len(bounds) != 2
        or not all(isinstance(b, Real) and not isinstance(b, bool) for b in bounds)
    ):
        raise TypeError(f"bounds must be a pair (low, high) of temperatures, got {bounds!r}; e.g. bounds=(0.05, 20.0)")
    low, high = float(bounds[0]), float(bounds[1])
    if not (0 < low < high < math.inf):
        raise ValueError(f"bounds must satisfy 0 < low < high < inf, got ({low!r}, {high!r}); e.g. bounds=(0.05, 20.0)")
    return low, high


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T minimising the NLL of ``logits / T`` (temperature scaling, Guo et al., ICML 2017).

    NLL as a function of ``1 / T`` is convex, so it has one minimum along ``log T``;
    a golden-section search over ``log T`` in ``bounds`` finds it, in float64, on the
    tensors' own device. The search runs a fixed number of steps with ``torch.where``
    instead of Python comparisons, so a GPU is read back once, at the end.

    T > 1 softens over-confident logits, T < 1 sharpens under-confident ones (as
    mixup-trained models often are). A result on a bound means the NLL still falls
    beyond it (e.g. separable validation data): a ``UserWarning`` says so.

    Args:
        logits: ``(N, C)`` finite validation logits of the trained model.
        labels: ``(N,)`` class indices or ``(N, C)`` rows (argmax is the label).
        bounds: ``(low, high)`` range of T searched, ``0 < low < high``.

    Returns:
        T as a Python float; score the calibrated model with ``logits / T``.

    Raises:
        ValueError: logits of fewer than 2 classes (every T fits one class alike), or bad bounds.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> true_logits = 2 * torch.randn(4000, 5, generator=g)
        >>> labels = torch.multinomial(true_logits.softmax(dim=1), 1, generator=g).squeeze(1)
        >>> round(fit_temperature(3 * true_logits, labels), 1)  # three times over-confident
        3.0
    """
    if isinstance(logits, torch.Tensor) and logits.dim() == 2 and logits.shape[1] < 2:
        raise ValueError(
            f"fit_temperature needs logits of at least 2 classes (N, C), got shape {tuple(logits.shape)}: with one "
            "class every T gives the same NLL; for one binary logit z pass torch.cat([torch.zeros_like(z), z], dim=1)"
        )
    logits, labels = _check_scores(logits, labels)
    low, high = _check_bounds(bounds)
    z = _wide(logits)
    # margins to the true class, the true class itself masked out: NLL = log(1 + sum_k exp(margin_k / T)),
    # taken through log1p so confident samples keep their tiny losses and the search sees a slope, not ties
    margins = (z - z.gather(1, labels.unsqueeze(1))).scatter(1, labels.unsqueeze(1), -math.inf)

    def nll(log_t: torch.Tensor) -> torch.Tensor:
        scaled = margins * torch.exp(-log_t)
        top = scaled.amax(dim=1).clamp(min=0)
        rest = torch.exp(scaled - top.unsqueeze(1)).sum(dim=1)
        return (top + torch.log1p(torch.expm1(-top) + rest)).mean()

    a = torch.tensor(math.log(low), dtype=z.dtype, device=z.device)
    b = torch.tensor(math.log(high), dtype=z.dtype, device=z.device)
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(_STEPS):
        left = fc <= fd  # the minimum lies in [a, d]: d becomes the right end, c the new inner right point
        a, b = torch.where(left, a, c), torch.where(left, d, b)
        new = torch.where(left, b - _GOLDEN * (b - a), a + _GOLDEN * (b - a))
        f_new = nll(new)
        c, d, fc, fd = (
            torch.where(left, new, d),
            torch.where(left, c, new),
            torch.where(left, f_new, fd),
            torch.where(left, fc, f_new),
        )
    temperature = math.exp(float((a + b) / 2))
    if min(temperature / low, high / temperature) < 1 + 1e-6:
        warnings.warn(
            f"fit_temperature: T = {temperature:.4g} lies on the bound of bounds=({low}, {high}); the NLL keeps "
            "falling beyond it (separable or tiny validation data?): widen bounds or use more validation samples",
            UserWarning,
            stacklevel=2,
        )
    return temperature
