"""SpecAugment masking (Park et al., Interspeech 2019): label-preserving time and frequency masks.

Each sample gets ``time_masks`` bands of at most ``time_width`` frames and
``freq_masks`` bands of at most ``freq_width`` bins set to ``value``. The bands are
drawn on the CPU from a ``torch.Generator`` (a resumed run draws the same ones) and
moved to the batch's device in one copy, as a mixing plan is; the masking is one
vectorised ``masked_fill`` there, so a call never waits for the device. Labels are
unchanged, so it composes with any mixing adapter: mix first, then mask the mixed
batch (``spec_augment(mixer(x, y))``), as augmentation pipelines usually order them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch

from multimix._checks import check_flag, check_float_tensor, check_generator_state, check_writable, seeded_generator
from multimix._transfer import to_device
from multimix.mixer import MixedBatch

__all__ = ["Masks", "SpecAugment"]


class Masks(NamedTuple):
    """One call's masks: ``freq`` ``(B, F)`` and ``time`` ``(B, T)`` bool, True where the value is replaced."""

    freq: torch.Tensor
    time: torch.Tensor


def draw_bands(batch_size: int, size: int, count: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """``(batch_size, size)`` bool: ``count`` bands per row, each of a width uniform in ``[0, width]``.

    As torchaudio's ``mask_along_axis_iid``: the width ``w = floor(u * (width + 1))``
    (clipped to ``size``) and the start uniform over the ``size - w + 1`` positions.

    Example:
        >>> mask = draw_bands(2, 10, 1, 3, torch.Generator().manual_seed(0))
        >>> mask.shape, bool((mask.sum(1) <= 3).all())
        (torch.Size([2, 10]), True)
    """
    shape = (batch_size, count)
    widths = (torch.rand(shape, generator=generator, dtype=torch.float64) * (width + 1)).floor().clamp(max=size)
    starts = (torch.rand(shape, generator=generator, dtype=torch.float64) * (size - widths + 1)).floor()
    steps = torch.arange(size, dtype=torch.float64).view(1, 1, size)
    return ((steps >= starts.unsqueeze(2)) & (steps < (starts + widths).unsqueeze(2))).any(dim=1)


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


class SpecAugment:
    """Mask time and frequency bands of spectrograms ``(B, F, T)`` or ``(B, C, F, T)``, per sample.

    Args:
        time_masks: bands per sample on the time axis (T).
        time_width: the largest band, in frames (each width is uniform in ``[0, time_width]``).
        freq_masks: bands per sample on the frequency axis (F).
        freq_width: the largest band, in bins.
        value: what masked cells become (0, as torchaudio; the mean of a normalised log-mel).
        inplace: write into the batch (default), unless autograd needs the original.
        seed: seed of the mask generator; or pass ``generator``. If neither, the seed
            comes from torch's global RNG.
        generator: a CPU ``torch.Generator`` to draw the masks from.

    Example:
        >>> import multimix
        >>> from multimix.audio import SpecMixup
        >>> mixer = multimix.Mixer(SpecMixup(1.0), num_classes=2, seed=0)
        >>> augment = SpecAugment(2, 10, 2, 8, seed=0)
        >>> batch = augment(mixer(torch.randn(4, 40, 100), torch.tensor([0, 1, 0, 1])))
        >>> batch.inputs.shape, batch.targets.shape
        (torch.Size([4, 40, 100]), torch.Size([4, 2]))
    """

    layout = "(B, F, T) or (B, C, F, T)"

    def __init__(
        self,
        time_masks: int = 2,
        time_width: int = 20,
        freq_masks: int = 2,
        freq_width: int = 10,
        *,
        value: float = 0.0,
        inplace: bool = True,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.time_masks, self.time_width = _count(time_masks, "time_masks"), _count(time_width, "time_width")
        self.freq_masks, self.freq_width = _count(freq_masks, "freq_masks"), _count(freq_width, "freq_width")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"value must be a float (what masked cells become), got {type(value).__name__} {value!r}")
        check_flag(inplace, "inplace")
        self.value, self.inplace = float(value), inplace
        self.generator = seeded_generator(seed, generator)

    def draw(self, batch_size: int, freq_bins: int, frames: int) -> Masks:
        """Draw one call's masks on the CPU: frequency bands first, then time bands."""
        freq = draw_bands(batch_size, freq_bins, self.freq_masks, self.freq_width, self.generator)
        time = draw_bands(batch_size, frames, self.time_masks, self.time_width, self.generator)
        return Masks(freq, time)

    def apply(self, x: torch.Tensor, masks: Masks) -> torch.Tensor:
        """Mask ``x`` with ``masks`` already on its device; in place when allowed."""
        cells = masks.freq.unsqueeze(2) | masks.time.unsqueeze(1)
        cells = cells.view(x.shape[0], *([1] * (x.dim() - 3)), *cells.shape[1:])
        if self.inplace and not (torch.is_grad_enabled() and x.requires_grad):
            return x.masked_fill_(cells, self.value)
        return x.masked_fill(cells, self.value)

    def __call__(self, batch: torch.Tensor | MixedBatch) -> Any:
        """Mask a spectrogram batch, or the inputs of a :class:`~multimix.MixedBatch` (targets unchanged)."""
        if isinstance(batch, MixedBatch):
            if not isinstance(batch.inputs, torch.Tensor):
                raise TypeError(
                    "SpecAugment masks a MixedBatch whose inputs are one tensor; for dict batches call it on "
                    "the spectrogram field: batch.inputs[name] = augment(batch.inputs[name])"
                )
            return dataclasses.replace(batch, inputs=self(batch.inputs))
        x = check_float_tensor(batch, "inputs", 3, self.layout)
        if x.dim() > 4:
            raise ValueError(f"inputs must have at most 4 dimensions {self.layout}, got shape {tuple(x.shape)}")
        if self.inplace and not (torch.is_grad_enabled() and x.requires_grad):
            check_writable(x, "inputs")
        masks = to_device(self.draw(x.shape[0], x.shape[-2], x.shape[-1]), x.device)
        return self.apply(x, masks)

    def state_dict(self) -> dict[str, Any]:
        """The generator state, so a resumed run draws the same masks."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; a state that does not load changes nothing."""
        if not isinstance(state, dict) or "generator" not in state:
            raise TypeError(f"state must be what SpecAugment.state_dict() returned, got {state!r:.80}")
        self.generator.set_state(check_generator_state(state["generator"], "state['generator']"))

    def __repr__(self) -> str:
        return (
            f"SpecAugment(time_masks={self.time_masks}, time_width={self.time_width}, freq_masks={self.freq_masks}, "
            f"freq_width={self.freq_width}, value={self.value}, inplace={self.inplace})"
        )
