"""Valid lengths and padding masks of variable-length batches (audio, text).

Callers give either lengths ``(B,)`` (valid steps per item, from the start) or a
padding mask ``(B, T)`` (1/True = valid); adapters can read both as a bool mask
``(B, T)``. After mixing, a mixed item is valid wherever either of its two sources was
(the union), and the caller gets back the form it gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from multimix._checks import check_tensor
from multimix.plan import MixPlan

__all__ = ["Validity", "check_lengths"]


@dataclass(frozen=True)
class Validity:
    """Valid steps of a batch, kept in the form they came in: lengths or a padding mask.

    With lengths, the ``(B, T)`` mask is only built if an adapter asks for it, and the
    union after mixing is a maximum of lengths: no full-batch temporaries.
    """

    steps: int
    device: torch.device
    dtype: torch.dtype
    lengths: torch.Tensor | None = None  # (B,) long on the CPU, when the caller gave lengths
    given_mask: torch.Tensor | None = None  # (B, T) bool, when the caller gave a mask

    @cached_property
    def mask(self) -> torch.Tensor:
        """``(B, T)`` bool, True where valid, on the caller's device."""
        if self.given_mask is not None:
            return self.given_mask
        steps = torch.arange(self.steps, device=self.device)
        return steps.unsqueeze(0) < self.lengths.to(self.device).unsqueeze(1)

    def counts(self) -> torch.Tensor:
        """Valid steps per item, ``(B,)`` float64 on the CPU."""
        if self.lengths is not None:
            return self.lengths.double()
        return self.mask.sum(dim=1).double().cpu()

    def union(self, plan: MixPlan) -> Validity:
        """Each item mixed with a partner is valid wherever either source was."""
        if self.lengths is not None:
            lengths = torch.where(plan.mixed, torch.maximum(self.lengths, self.lengths[plan.index]), self.lengths)
            return Validity(self.steps, self.device, self.dtype, lengths=lengths)
        mixed = plan.mixed.to(self.device).unsqueeze(1)
        partner = self.mask[plan.index.to(self.device)]
        return Validity(self.steps, self.device, self.dtype, given_mask=self.mask | (partner & mixed))

    def export(self) -> torch.Tensor:
        """Back to the caller's form: lengths ``(B,)`` or a mask ``(B, T)`` of the original dtype."""
        if self.lengths is not None:
            return self.lengths.to(device=self.device, dtype=self.dtype)
        return self.mask.to(self.dtype)


def check_lengths(lengths: object, batch_size: int, steps: int) -> Validity:
    """Validate lengths ``(B,)`` in ``[0, steps]`` or a padding mask ``(B, steps)``.

    Raises:
        TypeError: not a tensor, or float lengths.
        ValueError: wrong size, negative or longer than ``steps``, a mask of the wrong shape
            or with values other than 0 and 1.
    """
    lengths = check_tensor(lengths, "lengths")
    if lengths.dim() == 1:
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths (B,) must be integers, got dtype {lengths.dtype}; use .long()")
        if lengths.shape[0] != batch_size:
            raise ValueError(f"lengths must have shape ({batch_size},) (one per item), got {tuple(lengths.shape)}")
        low, high = int(lengths.min()), int(lengths.max())
        if low < 0 or high > steps:
            raise ValueError(
                f"lengths must lie in [0, {steps}] (the last axis has {steps} steps), got values in [{low}, {high}]"
            )
        return Validity(steps, lengths.device, lengths.dtype, lengths=lengths.long().cpu())
    if lengths.dim() == 2:
        if lengths.shape != (batch_size, steps):
            raise ValueError(
                f"a padding mask must have shape ({batch_size}, {steps}) (items, steps of the last axis), "
                f"got {tuple(lengths.shape)}"
            )
        if lengths.dtype != torch.bool and not bool(((lengths == 0) | (lengths == 1)).all()):
            raise ValueError("a padding mask must hold only 0/1 or False/True (1 = valid)")
        return Validity(steps, lengths.device, lengths.dtype, given_mask=lengths.bool())
    raise ValueError(f"lengths must be lengths (B,) or a padding mask (B, T), got shape {tuple(lengths.shape)}")
