"""SpecMixup: spectrogram mixup in the right domain (power or log), and the base of the spectrogram adapters.

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
from typing import Literal

import torch

from multimix._checks import check_flag
from multimix._kernels import apply_rowwise, keep_unmixed, row_view, unchanged
from multimix.adapter import Adapter
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["SpecMixup", "logaddexp_mix"]

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
    if a.device.type == "cpu" and not (own.requires_grad or other.requires_grad):
        # max + log(1 + exp(-|own - other|)), in place: faster than torch.logaddexp on CPU (benchmarks/audio_mix.py),
        # same values; a gap of -inf - -inf (two silent values) is NaN, read as an infinite gap. In place, so
        # only where autograd keeps none of it (a trainable front end takes torch.logaddexp)
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

    def check_lengths(self) -> None:
        """Lengths run along the last axis: they fit time on it (``time_axis=-1``) only."""
        if self.time_axis == -2:
            raise ValueError(
                "lengths / padding masks run along the last axis, but time_axis=-2 puts time on the second-to-last; "
                "pass spectrograms (B, F, T) with time_axis=-1, or no lengths"
            )

    def _check_valid(self, valid: Validity | None) -> None:
        if valid is not None:
            self.check_lengths()


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
            (HF AST's ``input_values``); lengths run along the time axis. Given lengths,
            every frame is still blended by lam (padding too) and labelled by lam; the
            mix is valid over the union of both clips' frames (docs/audio.md).
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
        check_flag(db, "db")
        self.domain = domain
        self.db = db

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: None, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = self.writes_inplace(x)
        self._check_valid(valid)
        if plan.nothing_to_mix:
            return unchanged(x, inplace), plan.lam
        if self.vectorized(x):
            partner = x.index_select(0, plan.index)
            if self.domain == "power":
                mixed = logaddexp_mix(x, partner, row_view(plan.lam, x), db=self.db)
            else:  # a weighted sum, not lerp: log 0 (-inf) mixes to -inf instead of NaN
                own, other = self._log_weights(plan.lam, x.dtype)
                lam = self._log_label(plan.lam, own, other)
                partner.mul_(row_view(other, x))  # ours to scale
                own = row_view(own, x)
                if plan.nothing_to_keep and inplace:
                    return x.mul_(own).add_(partner), lam
                return keep_unmixed(x.mul(own).add_(partner), x, plan, inplace=inplace), lam
            return keep_unmixed(mixed, x, plan, inplace=inplace), plan.lam
        # the log domain's weights as the vectorised path rounds them, so both paths give the same values
        own, other = (self._log_weights(plan.lam, x.dtype) if self.domain == "log" else (None, None))
        lam = plan.lam if own is None else self._log_label(plan.lam, own, other)

        def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
            if self.domain == "power":
                dst.copy_(logaddexp_mix(dst, partner, plan.lam[i], db=self.db))
            else:
                dst.mul_(own[i]).add_(partner.mul(other[i]))

        mixed = apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), write, inplace=inplace)
        return mixed, lam

    @staticmethod
    def _log_label(lam: torch.Tensor, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """The share of its own sample that a log-domain mix holds: ``own / (own + other)`` of the weights as rounded
        in bfloat16 or float16 (where they need not sum to 1: up to 8% off at small lam); the drawn lam in wider
        dtypes, whose rounding is below float32's label precision."""
        if own.dtype not in (torch.bfloat16, torch.float16):
            return lam
        own, other = own.to(lam.dtype), other.to(lam.dtype)
        return own / (own + other)

    @staticmethod
    def _log_weights(lam: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The log domain's weights of each sample and of its partner, in ``dtype``, no smaller than its tiniest
        normal: a lam that rounds to 0 would turn -inf * 0 into NaN, where the limit of the mix is -inf."""
        tiny = torch.finfo(dtype).tiny
        return lam.to(dtype, copy=True).clamp_(min=tiny), torch.rsub(lam, 1.0).to(dtype).clamp_(min=tiny)

    def __repr__(self) -> str:
        return (
            f"SpecMixup(alpha={self.alpha!r}, domain={self.domain!r}, db={self.db!r}, time_axis={self.time_axis!r}, "
            f"inplace={self.inplace!r})"
        )
