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

import warnings
from collections.abc import Callable
from functools import lru_cache
from inspect import signature
from numbers import Real

import torch
import torch.nn.functional as F
from torch import nn

from multimix._checks import check_probability, check_tensor
from multimix.mixer import MixedBatch
from multimix.plan import MixPlan
from multimix.targets import LabelMix, label_weights

__all__ = [
    "BinaryCrossEntropy",
    "SoftTargetCrossEntropy",
    "binary_cross_entropy",
    "mixed_cross_entropy",
    "mixed_loss",
    "regmixup_loss",
    "soft_cross_entropy",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: object) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _check_logits_and_targets(
    logits: object, targets: object, reduction: str, validate: bool | None, *, max_target: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and dtypes (no sync); check values only on the CPU or with ``validate=True``."""
    logits = check_tensor(logits, "logits")
    targets = check_tensor(targets, "targets")
    _check_reduction(reduction)
    if logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor (B, C), got shape {tuple(logits.shape)} dtype {logits.dtype}")
    if targets.device != logits.device:
        raise ValueError(f"targets must be on the device of logits ({logits.device}), got {targets.device}")
    if targets.dim() == 1:
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise TypeError(
                f"class-index targets (B,) must be integers, got dtype {targets.dtype}; "
                "convert with .long(), or pass soft rows (B, C)"
            )
        if targets.shape[0] != logits.shape[0]:
            raise ValueError(f"targets has batch size {targets.shape[0]}, logits {logits.shape[0]}")
    elif targets.shape != logits.shape:
        raise ValueError(
            f"soft targets must have the shape of logits {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    if validate is None:  # traced, values are not read: a value check would break the graph
        validate = targets.device.type == "cpu" and not torch.compiler.is_compiling()
    if validate and targets.numel() > 0:
        _check_target_values(targets, logits.shape[1], max_target)
    return logits, targets


def _check_target_values(targets: torch.Tensor, num_classes: int, max_target: float | None) -> None:
    """Value checks: each reads the tensor back, so callers run them on the CPU or on request."""
    if targets.dim() == 1:
        low, high = int(targets.min()), int(targets.max())
        if low == -100:
            raise ValueError(
                "targets contain -100 (torch's ignore_index); multimix losses have no ignore_index: "
                "drop those samples first, e.g. keep = targets != -100; loss(logits[keep], targets[keep])"
            )
        if low < 0 or high >= num_classes:
            raise ValueError(f"class-index targets must lie in [0, {num_classes}), got values in [{low}, {high}]")
        return
    rows = targets.float()
    if not bool(torch.isfinite(rows).all()):
        raise ValueError("soft targets contain NaN or inf; build them with multimix.soft_targets or mix_targets")
    low, high = float(rows.min()), float(rows.max())
    if low < 0 or (max_target is not None and high > max_target):
        bound = "[0, 1]" if max_target is not None else ">= 0"
        raise ValueError(f"soft targets must be {bound}, got values in [{low}, {high}]")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor | MixedBatch, reduction: str = "mean", *, validate: bool | None = None
) -> torch.Tensor:
    """Cross-entropy ``-sum_c t_c log softmax(z)_c`` against soft rows (or class indices).

    Computed in float32 at least, so bf16/fp16 logits do not lose the loss. Given the
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
        if mix is not None and mix.kind == "index" and mix.label_mode != "union":
            _check_logits_and_targets(logits, mix.labels, reduction, validate)
            return mixed_cross_entropy(logits, mix.labels, mix.index, mix.weight, label_smoothing=mix.label_smoothing,
                                       label_mode=mix.label_mode, reduction=reduction)  # fmt: skip
        targets = targets.targets
    logits, targets = _check_logits_and_targets(logits, targets, reduction, validate)
    log_probs = F.log_softmax(logits.float(), dim=-1)
    if targets.dim() == 1:
        return F.nll_loss(log_probs, targets.long(), reduction=reduction)
    return _reduce(-(targets.to(log_probs.dtype) * log_probs).sum(dim=-1), reduction)


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
    log_probs = F.log_softmax(logits.float(), dim=-1)
    own, other = label_weights(lam.to(log_probs.dtype), label_mode)
    labels = labels.long()
    pair = torch.stack([labels, labels.index_select(0, index)], dim=1)  # (B, 2): one gather for both
    picked = log_probs.gather(1, pair)
    loss = -(own * picked[:, 0] + other * picked[:, 1])
    if label_smoothing > 0:
        loss = loss.mul(1.0 - label_smoothing).sub_(log_probs.mean(dim=-1), alpha=label_smoothing)
    return _reduce(loss, _check_reduction(reduction))


def mixed_token_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    index: torch.Tensor,
    lam: torch.Tensor,
    *,
    label_mode: str = "lerp",
    ignore_index: int = -100,
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

    Example:
        >>> logits = torch.zeros(2, 3, 4)
        >>> labels = torch.tensor([[0, 1, -100], [2, -100, -100]])
        >>> loss = mixed_token_cross_entropy(logits, labels, torch.tensor([1, 0]), torch.tensor([0.5, 0.5]))
        >>> bool(torch.isclose(loss, torch.log(torch.tensor(4.0))))  # uniform logits: log C wherever a label is
        True
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    own, other = label_weights(lam.to(log_probs.dtype), label_mode)
    labels = labels.long()
    loss = log_probs.new_zeros(())
    total = log_probs.new_zeros(())
    for side, weight in ((labels, own), (labels.index_select(0, index), other)):
        valid = side != ignore_index
        picked = log_probs.gather(-1, torch.where(valid, side, 0).unsqueeze(-1)).squeeze(-1)
        weights = weight.view(-1, 1) * valid.to(log_probs.dtype)
        loss = loss - (weights * picked).sum()
        total = total + weights.sum()
    return loss / total.clamp(min=torch.finfo(total.dtype).tiny)


class SoftTargetCrossEntropy(nn.Module):
    """Module form of :func:`soft_cross_entropy` (timm's name)."""

    def __init__(self, reduction: str = "mean", *, validate: bool | None = None) -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)
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
    logits, targets = _check_logits_and_targets(logits, targets, reduction, validate, max_target=1.0)
    if targets.dim() == 1:
        targets = F.one_hot(targets.long(), logits.shape[1])
    targets = targets.to(torch.float32)
    if target_threshold is not None:
        targets = targets.gt(check_probability(target_threshold, "target_threshold")).float()
    return F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=pos_weight, reduction=reduction)


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
        self.reduction = _check_reduction(reduction)
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


