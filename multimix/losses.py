"""Losses for soft targets: cross-entropy, BCE for multi-label, RegMixup; ``mixed_loss`` for any criterion.

multimix computes the loss itself rather than handing soft labels to a model head
(a Hugging Face head silently switches to multi-label BCE when labels are float).

The losses sit on the training hot path, so they never read a device tensor back
to the host: shape, dtype and device checks always run (they need no values);
value checks (label range, ``-100``, finite rows) run only where the tensors are
on the CPU. ``validate=True`` forces the value checks anywhere (one sync each, for
debugging), ``validate=False`` skips them even on the CPU.
"""

from __future__ import annotations

from numbers import Real

import torch
import torch.nn.functional as F
from torch import nn

from multimix._checks import check_probability
from multimix.loss_checks import (
    at_least_float32,
    check_logits_and_targets,
    check_num_classes,
    check_reduction,
    reduce_loss,
)
from multimix.mixer import MixedBatch
from multimix.targets import label_weights

__all__ = [
    "BinaryCrossEntropy",
    "SoftTargetCrossEntropy",
    "binary_cross_entropy",
    "mixed_cross_entropy",
    "regmixup_loss",
    "soft_cross_entropy",
]


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor | MixedBatch, reduction: str = "mean", *, validate: bool | None = None
) -> torch.Tensor:
    """Cross-entropy ``-sum_c t_c log softmax(z)_c`` against soft rows (or class indices).

    Computed in float32 at least (float64 logits stay float64), so bf16/fp16 logits do not lose the loss. Given the
    :class:`~multimix.MixedBatch` itself, a batch mixed from class indices is scored by
    :func:`mixed_cross_entropy` (two index cross-entropies, no ``(B, C)`` rows built: the
    same value); other batches by their ``targets``.

    Args:
        logits: ``(B, C)`` float logits.
        targets: ``(B, C)`` soft rows, or ``(B,)`` integer class indices (no ``-100``
            ignore_index: drop those samples first), or the MixedBatch a Mixer returned.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (a ``(B,)`` loss).
        validate: value checks (label range, finite rows): ``None`` runs them on CPU
            tensors only, so accelerator tensors never sync; ``True`` everywhere.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0]])
        >>> round(float(soft_cross_entropy(logits, torch.tensor([[1.0, 0.0]]))), 4)
        0.1269
    """
    if isinstance(targets, MixedBatch):
        mix = targets.mix
        if mix is not None:
            check_num_classes(logits, mix.num_classes)
        if mix is not None and mix.kind == "index" and mix.label_mode != "union":
            check_logits_and_targets(logits, mix.labels, reduction, validate)
            return mixed_cross_entropy(logits, mix.labels, mix.index, mix.weight, label_smoothing=mix.label_smoothing,
                                       label_mode=mix.label_mode, reduction=reduction)  # fmt: skip
        targets = targets.targets
    logits, targets = check_logits_and_targets(logits, targets, reduction, validate)
    log_probs = F.log_softmax(at_least_float32(logits), dim=-1)
    if targets.dim() == 1:
        return F.nll_loss(log_probs, targets.long(), reduction=reduction)
    return reduce_loss(-(targets.to(log_probs.dtype) * log_probs).sum(dim=-1), reduction)


def mixed_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    index: torch.Tensor,
    lam: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    label_mode: str = "lerp",
    reduction: str = "mean",
) -> torch.Tensor:
    """Soft cross-entropy of mixed class indices without their ``(B, C)`` rows: two index cross-entropies.

    With ``w_a, w_b = label_weights(lam, label_mode)`` and smoothing ``s``, the rows
    ``(1 - s) * (w_a * onehot(y) + w_b * onehot(y[index])) + s / C`` give the loss
    ``(1 - s) * (w_a * CE(z, y) + w_b * CE(z, y[index])) + s * mean_c(-log softmax(z)_c)``:
    two gathers of the log-probabilities instead of a product with rows as wide as the
    logits (the rows cost most at many classes; ``benchmarks/target_loss.py``). Tensor ops
    only; inputs are not checked (the Mixer checked them). ``"union"`` (a maximum of rows)
    has no such form: build its rows.

    Args:
        logits: ``(B, C)`` logits.
        labels: ``(B,)`` class indices; ``index`` ``(B,)`` each sample's partner.
        lam: ``(B,)`` the weight of each sample's own labels (``MixedBatch.lam``).
        label_smoothing: as the Mixer's. label_mode: ``"lerp"``, ``"original"`` or ``"dominant"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> logits, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
        >>> rows = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
        >>> lam = torch.tensor([0.75, 0.75])
        >>> bool(torch.allclose(mixed_cross_entropy(logits, y, torch.tensor([1, 0]), lam),
        ...                     soft_cross_entropy(logits, rows)))
        True
    """
    if label_mode == "union":
        raise ValueError(
            "label_mode='union' combines rows by their maximum; score its rows: soft_cross_entropy(logits, rows)"
        )
    log_probs = F.log_softmax(at_least_float32(logits), dim=-1)
    own, other = label_weights(lam.to(log_probs.dtype), label_mode)
    labels = labels.long()
    pair = torch.stack([labels, labels.index_select(0, index)], dim=1)  # (B, 2): one gather for both
    picked = log_probs.gather(1, pair)
    loss = -(own * picked[:, 0] + other * picked[:, 1])
    if label_smoothing > 0:
        loss = loss.mul(1.0 - label_smoothing).sub_(log_probs.mean(dim=-1), alpha=label_smoothing)
    return reduce_loss(loss, check_reduction(reduction))


