"""SpecMix (Kim et al., Interspeech 2021): time and frequency bands of the partner pasted into a spectrogram.

Unlike :class:`~multimix.audio.SpecMixup`'s blend, each position keeps one source, so the
label weight is the area kept, per sample; the bands also label frame-wise targets.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from multimix._checks import check_positive_int
from multimix._kernels import apply_rowwise, in_layout_of, unchanged, where_into
from multimix.audio.spectrogram import _SpectrogramAdapter
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["SpecMix"]


class Bands(NamedTuple):
    """SpecMix bands per sample: ``[start, end)`` on the time and frequency axes, the area kept, and their masks.

    Given lengths, the bands are fitted to the frames valid in both the clip and its partner
    (``time`` counts them, ``span`` marks them): what :meth:`SpecMix.apply` pastes and labels.
    """

    time: torch.Tensor  # (B, time_bands, 2) long
    freq: torch.Tensor  # (B, freq_bands, 2) long
    kept: torch.Tensor  # (B,) float64
    freq_mask: torch.Tensor  # (B, F) bool, bins taken from the partner
    time_mask: torch.Tensor  # (B, T) bool, frames taken from the partner
    time_draws: torch.Tensor | None = None  # (B, time_bands) float64, the uniforms that place the time bands
    cut: torch.Tensor | None = None  # (B,) float64, the share of each axis cut: 1 - sqrt(lam)
    span: torch.Tensor | None = None  # (B, T) bool, frames valid in clip and partner, the bands' (lengths); None: all


def _band_mask(bands: torch.Tensor, size: int) -> torch.Tensor:
    steps = torch.arange(size).view(1, 1, size)
    return ((steps >= bands[..., :1]) & (steps < bands[..., 1:])).any(dim=1)


def _bands(cut: torch.Tensor, draws: torch.Tensor, size: int | torch.Tensor, max_width: int | None) -> torch.Tensor:
    """``count`` bands per row covering about ``cut * size`` steps in all, each at most ``max_width`` (``size``: an
    int, or each row's own as ``(B, 1)``), placed by the uniforms ``draws`` ``(B, count)``. Tensor ops only."""
    count = draws.shape[1]
    total = (cut.unsqueeze(1) * size).round().long()
    widths = torch.cat([(total + k) // count for k in range(count)], dim=1)
    widths = torch.minimum(widths, torch.as_tensor(size if max_width is None else max_width).to(widths))
    starts = (draws * (size - widths + 1)).long()
    return torch.stack([starts, starts + widths], dim=2)


def _kept(
    time_mask: torch.Tensor, freq_mask: torch.Tensor, frames: torch.Tensor, shared: torch.Tensor | None = None
) -> torch.Tensor:
    """``(B,)`` float64 share of each clip's ``frames`` x bins that no band takes (all of it for a clip of no frames):
    the label weight. ``frames``: each clip's own ``(B,)``, or the axis length for all; ``shared``: the frames the
    frequency bands span (those valid in the partner too), ``frames`` if None."""
    cut_frames, cut_bins = time_mask.sum(1, dtype=torch.float64), freq_mask.sum(1, dtype=torch.float64)
    bins = freq_mask.shape[-1]
    area = frames * bins
    cut_area = cut_frames * bins + cut_bins * (frames if shared is None else shared) - cut_frames * cut_bins
    return torch.where(area > 0, 1.0 - cut_area / area.clamp(min=1.0), 1.0)


class SpecMix(_SpectrogramAdapter):
    """Time and frequency bands pasted from the partner (Kim et al., Interspeech 2021), labelled.

    The plan's lam sets how much is cut: each axis loses about ``1 - sqrt(lam)`` of its
    length, split over ``time_bands`` / ``freq_bands`` bands of at most
    ``max_time_width`` frames / ``max_freq_width`` bins. The label weight is the
    fraction of the spectrogram actually kept from the sample itself, per sample. Given
    lengths (or a padding mask), the bands stay on the frames valid in both the clip and its
    partner (padding is neither pasted nor counted) and the label weight is the share of
    the clip's own valid frames kept (see docs/audio.md).
    Spectrograms are ``(B, F, T)`` (``time_axis=-1``, the default when None) or
    ``(B, T, F)`` with ``time_axis=-2`` (HF AST's ``input_values``: ``multimix.wrap``
    sets it for the models it knows when left None).

    Example:
        >>> import multimix
        >>> out = multimix.Mixer(SpecMix(1.0), num_classes=2, per_sample=True, seed=0)(
        ...     torch.randn(4, 40, 100), torch.tensor([0, 1, 0, 1]))
        >>> bool(torch.allclose(out.targets.sum(1), torch.ones(4)))
        True
    """

    keeps_lengths = True  # given lengths, the bands stay on frames valid in the clip (and its partner)

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        time_bands: int = 2,
        freq_bands: int = 2,
        max_time_width: int | None = None,
        max_freq_width: int | None = None,
        time_axis: int | None = None,
        inplace: bool = True,
    ) -> None:
        super().__init__(alpha, inplace=inplace)
        self._set_time_axis(time_axis)
        self.time_bands = check_positive_int(time_bands, "time_bands")
        self.freq_bands = check_positive_int(freq_bands, "freq_bands")
        self.max_time_width = None if max_time_width is None else check_positive_int(max_time_width, "max_time_width")
        self.max_freq_width = None if max_freq_width is None else check_positive_int(max_freq_width, "max_freq_width")

    def check_input(self, x: object, name: str = "inputs") -> torch.Tensor:
        x = super().check_input(x, name)
        ft = self._as_ft(x)
        limits = (("max_time_width", "time", ft.shape[-1]), ("max_freq_width", "frequency", ft.shape[-2]))
        for width, axis, size in limits:
            value = getattr(self, width)
            if value is not None and value > size:
                raise ValueError(f"{width}={value} is larger than the {axis} axis of {name} ({size}); use <= {size}")
        return x

    def region_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """The bands span frequency and time: (F, T)."""
        return tuple(self._as_ft(x).shape[-2:])

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Bands:
        freq_bins, frames = self._as_ft(x).shape[-2:]
        cut = 1.0 - plan.region_lam().sqrt()
        rows = cut.shape[0]
        time_draws = torch.rand(rows, self.time_bands, generator=generator, dtype=torch.float64)
        freq_draws = torch.rand(rows, self.freq_bands, generator=generator, dtype=torch.float64)
        time = _bands(cut, time_draws, frames, self.max_time_width)
        freq = _bands(cut, freq_draws, freq_bins, self.max_freq_width)
        fmask, tmask = _band_mask(freq, freq_bins), _band_mask(time, frames)
        kept = _kept(tmask, fmask, torch.tensor(float(frames), dtype=torch.float64))
        n = plan.batch_size
        return Bands(time.expand(n, -1, -1), freq.expand(n, -1, -1), kept.expand(n), fmask.expand(n, -1),
                     tmask.expand(n, -1), time_draws.expand(n, -1), cut.expand(n))  # fmt: skip

    def prepare(self, x: torch.Tensor, plan: MixPlan, region: Bands, valid: Validity | None = None) -> Bands:
        """With lengths, the bands fitted to the frames valid in both each clip and its partner (once, for the labels
        and the pixels): the partner's padding is never pasted, nor counted as the partner's share."""
        region = Bands(*region)
        if valid is None or region.span is not None:
            return region
        self._check_valid(valid)
        span = valid.mask & valid.mask.index_select(0, plan.index)  # (B, T) valid in the clip and its partner
        shared = span.sum(1, dtype=torch.float64)
        if region.time_draws is None or region.cut is None:  # bands given by hand: where they are, on shared frames
            time, tmask = region.time, region.time_mask & span
        else:  # the same draws, over the shared frames: a band covers them by their rank
            time = _bands(region.cut, region.time_draws, shared.long().unsqueeze(1), self.max_time_width)
            rank = (span.long().cumsum(1) - 1).unsqueeze(1)  # (B, 1, T)
            tmask = ((rank >= time[..., :1]) & (rank < time[..., 1:]) & span.unsqueeze(1)).any(dim=1)
        kept = _kept(tmask, region.freq_mask, valid.counts(), shared)
        return region._replace(time=time, time_mask=tmask, kept=kept, span=span)

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Bands, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = self.writes_inplace(x)
        self._check_valid(valid)
        region = self.prepare(x, plan, region, valid)
        if plan.nothing_to_mix:
            return unchanged(x, inplace), torch.ones_like(region.kept)
        ft = self._as_ft(x)
        mixed = self._apply_ft(ft, plan, region, inplace)
        out = x if inplace else self._as_ft(mixed)  # in place, the bands were written into x through ft
        if plan.nothing_to_keep:  # no selection of unmixed samples
            return out, region.kept
        return out, torch.where(plan.mixed, region.kept, torch.ones_like(region.kept))

    def mix_label_map(
        self, labels: torch.Tensor, x: torch.Tensor, plan: MixPlan, region: Bands
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each frame's own weight is the share of its bins it keeps: 0 in a time band, ``1 - cut / F`` elsewhere."""
        region = Bands(*region)
        bins = region.freq_mask.shape[-1]
        kept = 1.0 - region.freq_mask.sum(1, keepdim=True, dtype=torch.float64) / bins  # (B, 1)
        own = torch.where(region.time_mask, 0.0, kept)
        if region.span is not None:  # fitted to lengths: frames where either side is padding take nothing
            own = torch.where(region.span, own, 1.0)
        own = torch.where(plan.mixed.view(-1, 1), own, 1.0)
        return labels.index_select(0, plan.index), own

    def _apply_ft(self, x: torch.Tensor, plan: MixPlan, region: Bands, inplace: bool) -> torch.Tensor:
        """Paste the bands into ``x`` seen as ``(..., F, T)`` (in place through a view when ``inplace``)."""
        if self.vectorized(x) or region.span is not None:  # fitted bands are masks, not ranges of frames
            freq = region.freq_mask.unsqueeze(2)
            freq = freq if region.span is None else freq & region.span.unsqueeze(1)
            mask = freq | region.time_mask.unsqueeze(1)
            if not plan.nothing_to_keep:  # every sample mixed needs no pass over the mask
                mask = mask & plan.mixed.view(-1, 1, 1)
            mask = mask.view(x.shape[0], *([1] * (x.dim() - 3)), *x.shape[-2:])
            partner = x.index_select(0, plan.index)
            mixed = where_into(mask, partner, x) if inplace else in_layout_of(x, torch.where(mask, partner, x))
        else:
            time, freq = region.time.tolist(), region.freq.tolist()

            def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
                for start, end in time[i]:
                    dst[..., start:end].copy_(partner[..., start:end])
                for start, end in freq[i]:
                    dst[..., start:end, :].copy_(partner[..., start:end, :])

            mixed = apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), write, inplace=inplace)
        return mixed
