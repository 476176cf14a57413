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
from dataclasses import dataclass
from typing import Literal

import torch

from multimix._checks import check_positive_int
from multimix._kernels import apply_rowwise, lerp_rows
from multimix.adapter import Adapter
from multimix.lengths import Validity
from multimix.mixer import MixedBatch, Mixer
from multimix.plan import MixPlan

__all__ = ["Bands", "PadCollate", "SpecMix", "SpecMixup", "WaveMix", "logaddexp_mix"]

_DB = math.log(10.0) / 10.0  # x_dB * _DB = natural log of the power


def logaddexp_mix(a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor, *, db: bool = False) -> torch.Tensor:
    """``log(lam * exp(a) + (1 - lam) * exp(b))``, stably, for log-power values (dB with ``db=True``).

    ``lam`` broadcasts against ``a``; computed in float32 or wider and returned in ``a``'s dtype.

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
    # max + log(1 + exp(-|own - other|)): twice as fast as torch.logaddexp on CPU, same values.
    out = torch.maximum(own, other)
    out.add_(own.sub_(other).abs_().neg_().exp_().add_(1.0).log_())
    return (out.div_(scale) if db else out).to(a.dtype)


def _row_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` as ``(B, 1, ..., 1)`` to broadcast against ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def _time_view(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(B, T)`` mask as ``(B, 1, ..., T)`` to broadcast against ``like``."""
    return mask.view(mask.shape[0], *([1] * (like.dim() - 2)), mask.shape[1])


class _SpectrogramAdapter(Adapter):
    min_ndim = 3
    max_ndim = 4
    layout = "(B, F, T) or (B, C, F, T)"
    takes_lengths = True


class SpecMixup(_SpectrogramAdapter):
    """Mixup of log-scale spectrograms ``(B, F, T)`` or ``(B, C, F, T)``.

    Args:
        alpha: lam ~ Beta(alpha, alpha).
        domain: ``"log"`` interpolates the log values as given (PANNs); ``"power"``
            mixes the energies and returns to the log scale,
            ``log(lam * exp(a) + (1 - lam) * exp(b))``: what two sounds played together
            look like. Never below the log-domain mix (Jensen).
        db: the values are decibels (``10 * log10`` power, torchaudio's
            ``AmplitudeToDB``) instead of natural-log power. Matters for ``"power"`` only.
        inplace: write into the input batch (default) or return a new tensor.
    """

    def __init__(
        self, alpha: float = 1.0, *, domain: Literal["log", "power"] = "log", db: bool = False, inplace: bool = True
    ) -> None:
        super().__init__(alpha, inplace=inplace)
        if domain not in ("log", "power"):
            raise ValueError(f"domain must be 'log' or 'power', got {domain!r}")
        if not isinstance(db, bool):
            raise TypeError(f"db must be a bool, got {type(db).__name__} {db!r}")
        self.domain = domain
        self.db = db

    def check_input(self, x: object, name: str = "inputs") -> torch.Tensor:
        x = super().check_input(x, name)
        if self.domain == "power" and not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"{name} holds non-finite values (-inf from log(0)?); domain='power' needs finite log values: "
                "floor the power before the log, e.g. torch.log(mel + 1e-6) or AmplitudeToDB(top_db=80)"
            )
        return x

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: None, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace, vectorized = self.writes_inplace(x), self.vectorized(x)
        if self.domain == "log":
            return lerp_rows(x, plan.index, plan.lam, inplace=inplace, vectorized=vectorized), plan.lam
        if vectorized:
            mixed = logaddexp_mix(x, x[plan.index.to(x.device)], _row_view(plan.lam, x), db=self.db)
            mixed = torch.where(_row_view(plan.mixed, x).to(x.device), mixed, x)  # unmixed rows stay bit-exact
            return (x.copy_(mixed) if inplace else mixed), plan.lam
        lams = plan.lam

        def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
            dst.copy_(logaddexp_mix(dst, partner, lams[i], db=self.db))

        mixed = apply_rowwise(x, plan.index.tolist(), (plan.lam < 1).tolist(), write, inplace=inplace)
        return mixed, plan.lam

    def __repr__(self) -> str:
        return f"SpecMixup(alpha={self.alpha!r}, domain={self.domain!r}, db={self.db!r}, inplace={self.inplace!r})"


