"""Soft targets: one contract for every adapter.

Targets come in as class indices ``(B,)`` or rows ``(B, C)`` (probabilities, or
multi-hot with ``multi_label=True``) and leave as float rows ``(B, C)``. Label
smoothing is folded in the way timm does it (off = s / C, on = 1 - s + s / C), and
mixing is ``lam * y + (1 - lam) * y[index]`` with the lam the adapter actually
applied, so single-label rows always sum to 1.
"""

from __future__ import annotations

import torch

from multimix._checks import check_positive_int, check_probability, check_tensor, device_assert, reads_values
from multimix.plan import MixPlan

__all__ = ["check_targets", "mix_targets", "mixed_targets", "smoothed_rows", "soft_targets"]


def check_targets(
    targets: object,
    num_classes: int,
    batch_size: int | None = None,
    *,
    multi_label: bool = False,
    validate: bool = False,
    values: bool = True,
) -> torch.Tensor:
    """Validate class-index or row targets without changing them.

    Shape and dtype are always checked. Values (label range, rows in [0, 1] summing
    to 1) are checked where reading them costs nothing: on the CPU, or on any device
    with ``validate=True``. On accelerators the label range is checked by the one-hot
    scatter itself and the row range by a device-side assert, so no call waits for
    the device. ``values=False`` checks shapes and dtypes only (what a traced step may do).

    Raises:
        TypeError: targets are not a tensor, or indices are not integers.
        ValueError: wrong shape, batch size, width, labels outside [0, num_classes),
            or single-label rows that are not probability rows.
    """
    targets = check_tensor(targets, "targets")
    check_positive_int(num_classes, "num_classes")
    if targets.dim() not in (1, 2):
        raise ValueError(
            f"targets must be class indices (B,) or rows (B, {num_classes}), got shape {tuple(targets.shape)}"
        )
    if targets.shape[0] == 0:
        raise ValueError("targets is an empty batch (shape (0, ...)); mix batches of at least one sample")
    if batch_size is not None and targets.shape[0] != batch_size:
        raise ValueError(
            f"targets has batch size {targets.shape[0]} but inputs have batch size {batch_size}; "
            "pass one target per input sample"
        )
    if targets.dim() == 1:
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(
                f"class-index targets (B,) must be an integer tensor, got dtype {targets.dtype}; "
                "use .long(), or pass probability rows of shape (B, num_classes)"
            )
        if not values or not reads_values(targets, validate):
            return targets
        low, high = (int(v) for v in torch.aminmax(targets))
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"targets holds label {bad}, outside [0, num_classes={num_classes}); check num_classes")
        return targets
    if targets.shape[1] != num_classes:
        raise ValueError(f"target rows must have width num_classes={num_classes}, got shape {tuple(targets.shape)}")
    if not targets.is_floating_point():
        raise TypeError(f"target rows (B, C) must be floating point, got dtype {targets.dtype}; use .float()")
    if not values:
        return targets
    if not reads_values(targets, validate):
        device_assert(((targets >= 0) & (targets <= 1)).all(), "multimix: target rows must hold values in [0, 1]")
        return targets
    if not bool(torch.isfinite(targets).all()) or bool((targets < 0).any()) or bool((targets > 1).any()):
        raise ValueError("target rows must hold values in [0, 1]; got values outside it or non-finite ones")
    if not multi_label:
        sums = targets.sum(dim=1, dtype=torch.float64)
        worst = float(sums[(sums - 1).abs().argmax()])
        if abs(worst - 1) > 1e-3:
            raise ValueError(
                f"single-label target rows must sum to 1, found a row summing to {worst:.4g}; "
                "for multi-hot targets build the Mixer with multi_label=True"
            )
    return targets


def soft_targets(
    targets: torch.Tensor,
    num_classes: int,
    *,
    label_smoothing: float = 0.0,
    multi_label: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Turn indices or rows into float rows ``(B, C)`` with label smoothing folded in.

    Example:
        >>> soft_targets(torch.tensor([0, 2]), 3, label_smoothing=0.3)
        tensor([[0.8000, 0.1000, 0.1000],
                [0.1000, 0.1000, 0.8000]])
    """
    label_smoothing = check_probability(label_smoothing, "label_smoothing")
    targets = check_targets(targets, num_classes, multi_label=multi_label)
    return smoothed_rows(targets, num_classes, label_smoothing, dtype)


def smoothed_rows(
    targets: torch.Tensor, num_classes: int, label_smoothing: float, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """:func:`soft_targets` for targets already checked by :func:`check_targets` (no second pass over them)."""
    if dtype is None:
        dtype = targets.dtype if targets.is_floating_point() and targets.dim() == 2 else torch.float32
    if targets.dim() == 1:
        rows = torch.zeros(targets.shape[0], num_classes, dtype=dtype, device=targets.device)
        rows.scatter_(1, targets.long().unsqueeze(1), 1.0)
    else:
        rows = targets.to(dtype=dtype, copy=True)
    if label_smoothing > 0:
        rows.mul_(1.0 - label_smoothing).add_(label_smoothing / num_classes)
    return rows


def mix_targets(rows: torch.Tensor, index: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Return ``lam[i] * rows[i] + (1 - lam[i]) * rows[index[i]]`` as a new tensor.

    Example:
        >>> rows = torch.eye(2)
        >>> mix_targets(rows, torch.tensor([1, 0]), torch.tensor([0.75, 0.75]))
        tensor([[0.7500, 0.2500],
                [0.2500, 0.7500]])
    """
    rows = check_tensor(rows, "rows")
    if rows.dim() != 2 or index.shape != (rows.shape[0],) or lam.shape != (rows.shape[0],):
        raise ValueError(
            f"mix_targets needs rows (B, C), index (B,) and lam (B,); got {tuple(rows.shape)}, "
            f"{tuple(index.shape)} and {tuple(lam.shape)}"
        )
    weight = lam.to(device=rows.device, dtype=rows.dtype).unsqueeze(1)
    return torch.lerp(rows[index.to(rows.device)], rows, weight)


def mixed_targets(
    targets: torch.Tensor, plan: MixPlan, lam: torch.Tensor, num_classes: int, label_smoothing: float
) -> torch.Tensor:
    """The soft rows of a mixed batch: targets checked by :func:`check_targets`, smoothed, then mixed.

    The one place where the Mixer and the model wrappers build their targets; ``plan``
    and ``lam`` (the label weight the adapter applied) are on the targets' device.
    Class indices are scattered straight into the mixed rows (``s / C`` everywhere, plus
    ``(1 - s) * lam`` at the label and ``(1 - s) * (1 - lam)`` at the partner's label):
    a few small in-place kernels, no full ``(B, C)`` temporaries to blend. Tensor ops only.
    """
    if not plan.any_mixed:
        return smoothed_rows(targets, num_classes, label_smoothing)
    dtype = targets.dtype if targets.is_floating_point() and targets.dim() == 2 else torch.float32
    own = lam.to(dtype).unsqueeze(1)
    other = 1.0 - own
    if targets.dim() == 2:
        rows = smoothed_rows(targets, num_classes, label_smoothing, dtype)
        return rows.index_select(0, plan.index).mul_(other).addcmul_(rows, own)
    if label_smoothing > 0:
        own, other = own * (1.0 - label_smoothing), other * (1.0 - label_smoothing)
    labels = targets.long().unsqueeze(1)
    out = torch.full((targets.shape[0], num_classes), label_smoothing / num_classes, dtype=dtype, device=targets.device)
    out.scatter_add_(1, labels, own)
    return out.scatter_add_(1, labels.index_select(0, plan.index), other)
