"""Audio adapters: spectrogram mixup in the right domain, labelled band CutMix, waveform mixing.

Mixing belongs on the device, after the feature front end: compute the log-mel
spectrogram of the clean batch there, then mix it (what PANNs does). torchaudio is
only needed for the front end, not by these adapters:

    >>> import torch, torchaudio, multimix
    >>> from multimix.audio import SpecMixup
    >>> front_end = torch.nn.Sequential(
    ...     torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400, n_mels=40),
    ...     torchaudio.transforms.AmplitudeToDB(top_db=80))
    >>> waves, labels = torch.randn(4, 16000), torch.tensor([0, 1, 2, 3])
    >>> mixer = multimix.Mixer(SpecMixup(alpha=1.0, domain="power", db=True), num_classes=4, seed=0)
    >>> out = mixer(front_end(waves), labels)
    >>> out.inputs.shape, out.targets.shape
    (torch.Size([4, 40, 81]), torch.Size([4, 4]))
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch

from multimix._checks import check_positive_int
from multimix._kernels import apply_rowwise, keep_unmixed, row_view, unchanged, where_into
from multimix.adapter import Adapter
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["SpecMix", "SpecMixup", "logaddexp_mix"]

AUDIO_INPUTS = ("input_values", "input_features")


_DB = math.log(10.0) / 10.0  # x_dB * _DB = natural log of the power


def logaddexp_mix(a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor, *, db: bool = False) -> torch.Tensor:
    """``log(lam * exp(a) + (1 - lam) * exp(b))``, stably, for log-power values (dB with ``db=True``).

    ``lam`` broadcasts against ``a``; computed in float32 or wider and returned in ``a``'s dtype.
    Silence (``-inf``, log 0) is exact: mixing it with ``b`` gives ``log(1 - lam) + b``,
    and two silent values stay silent.

    Example:
        >>> a, b = torch.tensor([0.0]), torch.tensor([math.log(3.0)])
        >>> round(float(logaddexp_mix(a, b, torch.tensor(0.5)).exp()), 5)   # (1 + 3) / 2
        2.0
    """
    scale = _DB if db else 1.0
    compute = torch.promote_types(a.dtype, torch.float32)
    lam = lam.to(device=a.device, dtype=torch.float64)
    own = a.to(compute).mul(scale).add_(torch.log(lam).to(compute))
    other = b.to(compute).mul(scale).add_(torch.log1p(-lam).to(compute))
    if a.device.type == "cpu":
        # max + log(1 + exp(-|own - other|)): twice as fast as torch.logaddexp on CPU, same values;
        # a gap of -inf - -inf (two silent values) is NaN, read as an infinite gap.
        out = torch.maximum(own, other)
        out.add_(own.sub_(other).abs_().nan_to_num_(nan=math.inf).neg_().exp_().add_(1.0).log_())
    else:
        out = torch.logaddexp(own, other)  # one fused kernel on accelerators
    return (out.div_(scale) if db else out).to(a.dtype)


def time_view(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(B, T)`` mask as ``(B, 1, ..., T)`` to broadcast against ``like``."""
    return mask.view(mask.shape[0], *([1] * (like.dim() - 2)), mask.shape[1])