@dataclass(frozen=True)
class Bands:
    """SpecMix bands per sample: ``[start, end)`` on the time and frequency axes, and the area kept."""

    time: torch.Tensor  # (B, time_bands, 2) long
    freq: torch.Tensor  # (B, freq_bands, 2) long
    kept: torch.Tensor  # (B,) float64

    def masks(self, freq_bins: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, F)`` and ``(B, T)`` bool masks of the bins and frames taken from the partner."""
        return _band_mask(self.freq, freq_bins), _band_mask(self.time, frames)


def _band_mask(bands: torch.Tensor, size: int) -> torch.Tensor:
    steps = torch.arange(size).view(1, 1, size)
    return ((steps >= bands[..., :1]) & (steps < bands[..., 1:])).any(dim=1)


def _draw_bands(
    cut: torch.Tensor, count: int, size: int, max_width: int, generator: torch.Generator
) -> torch.Tensor:
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
        inplace: bool = True,
    ) -> None:
        super().__init__(alpha, inplace=inplace)
        self.time_bands = check_positive_int(time_bands, "time_bands")
        self.freq_bands = check_positive_int(freq_bands, "freq_bands")
        self.max_time_width = None if max_time_width is None else check_positive_int(max_time_width, "max_time_width")
        self.max_freq_width = None if max_freq_width is None else check_positive_int(max_freq_width, "max_freq_width")

    def check_input(self, x: object, name: str = "inputs") -> torch.Tensor:
        x = super().check_input(x, name)
        limits = (("max_time_width", "time", x.shape[-1]), ("max_freq_width", "frequency", x.shape[-2]))
        for width, axis, size in limits:
            value = getattr(self, width)
            if value is not None and value > size:
                raise ValueError(f"{width}={value} is larger than the {axis} axis of {name} ({size}); use <= {size}")
        return x

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Bands:
        freq_bins, frames = x.shape[-2], x.shape[-1]
        lam = plan.lam if plan.per_sample else plan.lam[:1]
        cut = 1.0 - lam.sqrt()
        time = _draw_bands(cut, self.time_bands, frames, self.max_time_width or frames, generator)
        freq = _draw_bands(cut, self.freq_bands, freq_bins, self.max_freq_width or freq_bins, generator)
        fmask, tmask = _band_mask(freq, freq_bins), _band_mask(time, frames)
        cut_frames, cut_bins = tmask.sum(1).double(), fmask.sum(1).double()
        kept = 1.0 - (cut_frames * freq_bins + cut_bins * frames - cut_frames * cut_bins) / (freq_bins * frames)
        n = plan.batch_size
        return Bands(time.expand(n, -1, -1), freq.expand(n, -1, -1), kept.expand(n))

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Bands, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        active = plan.mixed
        inplace = self.writes_inplace(x)
        if self.vectorized(x):
            fmask, tmask = region.masks(x.shape[-2], x.shape[-1])
            mask = (fmask.unsqueeze(2) | tmask.unsqueeze(1)) & active.view(-1, 1, 1)
            mask = mask.view(x.shape[0], *([1] * (x.dim() - 3)), *x.shape[-2:]).to(x.device)
            partner = x[plan.index.to(x.device)]
            mixed = torch.where(mask, partner, x, out=x) if inplace else torch.where(mask, partner, x)
        else:
            time, freq = region.time.tolist(), region.freq.tolist()

            def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
                for start, end in time[i]:
                    dst[..., start:end].copy_(partner[..., start:end])
                for start, end in freq[i]:
                    dst[..., start:end, :].copy_(partner[..., start:end, :])

            mixed = apply_rowwise(x, plan.index.tolist(), active.tolist(), write, inplace=inplace)
        return mixed, torch.where(active, region.kept, torch.ones_like(region.kept))


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
        """Energy of each item over its valid samples, ``(B,)`` float64 on the CPU."""
        if vectorized:
            power = x.float().square()
            if valid is not None:
                power = power * _time_view(valid.mask, x).to(power.device)
            return power.flatten(1).sum(dim=1).double().cpu()
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
        """The label weight of each item's own target under ``label_weight`` (computed before mixing)."""
        if self.label_weight == "lam" or (self.label_weight == "duration" and valid is None):
            return plan.lam
        if self.label_weight == "duration":
            size = valid.counts()
            own, other = plan.lam * size, (1.0 - plan.lam) * size[plan.index]
        else:
            size = self._energies(x, valid, vectorized)
            own, other = plan.lam.square() * size, (1.0 - plan.lam).square() * size[plan.index]
        total = own + other
        return torch.where(total > 0, own / total.clamp(min=1e-300), plan.lam)

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: None, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace, vectorized = self.writes_inplace(x), self.vectorized(x)
        label = self.label_lam(x, plan, valid, vectorized)
        if valid is None:
            return lerp_rows(x, plan.index, plan.lam, inplace=inplace, vectorized=vectorized), label
        if vectorized:
            silenced = x * _time_view(valid.mask, x).to(device=x.device, dtype=x.dtype)
            weight = _row_view(1.0 - plan.lam, x).to(device=x.device, dtype=x.dtype)
            mixed = torch.lerp(silenced, silenced[plan.index.to(x.device)], weight)
            mixed = torch.where(_row_view(plan.mixed, x).to(x.device), mixed, x)
            return (x.copy_(mixed) if inplace else mixed), label
        lams, index = plan.lam.tolist(), plan.index.tolist()
        if valid.lengths is not None:  # prefix masks: slices, no temporaries
            lengths = valid.lengths.tolist()

            def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
                own, other = lengths[i], lengths[index[i]]
                dst[..., own:].zero_()
                dst.mul_(lams[i])
                dst[..., :other].add_(partner[..., :other], alpha=1.0 - lams[i])

        else:
            mask = valid.mask.to(device=x.device, dtype=x.dtype)

            def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
                dst.mul_(mask[i] * lams[i]).add_(partner * mask[index[i]], alpha=1.0 - lams[i])

        return apply_rowwise(x, index, plan.mixed.tolist(), write, inplace=inplace), label

    def __repr__(self) -> str:
        return f"WaveMix(alpha={self.alpha!r}, label_weight={self.label_weight!r}, inplace={self.inplace!r})"


