"""Waveform mixing: ``WaveMix`` on ``(B, T)`` or ``(B, C, T)``, with valid lengths and weighted labels."""

from __future__ import annotations

from typing import Literal

import torch

from multimix._kernels import applied_lam, apply_rowwise, keep_unmixed, lerp_rows, partner_weights, row_view, unchanged
from multimix.adapter import Adapter
from multimix.audio.spectrogram import AUDIO_INPUTS, time_view
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["WaveMix"]


class WaveMix(Adapter):
    """Mix waveforms ``(B, T)`` or ``(B, C, T)``, with optional valid lengths.

    Each source is silenced beyond its own length, so the padding of the shorter
    never enters the mix, and the mixed item is valid over the longer of the two
    (``out.lengths``). The label weight is chosen by ``label_weight``:

    - ``"duration"`` (default): ``lam * n_i / (lam * n_i + (1 - lam) * n_j)`` with
      ``n`` the valid lengths, so a short clip that is silent over most of the mix
      does not claim lam of its label; equal to lam without lengths.
    - ``"energy"``: each source's share of the energy it actually contributes,
      ``lam**2 * E_i / (lam**2 * E_i + (1 - lam)**2 * E_j)`` over its valid samples
      (RMS-aware, as torch-audiomentations' SNR mixing, but for labels).
    - ``"lam"``: the drawn lam, as any other adapter.

    Example:
        >>> import multimix
        >>> waves, lengths = torch.randn(3, 8000), torch.tensor([8000, 4000, 6000])
        >>> out = multimix.Mixer(WaveMix(1.0), num_classes=3, per_sample=True, seed=0)(
        ...     waves, torch.tensor([0, 1, 2]), lengths=lengths)
        >>> bool((out.lengths >= lengths).all())
        True
    """

    min_ndim = 2
    max_ndim = 3
    layout = "(B, T) or (B, C, T)"
    takes_lengths = True
    hf_inputs = AUDIO_INPUTS
    loop_min_numel = 1 << 12  # masking by lengths is cheaper as slices than as full-batch masks

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        label_weight: Literal["duration", "energy", "lam"] = "duration",
        inplace: bool = True,
    ) -> None:
        super().__init__(alpha, inplace=inplace)
        if label_weight not in ("duration", "energy", "lam"):
            raise ValueError(f"label_weight must be 'duration', 'energy' or 'lam', got {label_weight!r}")
        self.label_weight = label_weight

    def _energies(self, x: torch.Tensor, valid: Validity | None, vectorized: bool) -> torch.Tensor:
        """Energy of each item over its valid samples, ``(B,)`` float64 on ``x``'s device."""
        if vectorized:
            power = x.float().square()
            if valid is not None:
                power = power * time_view(valid.mask, x)
            return power.flatten(1).sum(dim=1, dtype=torch.float64)
        energies = []
        for i in range(x.shape[0]):
            if valid is None:
                row = x[i]
            elif valid.lengths is not None:
                row = x[i][..., : int(valid.lengths[i])]
            else:
                row = x[i][..., valid.mask[i]]
            energies.append(float(torch.linalg.vector_norm(row, dtype=torch.float64)) ** 2)
        return torch.tensor(energies, dtype=torch.float64)

    def label_lam(self, x: torch.Tensor, plan: MixPlan, valid: Validity | None, vectorized: bool) -> torch.Tensor:
        """The label weight of each item's own target under ``label_weight`` (computed before mixing), from the
        lam the blend really applies (rounded to ``x``'s dtype)."""
        lam = applied_lam(plan.lam, x)
        if self.label_weight == "lam" or (self.label_weight == "duration" and valid is None):
            return lam
        if self.label_weight == "duration":
            size = valid.counts()
            own, other = lam * size, (1.0 - lam) * size.index_select(0, plan.index)
        else:
            size = self._energies(x, valid, vectorized)
            own, other = lam.square() * size, (1.0 - lam).square() * size.index_select(0, plan.index)
        total = own + other
        return torch.where(total > 0, own / total.clamp(min=1e-300), lam)

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: None, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace, vectorized = self.writes_inplace(x), self.vectorized(x)
        if plan.nothing_to_mix:
            return unchanged(x, inplace), plan.lam
        label = self.label_lam(x, plan, valid, vectorized)
        if valid is None:  # every sample valid throughout: Mixup's blend
            return lerp_rows(x, plan, inplace=inplace, vectorized=vectorized), label
        if vectorized:
            silenced = x * time_view(valid.mask, x)
            weight = row_view((1.0 - plan.lam).to(x.dtype), x)
            mixed = torch.lerp(silenced, silenced.index_select(0, plan.index), weight)
            return keep_unmixed(mixed, x, plan, inplace=inplace), label
        # the partner's weight rounded to x's dtype, as the vectorised blend applies it, and the own weight it leaves
        weights, owns = partner_weights(plan.lam, x.dtype), applied_lam(plan.lam, x).tolist()
        index = plan.index.tolist()
        if valid.lengths is not None:  # prefix masks: slices, no temporaries
            lengths = valid.lengths.tolist()

            def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
                own, other = lengths[i], lengths[index[i]]
                dst[..., own:].zero_()
                dst.mul_(owns[i])
                dst[..., :other].add_(partner[..., :other], alpha=weights[i])

        else:
            mask = valid.mask.to(x.dtype)

            def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
                dst.mul_(mask[i]).mul_(owns[i]).add_(partner * mask[index[i]], alpha=weights[i])

        return apply_rowwise(x, index, plan.mixed.tolist(), write, inplace=inplace), label

    def label_shape(self, x: torch.Tensor) -> tuple[None]:
        """Frame labels ``(B, T')`` or rows ``(B, T', C)`` of any frame count: a blend mixes every frame by lam."""
        return (None,)

    def __repr__(self) -> str:
        return f"WaveMix(alpha={self.alpha!r}, label_weight={self.label_weight!r}, inplace={self.inplace!r})"
