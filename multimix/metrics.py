"""Metrics that stay meaningful under mixup: accuracy, mixed accuracy, calibration.

Mixup is known to improve calibration (Thulasidasan et al., NeurIPS 2019), so
expected calibration error (Guo et al., ICML 2017) and its reliability diagram sit
beside accuracy. Accuracy on a mixed batch is not accuracy: :func:`mixed_accuracy`
reports the lam-weighted agreement with both sources and is labelled as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any

import torch

from multimix._checks import check_positive_int, check_tensor
from multimix.target_checks import check_partners

__all__ = [
    "ReliabilityDiagram",
    "accuracy",
    "expected_calibration_error",
    "mixed_accuracy",
    "plot_reliability_diagram",
    "reliability_diagram",
]


def _check_scores(scores: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Check finite ``(N, C)`` scores and labels given as indices ``(N,)`` or rows ``(N, C)``; return indices.

    Metrics return Python floats, so reading values back here costs nothing extra.
    """
    scores = check_tensor(scores, "logits")
    labels = check_tensor(labels, "labels")
    if scores.dim() != 2 or scores.shape[0] == 0 or not scores.is_floating_point():
        raise ValueError(
            f"logits must be a non-empty float tensor (N, C), got shape {tuple(scores.shape)} dtype {scores.dtype}"
        )
    if labels.dim() == 2:
        if labels.shape != scores.shape:
            raise ValueError(
                f"label rows must have the shape of logits {tuple(scores.shape)}, got {tuple(labels.shape)}"
            )
        labels = labels.to(torch.float64).argmax(dim=1)
    elif labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be integer indices (N,) or rows (N, C), got shape {tuple(labels.shape)} "
            f"dtype {labels.dtype}; convert class indices with .long()"
        )
    if labels.shape[0] != scores.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries, logits {scores.shape[0]}")
    if labels.device != scores.device:
        raise ValueError(f"labels must be on the device of logits ({scores.device}), got {labels.device}")
    if int(labels.min()) < 0 or int(labels.max()) >= scores.shape[1]:
        raise ValueError(
            f"labels must lie in [0, {scores.shape[1]}), got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    bad = int((~torch.isfinite(scores)).sum())
    if bad:
        raise ValueError(
            f"logits must be finite, got {bad} NaN or inf values of {scores.numel()}; "
            "a diverged model gives NaN: check the run (or its learning rate) before measuring it"
        )
    return scores, labels.long()


def _check_probs(probs: torch.Tensor) -> None:
    """``from_probs=True`` promises rows of probabilities; logits passed by mistake would bin silently."""
    low, high = float(probs.min()), float(probs.max())
    sums = probs.sum(dim=1)
    worst = float((sums - 1).abs().max())
    if low < 0 or high > 1 or worst > 1e-3:
        raise ValueError(
            f"from_probs=True needs probabilities (values in [0, 1], rows summing to 1), got values in "
            f"[{low:.4g}, {high:.4g}] and row sums off by up to {worst:.4g}; pass logits with from_probs=False"
        )


def accuracy(logits: torch.Tensor, labels: torch.Tensor, topk: int = 1) -> float:
    """Fraction of samples whose label is among the ``topk`` highest logits.

    Example:
        >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        0.5
    """
    logits, labels = _check_scores(logits, labels)
    check_positive_int(topk, "topk")
    if topk > logits.shape[1]:
        raise ValueError(f"topk must be <= the number of classes {logits.shape[1]}, got {topk}")
    top = logits.topk(topk, dim=1).indices
    return float((top == labels.unsqueeze(1)).any(dim=1).double().mean())


def mixed_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, lam: torch.Tensor | float, index: torch.Tensor
) -> float:
    """lam-weighted agreement of the prediction with both sources of a mixed batch.

    ``lam * [pred == y] + (1 - lam) * [pred == y[index]]``, averaged: the training
    "accuracy" of the mixup reference code. Pass ``out.lam`` and ``out.index``, or one
    lam for the batch (a float, as timm-style loops hold it).

    Example:
        >>> mixed_accuracy(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([0, 1]),
        ...                torch.tensor([0.75, 0.75]), torch.tensor([1, 0]))
        0.5
    """
    logits, labels = _check_scores(logits, labels)
    n = labels.shape[0]
    if isinstance(lam, Real) and not isinstance(lam, bool):
        lam = torch.full((n,), float(lam), dtype=torch.float64)
    lam, index = check_tensor(lam, "lam"), check_tensor(index, "index")
    if lam.dim() == 0:
        lam = lam.expand(n)
    if lam.shape != (n,) or index.shape != (n,):
        raise ValueError(f"lam and index must have shape ({n},), got {tuple(lam.shape)} and {tuple(index.shape)}")
    if index.is_floating_point() or index.dtype == torch.bool:
        raise TypeError(f"index must hold integer partner positions, got dtype {index.dtype}")
    if lam.is_complex() or lam.dtype == torch.bool:
        raise TypeError(f"lam must be a real tensor of label weights in [0, 1], got dtype {lam.dtype}")
    check_partners(index, lam)  # metrics return Python floats: reading lam and index back costs nothing extra
    pred = logits.argmax(dim=1)
    lam = lam.to(device=pred.device, dtype=torch.float64)
    hits = lam * (pred == labels) + (1 - lam) * (pred == labels[index.to(pred.device)])
    return float(hits.mean())


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per-bin confidence, accuracy and counts over equal-width confidence bins.

    Attributes:
        edges: ``(n_bins + 1,)`` bin edges from 0 to 1; bin b holds confidences in ``(lo, hi]``.
        confidence: ``(n_bins,)`` mean top-1 confidence per bin (0 for an empty bin).
        accuracy: ``(n_bins,)`` top-1 accuracy per bin (0 for an empty bin).
        count: ``(n_bins,)`` number of samples per bin; sums to N (also as ``counts``).
    """

    edges: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor
    count: torch.Tensor

    @property
    def counts(self) -> torch.Tensor:
        """``(n_bins,)`` samples per bin (the same tensor as ``count``)."""
        return self.count

    @property
    def ece(self) -> float:
        """sum over bins of (n_b / N) * |accuracy_b - confidence_b|."""
        weights = self.count.double() / self.count.sum()
        return float((weights * (self.accuracy - self.confidence).abs()).sum())


def reliability_diagram(
    logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15, *, from_probs: bool = False
) -> ReliabilityDiagram:
    """Bin predictions by top-1 confidence into ``n_bins`` bins ``(lo, hi]``.

    Args:
        logits: ``(N, C)`` finite logits, or probabilities with ``from_probs=True``.
        labels: ``(N,)`` class indices or ``(N, C)`` rows (argmax is the label).
        n_bins: number of equal-width confidence bins (15 as in Guo et al., ICML 2017).
        from_probs: ``logits`` already holds probabilities (checked: in [0, 1], rows sum to 1).

    Returns:
        A :class:`ReliabilityDiagram` with per-bin confidence, accuracy and counts.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.7, 0.3]])  # bins of width 0.2: 0.7 (miss), 0.9 (hit)
        >>> diagram = reliability_diagram(probs, torch.tensor([0, 1]), 5, from_probs=True)
        >>> diagram.counts.tolist(), round(diagram.ece, 4)  # (0.7 + 0.1) / 2
        ([0, 0, 0, 1, 1], 0.4)
    """
    scores, labels = _check_scores(logits, labels)
    check_positive_int(n_bins, "n_bins")
    if from_probs:
        _check_probs(scores)
    probs = scores.double() if from_probs else torch.softmax(scores.double(), dim=1)
    confidence, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    bins = torch.bucketize(confidence.cpu(), edges[1:-1], right=False)
    count = torch.bincount(bins, minlength=n_bins)
    safe = count.clamp(min=1).double()
    conf = torch.bincount(bins, weights=confidence.cpu(), minlength=n_bins) / safe
    acc = torch.bincount(bins, weights=correct.cpu(), minlength=n_bins) / safe
    return ReliabilityDiagram(edges, conf, acc, count)


def expected_calibration_error(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 15,
    *,
    from_probs: bool = False,
    return_counts: bool = False,
) -> float | tuple[float, torch.Tensor]:
    """Expected calibration error (L1, equal-width bins) of top-1 predictions (Guo et al., ICML 2017).

    ``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|``, in [0, 1].

    Args:
        logits: ``(N, C)`` finite logits, or probabilities with ``from_probs=True``.
        labels: ``(N,)`` class indices or ``(N, C)`` rows (argmax is the label).
        n_bins: number of equal-width confidence bins.
        from_probs: ``logits`` already holds probabilities (checked: in [0, 1], rows sum to 1).
        return_counts: also return the ``(n_bins,)`` samples per bin, as ``torch.unique`` does;
            a bin holding few samples makes its gap noisy.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
        >>> round(expected_calibration_error(probs, torch.tensor([0, 1]), 10, from_probs=True), 4)
        0.35
        >>> ece, counts = expected_calibration_error(probs, torch.tensor([0, 1]), 2, from_probs=True,
        ...                                          return_counts=True)
        >>> counts.tolist()
        [0, 2]
    """
    diagram = reliability_diagram(logits, labels, n_bins, from_probs=from_probs)
    return (diagram.ece, diagram.count) if return_counts else diagram.ece


def plot_reliability_diagram(diagram: ReliabilityDiagram, ax: Any = None, label: str | None = None) -> Any:
    """Draw the diagram on a matplotlib axis (created if None) and return the axis."""
    if not isinstance(diagram, ReliabilityDiagram):
        raise TypeError(
            f"diagram must be a ReliabilityDiagram from reliability_diagram(), got {type(diagram).__name__}"
        )
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plot_reliability_diagram needs matplotlib: pip install 'multimix[recipes]'") from error
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    centers = ((diagram.edges[:-1] + diagram.edges[1:]) / 2).numpy()
    width = float(diagram.edges[1] - diagram.edges[0])
    filled = (diagram.count > 0).numpy()
    ax.bar(
        centers[filled],
        diagram.accuracy.numpy()[filled],
        width=width * 0.9,
        alpha=0.6,
        label=f"{label or 'model'} (ECE {diagram.ece:.3f})",
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return ax