class _SpectrogramAdapter(Adapter):
    min_ndim = 3
    max_ndim = 4
    layout = "(B, F, T) or (B, C, F, T)"
    takes_lengths = True
    hf_inputs = AUDIO_INPUTS

    def _set_time_axis(self, time_axis: int | None) -> None:
        if time_axis not in (None, -1, -2):
            raise ValueError(
                f"time_axis must be -1 (spectrograms (B, F, T), torchaudio and Whisper), -2 ((B, T, F), HF AST) "
                f"or None (-1, or what multimix.wrap knows for the model), got {time_axis!r}"
            )
        self.time_axis = time_axis

    def _as_ft(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` seen as ``(..., F, T)``: a transposed view for ``time_axis=-2``, so writes reach ``x``."""
        return x.transpose(-1, -2) if self.time_axis == -2 else x

    def label_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """Frame labels follow the time axis: ``(B, T)`` class indices or ``(B, T, C)`` rows."""
        return (self._as_ft(x).shape[-1],)

    def _check_valid(self, valid: Validity | None) -> None:
        if valid is not None and self.time_axis == -2:
            raise ValueError(
                "lengths / padding masks run along the last axis, but time_axis=-2 puts time on the second-to-last; "
                "pass spectrograms (B, F, T) with time_axis=-1, or no lengths"
            )


class SpecMixup(_SpectrogramAdapter):
    """Mixup of log-scale spectrograms ``(B, F, T)`` or ``(B, C, F, T)``.

    Args:
        alpha: lam ~ Beta(alpha, alpha).
        domain: ``"log"`` interpolates the log values as given (PANNs), so a silent
            ``-inf`` (log 0) makes the mix ``-inf``; ``"power"``
            mixes the energies and returns to the log scale,
            ``log(lam * exp(a) + (1 - lam) * exp(b))``: what two sounds played together
            look like. Never below the log-domain mix (Jensen).
        db: the values are decibels (``10 * log10`` power, torchaudio's
            ``AmplitudeToDB``) instead of natural-log power. Matters for ``"power"`` only.
        time_axis: -1 for ``(B, F, T)`` (the default when None), -2 for ``(B, T, F)``
            (HF AST's ``input_values``); lengths run along the time axis.
            ``multimix.wrap`` sets it for the models it knows when left None.
        inplace: write into the input batch (default) or return a new tensor.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        domain: Literal["log", "power"] = "log",
        db: bool = False,
        time_axis: int | None = None,
        inplace: bool = True,
    ) -> None:
        super().__init__(alpha, inplace=inplace)
        self._set_time_axis(time_axis)
        if domain not in ("log", "power"):
            raise ValueError(f"domain must be 'log' or 'power', got {domain!r}")
        if not isinstance(db, bool):
            raise TypeError(f"db must be a bool, got {type(db).__name__} {db!r}")
        self.domain = domain
        self.db = db

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: None, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = self.writes_inplace(x)
        self._check_valid(valid)
        if not plan.any_mixed:
            return unchanged(x, inplace), plan.lam
        if self.vectorized(x):
            partner = x.index_select(0, plan.index)
            if self.domain == "power":
                mixed = logaddexp_mix(x, partner, row_view(plan.lam, x), db=self.db)
            else:  # a weighted sum, not lerp: log 0 (-inf) mixes to -inf instead of NaN
                # Weights no smaller than the dtype's tiniest normal: a lam that rounds to 0 would
                # turn -inf * 0 into NaN, where the limit of the mix is -inf.
                tiny = torch.finfo(x.dtype).tiny
                partner.mul_(row_view((1.0 - plan.lam).to(x.dtype).clamp_(min=tiny), x))  # ours to scale
                own = row_view(plan.lam.to(x.dtype, copy=True).clamp_(min=tiny), x)
                if plan.all_mixed and inplace:
                    return x.mul_(own).add_(partner), plan.lam
                mixed = x.mul(own).add_(partner)
            return keep_unmixed(mixed, x, plan, inplace=inplace), plan.lam
        lams = plan.lam.tolist()

        def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
            if self.domain == "power":
                dst.copy_(logaddexp_mix(dst, partner, plan.lam[i], db=self.db))
            else:
                tiny = torch.finfo(dst.dtype).tiny  # as in the vectorised path: never -inf * 0
                dst.mul_(max(lams[i], tiny)).add_(partner, alpha=max(1.0 - lams[i], tiny))

        mixed = apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), write, inplace=inplace)
        return mixed, plan.lam

    def __repr__(self) -> str:
        return (
            f"SpecMixup(alpha={self.alpha!r}, domain={self.domain!r}, db={self.db!r}, time_axis={self.time_axis!r}, "
            f"inplace={self.inplace!r})"
        )


class Bands(NamedTuple):
    """SpecMix bands per sample: ``[start, end)`` on the time and frequency axes, the area kept, and their masks."""

    time: torch.Tensor  # (B, time_bands, 2) long
    freq: torch.Tensor  # (B, freq_bands, 2) long
    kept: torch.Tensor  # (B,) float64
    freq_mask: torch.Tensor  # (B, F) bool, bins taken from the partner
    time_mask: torch.Tensor  # (B, T) bool, frames taken from the partner


def _band_mask(bands: torch.Tensor, size: int) -> torch.Tensor:
    steps = torch.arange(size).view(1, 1, size)
    return ((steps >= bands[..., :1]) & (steps < bands[..., 1:])).any(dim=1)


def _draw_bands(cut: torch.Tensor, count: int, size: int, max_width: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` bands per row covering about ``cut * size`` steps in all, each at most ``max_width``."""
    total = (cut * size).round().long()
    widths = torch.stack([(total + k) // count for k in range(count)], dim=1).clamp(max=max_width)
    starts = (torch.rand(cut.shape[0], count, generator=generator, dtype=torch.float64) * (size - widths + 1)).long()
    return torch.stack([starts, starts + widths], dim=2)


class SpecMix(_SpectrogramAdapter):
    """Time and frequency bands pasted from the partner (Kim et al., Interspeech 2021), labelled.

    The plan's lam sets how much is cut: each axis loses about ``1 - sqrt(lam)`` of its
    length, split over ``time_bands`` / ``freq_bands`` bands of at most
    ``max_time_width`` frames / ``max_freq_width`` bins. The label weight is the
    fraction of the spectrogram actually kept from the sample itself, per sample.
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

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Bands:
        freq_bins, frames = self._as_ft(x).shape[-2:]
        lam = plan.region_lam()
        cut = 1.0 - lam.sqrt()
        time = _draw_bands(cut, self.time_bands, frames, self.max_time_width or frames, generator)
        freq = _draw_bands(cut, self.freq_bands, freq_bins, self.max_freq_width or freq_bins, generator)
        fmask, tmask = _band_mask(freq, freq_bins), _band_mask(time, frames)
        cut_frames, cut_bins = tmask.sum(1).double(), fmask.sum(1).double()
        kept = 1.0 - (cut_frames * freq_bins + cut_bins * frames - cut_frames * cut_bins) / (freq_bins * frames)
        n = plan.batch_size
        return Bands(
            time.expand(n, -1, -1), freq.expand(n, -1, -1), kept.expand(n), fmask.expand(n, -1), tmask.expand(n, -1)
        )

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Bands, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = self.writes_inplace(x)
        self._check_valid(valid)
        if not plan.any_mixed:
            return unchanged(x, inplace), torch.ones_like(region.kept)
        ft = self._as_ft(x)
        mixed = self._apply_ft(ft, plan, region, inplace)
        out = x if inplace else self._as_ft(mixed)  # in place, the bands were written into x through ft
        if plan.all_mixed:  # known on the host: no selection of unmixed samples
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
        own = torch.where(plan.mixed.view(-1, 1), own, 1.0)
        return labels.index_select(0, plan.index), own

    def _apply_ft(self, x: torch.Tensor, plan: MixPlan, region: Bands, inplace: bool) -> torch.Tensor:
        """Paste the bands into ``x`` seen as ``(..., F, T)`` (in place through a view when ``inplace``)."""
        if self.vectorized(x):
            mask = region.freq_mask.unsqueeze(2) | region.time_mask.unsqueeze(1)
            if not plan.all_mixed:  # known on the host: every sample mixed needs no pass over the mask
                mask = mask & plan.mixed.view(-1, 1, 1)
            mask = mask.view(x.shape[0], *([1] * (x.dim() - 3)), *x.shape[-2:])
            partner = x.index_select(0, plan.index)
            mixed = where_into(mask, partner, x) if inplace else torch.where(mask, partner, x)
        else:
            time, freq = region.time.tolist(), region.freq.tolist()

            def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
                for start, end in time[i]:
                    dst[..., start:end].copy_(partner[..., start:end])
                for start, end in freq[i]:
                    dst[..., start:end, :].copy_(partner[..., start:end, :])

            mixed = apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), write, inplace=inplace)
        return mixed