@lru_cache(maxsize=64)
def _takes_reduction(criterion: Callable) -> bool:
    try:
        return "reduction" in signature(criterion).parameters
    except (TypeError, ValueError):  # callables without a signature
        return False


def mixed_loss(
    criterion: Callable[..., torch.Tensor],
    logits: torch.Tensor,
    batch: MixedBatch | MixPlan,
    labels: torch.Tensor | None = None,
    *,
    reduction: str | None = None,
) -> torch.Tensor:
    """``lam * criterion(logits, y) + (1 - lam) * criterion(logits, y[index])`` per sample, for any criterion.

    For losses that take class indices (focal loss, ``nn.CrossEntropyLoss(label_smoothing=...)``);
    mixup's loss as Zhang et al. (2018) write it. From a :class:`~multimix.MixedBatch`,
    ``y`` is the labels it was mixed from and ``lam`` the label weight the adapter applied
    (CutMix's kept area), so with cross-entropy this is :func:`soft_cross_entropy` of
    ``batch.targets``; from a :class:`~multimix.plan.MixPlan` and ``labels``, the plan's lam.

    Args:
        criterion: ``criterion(logits, labels)``; a module with a ``reduction`` attribute
            runs with ``"none"`` (then restored), a function with a ``reduction``
            parameter gets ``"none"``, any other must return a ``(B,)`` loss.
        logits: ``(B, C)`` logits of the mixed batch.
        batch: the :class:`~multimix.MixedBatch` a Mixer returned, or a plan, on the
            logits' device (``batch.to(device)``, ``plan.to(device)[0]``). The old order
            ``(criterion, logits, labels, batch)``, given positionally, still runs (with a
            FutureWarning).
        labels: ``(B,)`` class indices (or ``(B, C)`` rows) before mixing; default
            ``batch.labels``, the ones the Mixer was given. Required with a plan.
        reduction: ``"mean"`` (over samples), ``"sum"`` or ``"none"``; None takes the
            criterion's own ``reduction`` if it has one, else ``"mean"``.

    Example:
        >>> import multimix
        >>> y = torch.tensor([0, 1, 2, 3])
        >>> batch = multimix.Mixer(multimix.image.Mixup(1.0), num_classes=4, seed=0)(torch.rand(4, 3, 8, 8), y)
        >>> logits = torch.randn(4, 4)
        >>> loss = mixed_loss(nn.CrossEntropyLoss(), logits, batch)
        >>> bool(torch.allclose(loss, multimix.soft_cross_entropy(logits, batch.targets)))
        True
    """
    if isinstance(batch, torch.Tensor) and isinstance(labels, (MixedBatch, MixPlan)):
        warnings.warn(
            "mixed_loss(criterion, logits, labels, batch) is the old argument order; call "
            "mixed_loss(criterion, logits, batch) (the batch holds its labels) or mixed_loss(criterion, logits, "
            "batch, labels)",
            FutureWarning,
            stacklevel=2,
        )
        batch, labels = labels, batch
    if not callable(criterion):
        raise TypeError(f"criterion must be callable as criterion(logits, labels), got {type(criterion).__name__}")
    mix = None
    if isinstance(batch, MixedBatch):
        lam, index, any_mixed, mix = batch.lam, batch.index, batch.plan.any_mixed, batch.mix
        if mix is not None and mix.kind in ("map", "map_rows"):
            return _map_loss(criterion, logits, mix if labels is None else mix._replace(labels=labels), reduction)
        if labels is None:
            labels = batch.labels
        if labels is None:
            raise ValueError("this MixedBatch holds no labels (it was not made by a Mixer call): pass labels=")
    elif isinstance(batch, MixPlan):
        lam, index, any_mixed = batch.lam, batch.index, batch.any_mixed
        if labels is None:
            raise ValueError("mixed_loss with a plan needs labels: mixed_loss(criterion, logits, plan, labels)")
    else:
        raise TypeError(
            f"batch must be the MixedBatch a multimix.Mixer returned (or a MixPlan with labels), got "
            f"{type(batch).__name__}"
        )
    logits, labels = check_tensor(logits, "logits"), check_tensor(labels, "labels")
    own = getattr(criterion, "reduction", None)
    reduction = _check_reduction(reduction if reduction is not None else own if own in _REDUCTIONS else "mean")
    size = lam.shape[0]
    if logits.dim() < 1 or logits.shape[0] != size or labels.dim() < 1 or labels.shape[0] != size:
        raise ValueError(
            f"logits and labels must hold the batch's {size} samples, got shapes {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}; pass the labels given to the Mixer, not batch.targets"
        )
    for name, value in (("labels", labels), ("batch.lam", lam), ("batch.index", index)):
        if value.device != logits.device:
            raise ValueError(
                f"{name} is on {value.device}, logits on {logits.device}; "
                "move them (batch.to(device), plan.to(device)[0])"
            )
    kwargs = {"reduction": "none"} if own is None and _takes_reduction(criterion) else {}
    if own is not None:
        criterion.reduction = "none"
    try:
        own_loss = criterion(logits, labels, **kwargs)
        # an unmixed batch (p, mixing off) is known on the host: no second call
        partner = criterion(logits, labels.index_select(0, index), **kwargs) if any_mixed else own_loss
    finally:
        if own is not None:
            criterion.reduction = own
    if own_loss.shape != (size,):
        raise ValueError(
            f"criterion must return a per-sample loss of shape ({size},), got {tuple(own_loss.shape)}; give it "
            "reduction='none' (e.g. functools.partial(F.cross_entropy, reduction='none'))"
        )
    lam = lam.to(own_loss.dtype)
    if mix is not None and mix.label_mode != "lerp":
        own_weight, other_weight = label_weights(lam, mix.label_mode)
        return _reduce(own_weight * own_loss + other_weight * partner, reduction)
    return _reduce(lam * own_loss + (1 - lam) * partner, reduction)