class PadCollate:
    """A ``DataLoader`` ``collate_fn`` for variable-length audio: pad, then mix with lengths.

    Samples are ``(signal, label)`` with signals ``(T,)``, ``(C, T)`` or spectrograms
    ``(F, T)``/``(C, F, T)`` of varying T; they are right-padded with ``pad_value`` to
    the longest, and the mixer gets their lengths. Mixing runs in the worker, and
    each worker draws its own plans (:meth:`Mixer.seed_worker`).

    Example:
        >>> import multimix
        >>> collate = PadCollate(multimix.Mixer(WaveMix(1.0), num_classes=2, seed=0))
        >>> out = collate([(torch.randn(5), 0), (torch.randn(3), 1)])
        >>> out.inputs.shape, out.lengths.shape   # padded to the longest; mixed lengths
        (torch.Size([2, 5]), torch.Size([2]))
    """

    def __init__(self, mixer: Mixer, *, pad_value: float = 0.0) -> None:
        if not isinstance(mixer, Mixer):
            raise TypeError(f"mixer must be a multimix.Mixer, got {type(mixer).__name__}")
        self.mixer = mixer
        self.pad_value = float(pad_value)

    def __call__(self, samples: list[tuple[torch.Tensor, object]]) -> MixedBatch:
        if not samples:
            raise ValueError("samples is empty; a batch needs at least one (signal, label) pair")
        signals = [signal for signal, _ in samples]
        if any(not isinstance(s, torch.Tensor) or s.shape[:-1] != signals[0].shape[:-1] for s in signals):
            raise ValueError("signals must be tensors that differ only in their last (time) dimension")
        longest = max(s.shape[-1] for s in signals)
        batch = signals[0].new_full((len(signals), *signals[0].shape[:-1], longest), self.pad_value)
        for row, signal in zip(batch, signals, strict=True):
            row[..., : signal.shape[-1]].copy_(signal)
        lengths = torch.tensor([s.shape[-1] for s in signals])
        labels = torch.utils.data.default_collate([label for _, label in samples])
        self.mixer.seed_worker()
        return self.mixer(batch, labels, lengths=lengths)
