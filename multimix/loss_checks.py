"""What the losses accept: logits and targets checked without a sync, and torch's reductions.

Shape, dtype and device checks always run (they need no values); value checks (label
range, ``-100``, finite rows) only where the tensors are on the CPU, or with
``validate=True`` (one sync each, for debugging).
"""

from __future__ import annotations

import torch

from multimix._checks import check_tensor

__all__: list[str] = []

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: object) -> str:
    """Return ``reduction`` after checking it is one of torch's: ``"mean"``, ``"sum"`` or ``"none"``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_logits_and_targets(
    logits: object, targets: object, reduction: str, validate: bool | None, *, max_target: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and dtypes (no sync); check values only on the CPU or with ``validate=True``."""
    logits = check_tensor(logits, "logits")
    targets = check_tensor(targets, "targets")
    check_reduction(reduction)
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


def check_num_classes(logits: torch.Tensor, num_classes: int) -> None:
    """Check the logits' class axis ``(B, C)`` against the ``num_classes`` a batch was mixed for (no sync)."""
    logits = check_tensor(logits, "logits")
    if logits.dim() == 2 and logits.shape[1] != num_classes:
        raise ValueError(
            f"logits have {logits.shape[1]} classes (shape {tuple(logits.shape)}) but the batch was mixed for "
            f"num_classes={num_classes}; build the Mixer with num_classes={logits.shape[1]} or fix the model's head"
        )


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 at least: half precision widened, float64 kept (a loss in float32 would round it away)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce per-sample (or per-position) losses as ``reduction`` says, torch's way."""
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss
