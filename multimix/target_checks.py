"""What targets a Mixer accepts: class indices, rows, label maps; checked before anything is drawn or written.

Shapes and dtypes are always checked (they need no values and trace under
``torch.compile``); values where reading them costs nothing (see :func:`check_targets`).
"""

from __future__ import annotations

import torch

from multimix._checks import check_positive_int, check_tensor, device_assert, reads_values

__all__: list[str] = []


def check_targets(
    targets: object,
    num_classes: int,
    batch_size: int | None = None,
    *,
    multi_label: bool = False,
    validate: bool = False,
    values: bool = True,
    label_shape: tuple[int | None, ...] | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Validate class-index or row targets (or label maps) without changing them.

    With ``label_shape`` (the positions an adapter mixes, e.g. ``(H, W)``; None for an
    axis of any length) targets may also be label maps: integer ``(B, *label_shape)``,
    each label in ``[0, num_classes)`` or ``ignore_index``, or float rows
    ``(B, *label_shape, C)``.

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
    if multi_label and targets.dim() == 2 and not targets.is_floating_point():  # before a (B, T) frame-label reading
        raise TypeError(
            f"with multi_label=True, targets {tuple(targets.shape)} of dtype {targets.dtype} are multi-hot rows "
            f"(B, {num_classes}) and must be floating point; use .float() (integer frame labels (B, T) take "
            "multi_label=False)"
        )
    if follows_positions(targets, label_shape):
        return _check_map(targets, num_classes, batch_size, label_shape, ignore_index, multi_label, validate, values)
    if label_shape and targets.dim() == 1 + len(label_shape) > 2:
        raise TypeError(
            f"label maps {_layout(label_shape)} must hold integer class indices, got dtype {targets.dtype}; "
            f"use .long() (or pass rows {_layout((*label_shape, num_classes))})"
        )
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
        low, high = torch.aminmax(targets)
        low, high = int(low), int(high)
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            fix = "check num_classes" if bad >= 0 else (
                "a sample's class cannot be ignored (ignored labels such as -100 belong to label maps and token "
                "labels): drop such samples, or give every sample a class in [0, num_classes)")  # fmt: skip
            raise ValueError(f"targets holds label {bad}, outside [0, num_classes={num_classes}); {fix}")
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
        if abs(worst - 1) > max(1e-3, torch.finfo(targets.dtype).eps):  # bfloat16 rows round by up to eps / 2
            raise ValueError(
                f"single-label target rows must sum to 1, found a row summing to {worst:.4g}; "
                "for multi-hot targets build the Mixer with multi_label=True (for multimix.wrap of a Hugging Face "
                "model, set config.problem_type='multi_label_classification')"
            )
    return targets


def _layout(shape: tuple[int | None, ...]) -> str:
    return "(B, " + ", ".join("T" if size is None else str(size) for size in shape) + ")"


def _check_map(
    targets: torch.Tensor,
    num_classes: int,
    batch_size: int | None,
    label_shape: tuple[int | None, ...],
    ignore_index: int,
    multi_label: bool,
    validate: bool,
    values: bool,
) -> torch.Tensor:
    """:func:`check_targets` for label maps ``(B, *S)`` and frame rows ``(B, *S, C)``."""
    rows = targets.is_floating_point()
    expected = (*label_shape, num_classes) if rows else label_shape
    got = targets.shape[1:]
    if targets.shape[0] == 0 or (batch_size is not None and targets.shape[0] != batch_size):
        raise ValueError(
            f"targets has batch size {targets.shape[0]} but inputs have batch size {batch_size}; "
            "pass one label map per input sample"
        )
    if any(want is not None and want != size for want, size in zip(expected, got, strict=True)):
        kind = "rows" if rows else "label maps"
        raise ValueError(
            f"{kind} must have the inputs' positions, shape {_layout(expected)}, got {tuple(targets.shape)}; "
            "resize the maps with the inputs (nearest for labels)"
        )
    if rows:
        return check_targets(targets.flatten(0, -2), num_classes, multi_label=multi_label, validate=validate,
                             values=values)  # fmt: skip
    if targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"label maps must hold integer class indices, got dtype {targets.dtype}; use .long()")
    if not values or not reads_values(targets, validate) or targets.numel() == 0:
        return targets
    bad = targets[((targets < 0) | (targets >= num_classes)) & (targets != ignore_index)]
    if bad.numel():
        raise ValueError(
            f"targets holds label {int(bad[0])}, outside [0, num_classes={num_classes}) and not "
            f"ignore_index={ignore_index}; check num_classes, or pass ignore_index= to the Mixer"
        )
    return targets


def follows_positions(targets: torch.Tensor, label_shape: tuple[int | None, ...] | None) -> bool:
    """Whether ``targets`` are label maps over ``label_shape`` (integer ``(B, *S)`` or rows ``(B, *S, C)``), not class
    indices or rows."""
    positions = targets.dim() - 1 - targets.is_floating_point()
    return bool(label_shape) and targets.dim() > 1 and positions == len(label_shape)


def check_mix_arguments(
    rows: object, index: object, lam: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`~multimix.targets.mix_targets`'s arguments checked: float rows ``(B, C)``, an integer partner map and
    lam ``(B,)`` (their values where reading them costs nothing)."""
    rows, index, lam = check_tensor(rows, "rows"), check_tensor(index, "index"), check_tensor(lam, "lam")
    if rows.dim() != 2 or index.shape != (rows.shape[0],) or lam.shape != (rows.shape[0],):
        raise ValueError(
            f"mix_targets needs rows (B, C), index (B,) and lam (B,); got {tuple(rows.shape)}, "
            f"{tuple(index.shape)} and {tuple(lam.shape)}"
        )
    if not rows.is_floating_point() or index.is_floating_point() or index.dtype == torch.bool:
        raise TypeError(f"mix_targets needs float rows and an integer index, got {rows.dtype} and {index.dtype}")
    if reads_values(index, False) and reads_values(lam, False):
        check_partners(index, lam)
    return rows, index, lam


def check_partners(index: torch.Tensor, lam: torch.Tensor, owner: str = "out") -> None:
    """Refuse partners outside ``[0, B)`` and label weights outside ``[0, 1]`` (NaN too), naming the first bad
    values and whose they are (``out``, a batch's; ``plan``): it reads them, so callers decide where that costs
    nothing."""
    bad_lam = lam[~((lam >= 0) & (lam <= 1))]  # NaN fails both comparisons
    if bad_lam.numel():
        raise ValueError(
            f"lam must lie in [0, 1] (the weight of each sample's own label, {owner}.lam), got {bad_lam[:4].tolist()}"
        )
    bad_index = index[(index < 0) | (index >= len(index))]
    if bad_index.numel():
        raise ValueError(
            f"index must hold partners in [0, {len(index)}) ({owner}.index), got {bad_index[:4].tolist()}"
        )