def mixed_token_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    index: torch.Tensor,
    lam: torch.Tensor,
    *,
    label_mode: str = "lerp",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The loss of mixed token labels: each side weighted where its label is valid, over all tokens.

    ``sum(w_a [y_a valid] CE(z, y_a) + w_b [y_b valid] CE(z, y_b)) / sum(w_a [y_a valid] + w_b [y_b valid])``
    with ``y_b = labels[index]`` the partner's label at the same position and ``w_a, w_b``
    the label weights of each sample's lam (:func:`~multimix.targets.label_weights`). A
    position ignored on both sides adds nothing. Tensor ops only.

    Args:
        logits: ``(B, T, C)`` per-token logits.
        labels: ``(B, T)`` class indices, ``ignore_index`` where a token has no label.
        index: ``(B,)`` each sample's partner. lam: ``(B,)`` each sample's own weight.
        label_smoothing: each label's cross-entropy smoothed as ``F.cross_entropy(...,
            label_smoothing=)`` smooths it (the Mixer's ``label_smoothing``): unmixed, this is
            torch's smoothed token loss.

    Example:
        >>> logits = torch.zeros(2, 3, 4)
        >>> labels = torch.tensor([[0, 1, -100], [2, -100, -100]])
        >>> loss = mixed_token_cross_entropy(logits, labels, torch.tensor([1, 0]), torch.tensor([0.5, 0.5]))
        >>> bool(torch.isclose(loss, torch.log(torch.tensor(4.0))))  # uniform logits: log C wherever a label is
        True
    """
    smoothing = check_probability(label_smoothing, "label_smoothing")
    log_probs = F.log_softmax(at_least_float32(logits), dim=-1)
    own, other = label_weights(lam.to(log_probs.dtype), label_mode)
    labels = labels.long()
    spread = log_probs.mean(-1) if smoothing else None  # the uniform part of a smoothed label, per token
    loss = log_probs.new_zeros(())
    total = log_probs.new_zeros(())
    for side, weight in ((labels, own), (labels.index_select(0, index), other)):
        valid = side != ignore_index
        picked = log_probs.gather(-1, torch.where(valid, side, 0).unsqueeze(-1)).squeeze(-1)
        if spread is not None:
            picked = torch.lerp(picked, spread, smoothing)
        weights = weight.view(-1, 1) * valid.to(log_probs.dtype)
        loss = loss - (weights * picked).sum()
        total = total + weights.sum()
    return loss / total.clamp(min=torch.finfo(total.dtype).tiny)


class SoftTargetCrossEntropy(nn.Module):
    """Module form of :func:`soft_cross_entropy` (timm's name)."""

    def __init__(self, reduction: str = "mean", *, validate: bool | None = None) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.validate = validate

    def forward(self, logits: torch.Tensor, targets: torch.Tensor | MixedBatch) -> torch.Tensor:
        return soft_cross_entropy(logits, targets, self.reduction, validate=self.validate)


def regmixup_loss(
    clean_logits: torch.Tensor,
    labels: torch.Tensor,
    mixed_logits: torch.Tensor,
    mixed_targets: torch.Tensor,
    eta: float = 1.0,
    *,
    reduction: str = "mean",
    validate: bool | None = None,
) -> torch.Tensor:
    """RegMixup: cross-entropy on the clean batch plus ``eta`` times the mixup loss.

    Pinto et al., "Using Mixup as a Regularizer Can Surprisingly Improve Accuracy and
    Out-of-Distribution Robustness", NeurIPS 2022: train on the clean batch and on its
    mixup (large alpha, e.g. 10-20) together, which keeps mixup's regularisation
    without its under-confidence. Loss = CE(clean) + eta * soft CE(mixed).

    Args:
        clean_logits: ``(B, C)`` logits of the unmixed batch.
        labels: ``(B,)`` class indices or ``(B, C)`` rows of the unmixed batch.
        mixed_logits: ``(B', C)`` logits of the mixed batch (``B' = B`` for ``"none"``).
        mixed_targets: ``(B', C)`` soft rows of the mixed batch (``MixedBatch.targets``).
        eta: weight of the mixup term, a finite real >= 0 (the paper uses 1).
        reduction: ``"mean"`` (each term averaged over its batch), ``"sum"`` or ``"none"``.
        validate: as in :func:`soft_cross_entropy`.

    Example:
        >>> clean = torch.tensor([[2.0, 0.0]])
        >>> mixed = torch.tensor([[1.0, 0.0]])
        >>> loss = regmixup_loss(clean, torch.tensor([0]), mixed, torch.tensor([[0.5, 0.5]]))
        >>> round(float(loss), 4)  # 0.1269 + 0.8133
        0.9402
    """
    if isinstance(eta, bool) or not isinstance(eta, Real):
        raise TypeError(f"eta must be a real number >= 0 (weight of the mixup term), got {type(eta).__name__} {eta!r}")
    if not 0 <= float(eta) < float("inf"):
        raise ValueError(f"eta must be finite and >= 0 (weight of the mixup term), got {eta!r}; the paper uses 1.0")
    clean = soft_cross_entropy(clean_logits, labels, reduction, validate=validate)
    mixed = soft_cross_entropy(mixed_logits, mixed_targets, reduction, validate=validate)
    if clean.shape != mixed.shape:
        raise ValueError(
            f"reduction='none' needs clean and mixed batches of one size, got {clean.shape[0]} and "
            f"{mixed.shape[0]}; use reduction='mean'"
        )
    return clean + float(eta) * mixed


def binary_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    target_threshold: float | None = None,
    pos_weight: torch.Tensor | None = None,
    reduction: str = "mean",
    validate: bool | None = None,
) -> torch.Tensor:
    """BCE with logits against soft or multi-hot rows ``(B, C)``, for ``multi_label=True`` mixers.

    Args:
        logits: ``(B, C)`` float logits.
        targets: ``(B, C)`` rows in [0, 1], or ``(B,)`` class indices (one-hot encoded first).
        target_threshold: if set, targets become ``targets > threshold`` (timm's
            ``BinaryCrossEntropy(target_threshold=...)``, e.g. 0.2 after mixup).
        pos_weight: per-class weight of positives, as in ``F.binary_cross_entropy_with_logits``.
        reduction: ``"mean"`` runs over batch and classes, as torch does.
        validate: as in :func:`soft_cross_entropy` (rows must also be <= 1).

    Example:
        >>> round(float(binary_cross_entropy(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))), 4)
        0.6931
    """
    logits, targets = check_logits_and_targets(logits, targets, reduction, validate, max_target=1.0)
    if targets.dim() == 1:
        targets = F.one_hot(targets.long(), logits.shape[1])
    logits = at_least_float32(logits)
    targets = targets.to(logits.dtype)
    if target_threshold is not None:
        targets = targets.gt(check_probability(target_threshold, "target_threshold")).to(logits.dtype)
    if pos_weight is not None:
        pos_weight = pos_weight.to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction=reduction)


class BinaryCrossEntropy(nn.Module):
    """Module form of :func:`binary_cross_entropy`."""

    def __init__(
        self,
        *,
        target_threshold: float | None = None,
        pos_weight: torch.Tensor | None = None,
        reduction: str = "mean",
        validate: bool | None = None,
    ) -> None:
        super().__init__()
        if target_threshold is not None:
            check_probability(target_threshold, "target_threshold")
        self.target_threshold = target_threshold
        self.reduction = check_reduction(reduction)
        self.validate = validate
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy(
            logits,
            targets,
            target_threshold=self.target_threshold,
            pos_weight=self.pos_weight,
            reduction=self.reduction,
            validate=self.validate,
        )