def _per_position(criterion: Callable[..., torch.Tensor], logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``criterion(logits, labels)`` with ``reduction="none"`` (a module's attribute restored after)."""
    own = getattr(criterion, "reduction", None)
    kwargs = {"reduction": "none"} if own is None and _takes_reduction(criterion) else {}
    if own is not None:
        criterion.reduction = "none"
    try:
        return criterion(logits, labels, **kwargs)
    finally:
        if own is not None:
            criterion.reduction = own


def _map_loss(
    criterion: Callable[..., torch.Tensor], logits: torch.Tensor, mix: LabelMix, reduction: str | None
) -> torch.Tensor:
    """:func:`mixed_loss` for label maps: each position's loss weighted by the weights of its two labels.

    ``"mean"`` divides by the weight of the valid labels, ``sum(w_a * [y_a valid] + w_b *
    [y_b valid])`` (the criterion's ``ignore_index``, else the Mixer's): torch's mean over
    the pixels that are not ignored, when a region takes every position whole.
    """
    own = getattr(criterion, "reduction", None)
    reduction = _check_reduction(reduction if reduction is not None else own if own in _REDUCTIONS else "mean")
    logits = check_tensor(logits, "logits")
    if logits.device != mix.labels.device:
        raise ValueError(f"the batch's labels are on {mix.labels.device}, logits on {logits.device}; batch.to(device)")
    ignore = getattr(criterion, "ignore_index", mix.ignore_index)
    positions = mix.labels.shape if mix.kind == "map" else mix.labels.shape[:-1]
    own_weight, other_weight = mix.position_weights()
    if mix.kind == "map" and own_weight.dtype == torch.bool:  # whole positions: one call on the map they show
        shown = torch.where(own_weight, mix.labels, mix.partner)
        loss = _per_position(criterion, logits, shown)
        weight = (shown != ignore).to(loss.dtype)
    else:
        own_loss = _per_position(criterion, logits, mix.labels)
        own_weight, other_weight = own_weight.to(own_loss.dtype), other_weight.to(own_loss.dtype)
        loss = own_weight * own_loss + other_weight * _per_position(criterion, logits, mix.partner)
        weight = None
        if mix.kind == "map":
            weight = own_weight * (mix.labels != ignore) + other_weight * (mix.partner != ignore)
    if tuple(loss.shape[: len(positions)]) != tuple(positions):
        raise ValueError(
            f"criterion must return a loss per position of shape {tuple(positions)}, got {tuple(loss.shape)}; give it "
            "reduction='none' (e.g. nn.CrossEntropyLoss(ignore_index=255), whose reduction mixed_loss sets)"
        )
    if reduction == "none":
        return loss
    if reduction == "sum" or weight is None:
        return _reduce(loss, reduction)
    return loss.sum() / weight.sum()
