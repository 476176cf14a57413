"""``mixed_loss``: mixup's loss for any criterion that takes class indices (or label maps).

``lam * criterion(logits, y) + (1 - lam) * criterion(logits, y[index])`` per sample, as
Zhang et al. (2018) write it, for focal losses, ``nn.CrossEntropyLoss(label_smoothing=...)``
or a segmentation criterion with ``ignore_index``; the soft-target losses are in
:mod:`multimix.losses`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache
from inspect import signature

import torch
from torch import nn

from multimix._checks import check_tensor
from multimix.loss_checks import REDUCTIONS, check_num_classes, check_reduction, reduce_loss
from multimix.mixer import MixedBatch
from multimix.plan import MixPlan
from multimix.targets import LabelMix, label_weights

__all__ = ["mixed_loss"]


def _has_reduction(criterion: Callable) -> bool:
    try:
        return "reduction" in signature(criterion).parameters
    except (TypeError, ValueError):  # callables without a signature
        return False


_cached_has_reduction = lru_cache(maxsize=64)(_has_reduction)


@torch.compiler.assume_constant_result  # traced: read on the host once, not traced through inspect
def _takes_reduction(criterion: Callable) -> bool:
    """Whether ``criterion`` takes ``reduction=``: its signature read once for the usual (hashable) functions and
    modules, at every call for an unhashable one (a dataclass with ``eq=True``)."""
    try:
        hash(criterion)
    except TypeError:
        return _has_reduction(criterion)
    return _cached_has_reduction(criterion)


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
    (CutMix's kept area), so with cross-entropy (``label_mode="lerp"``) this is
    :func:`soft_cross_entropy` of ``batch.targets``; from a :class:`~multimix.plan.MixPlan`
    and ``labels``, the plan's lam. Other label modes weigh the two losses by their own
    weights (:func:`~multimix.targets.label_weights`).

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
            criterion's own ``reduction`` if it has one, else ``"mean"``. For ``nn.CrossEntropyLoss``
            and ``nn.NLLLoss`` the mean divides by the labels' total weight, ``sum(own * w[y] + other
            * w[y[index]])`` with ``own``, ``other`` the label weights (``lam`` and ``1 - lam`` for
            ``"lerp"``; 1 and 1 for a mixed sample under ``"union"``), ``w`` the class weights
            (``weight=``, else 1) and 0 for a label at the criterion's ``ignore_index``, as torch's
            does: an unmixed batch gives the criterion's own loss.

    Label smoothing: a batch mixed with the Mixer's ``label_smoothing`` is scored only by
    ``nn.CrossEntropyLoss`` with the same ``label_smoothing`` (then this equals
    ``soft_cross_entropy(logits, batch)``). Any other criterion gets the labels, not the smoothed
    rows, so it raises a ValueError instead of dropping the smoothing: smooth in the criterion
    and build the Mixer without it, or score the batch with :func:`soft_cross_entropy`.

    Raises:
        ValueError: the logits' classes are not the batch's ``num_classes`` (torch's
            cross-entropy and NLL criteria; other criteria own their logits' shape), the Mixer's
            smoothing cannot be kept (above), label maps come with a plan, or shapes disagree.

    Example:
        >>> import multimix
        >>> y = torch.tensor([0, 1, 2, 3])
        >>> batch = multimix.Mixer(multimix.image.Mixup(1.0), num_classes=4, seed=0)(torch.rand(4, 3, 8, 8), y)
        >>> logits = torch.randn(4, 4)
        >>> loss = mixed_loss(torch.nn.CrossEntropyLoss(), logits, batch)
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
        lam, index, any_mixed, mix = batch.lam, batch.index, not batch.plan.nothing_to_mix, batch.mix
        if mix is not None:
            _check_smoothing(criterion, mix.label_smoothing)
        if mix is not None and mix.kind in ("map", "map_rows"):
            return _map_loss(criterion, logits, mix if labels is None else mix._replace(labels=labels), reduction)
        if labels is None:
            labels = batch.labels
        if labels is None:
            raise ValueError("this MixedBatch holds no labels (it was not made by a Mixer call): pass labels=")
    elif isinstance(batch, MixPlan):
        lam, index, any_mixed = batch.lam, batch.index, not batch.nothing_to_mix
        if labels is None:
            raise ValueError("mixed_loss with a plan needs labels: mixed_loss(criterion, logits, plan, labels)")
    else:
        raise TypeError(
            f"batch must be the MixedBatch a multimix.Mixer returned (or a MixPlan with labels), got "
            f"{type(batch).__name__}"
        )
    logits, labels = check_tensor(logits, "logits"), check_tensor(labels, "labels")
    own = getattr(criterion, "reduction", None)
    reduction = check_reduction(reduction if reduction is not None else own if own in REDUCTIONS else "mean")
    size = lam.shape[0]
    if logits.dim() < 1 or logits.shape[0] != size or labels.dim() < 1 or labels.shape[0] != size:
        raise ValueError(
            f"logits and labels must hold the batch's {size} samples, got shapes {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}; pass the labels given to the Mixer, not batch.targets"
        )
    if mix is not None and isinstance(getattr(criterion, "_orig_mod", criterion), (nn.CrossEntropyLoss, nn.NLLLoss)):
        check_num_classes(logits, mix.num_classes)  # other criteria own their logits' shape (one binary logit)
    for name, value in (("labels", labels), ("batch.lam", lam), ("batch.index", index)):
        if value.device != logits.device:
            raise ValueError(
                f"{name} is on {value.device}, logits on {logits.device}; "
                "move them (batch.to(device), plan.to(device)[0])"
            )
    own_loss = _per_position(criterion, logits, labels)
    if own_loss.shape != (size,):
        if labels.is_floating_point() and labels.dim() == 2 and own_loss.shape == labels.shape:  # multi-hot rows
            raise ValueError(
                f"criterion returned a loss per class, {tuple(own_loss.shape)}, for rows {tuple(labels.shape)}; "
                "reduce it per sample (e.g. lambda z, t: F.binary_cross_entropy_with_logits(z, t, "
                "reduction='none').mean(1)) or score the mixed rows: multimix.binary_cross_entropy(logits, "
                "batch.targets)"
            )
        mapped = isinstance(batch, MixPlan) and labels.dim() > 1 and not labels.is_floating_point()
        if mapped and own_loss.dim() > 1:  # a loss per position: label maps, which a lam per sample misweighs
            raise ValueError(
                f"labels of shape {tuple(labels.shape)} are label maps (the criterion returned a loss per position, "
                f"{tuple(own_loss.shape)}); a MixPlan holds one lam per sample, not each position's weight: pass the "
                "MixedBatch the Mixer returned instead of a plan, mixed_loss(criterion, logits, out)"
            )
        raise ValueError(
            f"criterion must return a per-sample loss of shape ({size},), got {tuple(own_loss.shape)}; give it "
            "reduction='none' (e.g. functools.partial(F.cross_entropy, reduction='none'))"
        )
    # an unmixed batch (p, mixing off) is known on the host: no second call
    partner = _per_position(criterion, logits, labels.index_select(0, index)) if any_mixed else own_loss
    lam = lam.to(own_loss.dtype)
    if mix is not None and mix.label_mode != "lerp":
        own_weight, other_weight = label_weights(lam, mix.label_mode)
    else:
        own_weight, other_weight = lam, 1 - lam
    loss = own_weight * own_loss + other_weight * partner
    own_class = _class_weight(criterion, labels, loss.dtype)
    if reduction != "mean" or own_class is None:
        return reduce_loss(loss, reduction)
    # torch's mean divides by the weight of the valid labels: so does the mix, by each side's share
    partner_class = _class_weight(criterion, labels.index_select(0, index), loss.dtype) if any_mixed else own_class
    return loss.sum() / (own_weight * own_class + other_weight * partner_class).sum()


def _class_weight(
    criterion: Callable[..., torch.Tensor], labels: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor | None:
    """Each label's weight in the ``"mean"`` of torch's cross-entropy and NLL losses: its class weight
    (``criterion.weight[y]``, 1 without ``weight=``), 0 where ``y`` is the criterion's ``ignore_index``. None for other
    criteria (``MultiMarginLoss`` and most focal losses average over samples whatever their ``weight``) or
    probability targets (torch averages those over samples)."""
    module = getattr(criterion, "_orig_mod", criterion)  # torch.compile's wrapper of the loss module
    if not isinstance(module, (nn.CrossEntropyLoss, nn.NLLLoss)) or labels.is_floating_point():
        return None
    valid = labels != module.ignore_index
    if module.weight is None:
        return valid.to(dtype)
    return module.weight.to(labels.device, dtype)[torch.where(valid, labels, 0).long()] * valid


def _check_smoothing(criterion: Callable[..., torch.Tensor], smoothing: float) -> None:
    """Refuse a batch mixed with label smoothing unless the criterion smooths by as much itself (a criterion is given
    the labels, not the smoothed rows: the Mixer's smoothing would be dropped without a word)."""
    if smoothing <= 0:
        return
    module = getattr(criterion, "_orig_mod", criterion)
    own = module.label_smoothing if isinstance(module, nn.CrossEntropyLoss) else None
    if own is not None and abs(own - smoothing) <= 1e-12:
        return
    name = f"nn.CrossEntropyLoss(label_smoothing={own})" if own is not None else _name(module)
    raise ValueError(
        f"the batch was mixed with label_smoothing={smoothing} (the Mixer's), but mixed_loss gives the criterion the "
        f"labels, not the smoothed rows, and {name} does not smooth by {smoothing}: the smoothing would be lost. "
        f"Smooth in the criterion and build the Mixer without it (nn.CrossEntropyLoss(label_smoothing={smoothing}) "
        "with Mixer(..., label_smoothing=0.0); the same smoothing in both is accepted too), or score the smoothed "
        "targets with multimix.soft_cross_entropy(logits, batch) (binary_cross_entropy(logits, batch.targets) for "
        "multi-label)"
    )


def _name(criterion: object) -> str:
    return getattr(criterion, "__name__", type(criterion).__name__)


def _per_position(criterion: Callable[..., torch.Tensor], logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``criterion(logits, labels)`` with ``reduction="none"`` (a module's attribute restored after).

    Class indices of a narrower integer dtype (uint8 PNG masks, int32 labels), which the Mixer takes, reach the
    criterion as int64, the dtype torch's class-index losses require.
    """
    if not labels.is_floating_point() and labels.dtype not in (torch.int64, torch.bool):
        labels = labels.long()
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
    [y_b valid])`` (the criterion's ``ignore_index``, else the Mixer's), each label also
    weighted by its class weight when the criterion has one (``weight=``): torch's mean
    over the pixels that are not ignored, when a region takes every position whole.
    """
    own = getattr(criterion, "reduction", None)
    reduction = check_reduction(reduction if reduction is not None else own if own in REDUCTIONS else "mean")
    logits = check_tensor(logits, "logits")
    if logits.device != mix.labels.device:
        raise ValueError(f"the batch's labels are on {mix.labels.device}, logits on {logits.device}; batch.to(device)")
    ignore = getattr(criterion, "ignore_index", mix.ignore_index)
    positions = tuple(mix.labels.shape if mix.kind == "map" else mix.labels.shape[:-1])
    own_weight, other_weight = mix.position_weights()
    if mix.kind == "map" and own_weight.dtype == torch.bool:  # whole positions: one call on the map they show
        shown = torch.where(own_weight, mix.labels, mix.partner)
        loss = _check_position_loss(_per_position(criterion, logits, shown), positions, mix)
        weight = _class_weight(criterion, shown, loss.dtype)
        weight = (shown != ignore).to(loss.dtype) if weight is None else weight
    else:
        own_loss = _check_position_loss(_per_position(criterion, logits, mix.labels), positions, mix)
        if mix.kind == "map_rows" and own_loss.dim() == len(positions):  # one loss per position: no class axis
            own_weight, other_weight = own_weight.squeeze(-1), other_weight.squeeze(-1)
        own_weight, other_weight = own_weight.to(own_loss.dtype), other_weight.to(own_loss.dtype)
        loss = own_weight * own_loss + other_weight * _per_position(criterion, logits, mix.partner)
        weight = None
        if mix.kind == "map":
            own_class = _class_weight(criterion, mix.labels, loss.dtype)
            if own_class is None:
                weight = own_weight * (mix.labels != ignore) + other_weight * (mix.partner != ignore)
            else:
                weight = own_weight * own_class + other_weight * _class_weight(criterion, mix.partner, loss.dtype)
    if reduction == "none":
        return loss
    if reduction == "sum" or weight is None:
        return reduce_loss(loss, reduction)
    return loss.sum() / weight.sum()


def _check_position_loss(loss: torch.Tensor, positions: tuple[int, ...], mix: LabelMix) -> torch.Tensor:
    """``loss`` after checking it holds one value per position ``(B, *S)`` (or, for rows, per position and class)."""
    allowed = (positions, tuple(mix.labels.shape)) if mix.kind == "map_rows" else (positions,)
    if tuple(loss.shape) not in allowed:
        shapes = " or ".join(str(shape) for shape in allowed)
        raise ValueError(
            f"criterion must return a loss per position of shape {shapes}, got {tuple(loss.shape)}; give it "
            "reduction='none' (e.g. nn.CrossEntropyLoss(ignore_index=255), whose reduction mixed_loss sets)"
        )
    return loss
