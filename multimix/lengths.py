"""Valid lengths and padding masks of variable-length batches (audio, text).

Callers give either lengths ``(B,)`` (valid steps per item, from the start) or a
padding mask ``(B, T)`` (1/True = valid); adapters can read both as a bool mask
``(B, T)``. After mixing, a mixed item is valid wherever either of its two sources was
(the union), and the caller gets back the form it gave, on the batch's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from multimix._checks import check_tensor, device_assert, reads_values
from multimix.plan import MixPlan

__all__: list[str] = []


@dataclass(frozen=True)
class Validity:
    """Valid steps of a batch, kept in the form they came in: lengths or a padding mask.

    With lengths, the ``(B, T)`` mask is only built if an adapter asks for it, and the
    union after mixing is a maximum of lengths: no full-batch temporaries. Everything
    lives on the batch's device; nothing is read back from it.
    """

    steps: int
    dtype: torch.dtype  # the caller's dtype, given back by export()
    lengths: torch.Tensor | None = None  # (B,) long, when the caller gave lengths
    given_mask: torch.Tensor | None = None  # (B, T) bool, when the caller gave a mask

    @classmethod
    def of(cls, lengths: torch.Tensor, steps: int, dtype: torch.dtype | None = None) -> Validity:
        """Wrap lengths ``(B,)`` or a padding mask ``(B, T)`` already checked by :func:`check_lengths`."""
        dtype = lengths.dtype if dtype is None else dtype
        if lengths.dim() == 1:
            return cls(steps, dtype, lengths=lengths.long())
        return cls(steps, dtype, given_mask=lengths.bool())

    @property
    def mask(self) -> torch.Tensor:
        """``(B, T)`` bool, True where valid (built from lengths on each use: two small ops, and it traces)."""
        if self.given_mask is not None:
            return self.given_mask
        steps = torch.arange(self.steps, device=self.lengths.device)
        return steps.unsqueeze(0) < self.lengths.unsqueeze(1)

    def counts(self) -> torch.Tensor:
        """Valid steps per item, ``(B,)`` float64 on the batch's device."""
        if self.lengths is not None:
            return self.lengths.double()
        return self.mask.sum(dim=1, dtype=torch.float64)

    def union(self, plan: MixPlan) -> Validity:
        """Each item mixed with a partner is valid wherever either source was (``plan`` on the same device)."""
        if plan.nothing_to_mix:
            return self
        if self.lengths is not None:
            partner = self.lengths.index_select(0, plan.index)
            united = torch.where(plan.mixed, self.lengths.maximum(partner), self.lengths)
            return Validity(self.steps, self.dtype, lengths=united)
        partner = self.mask.index_select(0, plan.index) & plan.mixed.unsqueeze(1)
        return Validity(self.steps, self.dtype, given_mask=self.mask | partner)

    def export(self) -> torch.Tensor:
        """Back to the caller's form: lengths ``(B,)`` or a mask ``(B, T)`` of the original dtype."""
        if self.lengths is not None:
            return self.lengths.to(self.dtype)
        return self.mask.to(self.dtype)


def check_lengths(
    lengths: object, batch_size: int, steps: int, *, validate: bool = False, values: bool = True
) -> torch.Tensor:
    """Validate lengths ``(B,)`` in ``[0, steps]`` or a padding mask ``(B, steps)``; return them unchanged.

    Values are read on the CPU (or anywhere with ``validate=True``); on accelerators the
    range of lengths is checked by a device-side assert and a mask counts any nonzero
    value as valid, so no call waits for the device.

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
        if not values:
            return lengths
        if not reads_values(lengths, validate):
            device_assert(((lengths >= 0) & (lengths <= steps)).all(), f"multimix: lengths must lie in [0, {steps}]")
            return lengths
        low, high = int(lengths.min()), int(lengths.max())
        if low < 0 or high > steps:
            raise ValueError(
                f"lengths must lie in [0, {steps}] (the last axis has {steps} steps), got values in [{low}, {high}]"
            )
        return lengths
    if lengths.dim() == 2:
        if lengths.shape != (batch_size, steps):
            raise ValueError(
                f"a padding mask must have shape ({batch_size}, {steps}) (items, steps of the last axis), "
                f"got {tuple(lengths.shape)}"
            )
        binary = lengths.dtype == torch.bool or not values or not reads_values(lengths, validate)
        if not binary and not bool(((lengths == 0) | (lengths == 1)).all()):
            raise ValueError("a padding mask must hold only 0/1 or False/True (1 = valid)")
        return lengths
    raise ValueError(f"lengths must be lengths (B,) or a padding mask (B, T), got shape {tuple(lengths.shape)}")
