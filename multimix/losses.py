"""Losses for soft targets: cross-entropy for single-label, BCE for multi-label.

multimix computes the loss itself rather than handing soft labels to a model head
(a Hugging Face head silently switches to multi-label BCE when labels are float).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from multimix._checks import check_probability, check_tensor

__all__ = ["BinaryCrossEntropy", "SoftTargetCrossEntropy", "binary_cross_entropy", "soft_cross_entropy"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_logits_and_targets(logits: object, targets: object, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    logits = check_tensor(logits, "logits")
    targets = check_tensor(targets, "targets")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor (B, C), got shape {tuple(logits.shape)} dtype {logits.dtype}")
    if targets.dim() == 1:
        if targets.is_floating_point():
            raise TypeError(f"class-index targets (B,) must be integers, got dtype {targets.dtype}")
        if targets.shape[0] != logits.shape[0]:
            raise ValueError(f"targets has batch size {targets.shape[0]}, logits {logits.shape[0]}")
        return logits, targets
    if targets.shape != logits.shape:
        raise ValueError(
            f"soft targets must have the shape of logits {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    return logits, targets


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy ``-sum_c t_c log softmax(z)_c`` against soft rows (or class indices).

    Computed in float32 at least, so bf16/fp16 logits do not lose the loss.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0]])
        >>> round(float(soft_cross_entropy(logits, torch.tensor([[1.0, 0.0]]))), 4)
        0.1269
    """
    logits, targets = _check_logits_and_targets(logits, targets, reduction)
    log_probs = F.log_softmax(logits.float(), dim=-1)
    if targets.dim() == 1:
        return F.nll_loss(log_probs, targets.long(), reduction=reduction)
    return _reduce(-(targets.to(log_probs.dtype) * log_probs).sum(dim=-1), reduction)


class SoftTargetCrossEntropy(nn.Module):
    """Module form of :func:`soft_cross_entropy` (timm's name)."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(logits, targets, self.reduction)


def binary_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    target_threshold: float | None = None,
    pos_weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """BCE with logits against soft or multi-hot rows ``(B, C)``, for ``multi_label=True`` mixers.

    Args:
        target_threshold: if set, targets become ``targets > threshold`` (timm's
            ``BinaryCrossEntropy(target_threshold=...)``, e.g. 0.2 after mixup).
        pos_weight: per-class weight of positives, as in ``F.binary_cross_entropy_with_logits``.

    Class-index targets ``(B,)`` are one-hot encoded first. With ``reduction="mean"``
    the mean runs over batch and classes, as torch does.
    """
    logits, targets = _check_logits_and_targets(logits, targets, reduction)
    if targets.dim() == 1:
        targets = F.one_hot(targets.long(), logits.shape[1])
    targets = targets.to(torch.float32)
    if target_threshold is not None:
        targets = targets.gt(check_probability(target_threshold, "target_threshold")).float()
    return F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=pos_weight, reduction=reduction)


class BinaryCrossEntropy(nn.Module):
    """Module form of :func:`binary_cross_entropy`."""

    def __init__(
        self, *, target_threshold: float | None = None, pos_weight: torch.Tensor | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        if target_threshold is not None:
            check_probability(target_threshold, "target_threshold")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.target_threshold = target_threshold
        self.reduction = reduction
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy(
            logits,
            targets,
            target_threshold=self.target_threshold,
            pos_weight=self.pos_weight,
            reduction=self.reduction,
        )
