"""FMix (Harris et al. 2020): a mask thresholded from low-frequency Fourier noise; in ``multimix.image``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from multimix._checks import check_probability
from multimix._kernels import apply_rowwise, keep_unmixed, row_view, unchanged, where_into
from multimix.adapter import Adapter
from multimix.image.mixup_cutmix import _IMAGE_INPUTS, image_label_shape, region_labels
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["FMix"]


def fourier_noise(count: int, height: int, width: int, decay_power: float, generator: torch.Generator | None,
                  grid: int = 32, *, device: torch.device | str | None = None) -> torch.Tensor:  # fmt: skip
    """``(count, h, w)`` low-frequency noise of an image ``(height, width)``, on a grid of at most ``grid`` per side.

    FMix's spectrum (Harris et al. 2020, ``make_low_freq_image``): Gaussian Fourier
    coefficients scaled by ``1 / max(f, 1 / max(height, width)) ** decay_power``, f in
    cycles per pixel of the full image. The field has almost no energy above a few
    cycles per image, so it is synthesised on a coarse grid (the same frequencies up to
    ``grid / 2`` cycles per image) and upsampled by the adapter: far less work. It is
    drawn on ``device`` (default: the generator's; ``meta`` takes no generator).
    """
    device = torch.device(device) if device is not None else getattr(generator, "device", None)
    if not isinstance(generator, torch.Generator) and not (generator is None and device == torch.device("meta")):
        raise ValueError(f"generator must be a torch.Generator (None only with device='meta'), got {generator!r}")
    gh, gw = min(height, grid), min(width, grid)
    scale = _spectrum_scale(gh, gw, height, width, float(decay_power), device)
    coefficients = torch.randn(count, gh, gw // 2 + 1, 2, generator=generator, device=device)
    return torch.fft.irfft2(torch.view_as_complex(coefficients.mul_(scale)), s=(gh, gw))


@functools.lru_cache(maxsize=64)
def _spectrum_scale(
    gh: int, gw: int, height: int, width: int, decay_power: float, device: torch.device
) -> torch.Tensor:
    """``(gh, gw // 2 + 1, 1)`` float32 amplitude of each coefficient of :func:`fourier_noise`, on ``device``.

    Computed on the host and copied once per device and size without waiting for the
    device (shared with every call, never written).
    """
    fy = torch.fft.fftfreq(gh, dtype=torch.float64) * gh / height
    fx = torch.fft.rfftfreq(gw, dtype=torch.float64) * gw / width
    freqs = (fy.view(-1, 1) ** 2 + fx.view(1, -1) ** 2).sqrt()
    scale = (1.0 / freqs.clamp(min=1.0 / max(height, width)) ** decay_power).float().unsqueeze(-1)
    return scale.to(device, non_blocking=True)


def _device_generator(device: torch.device, seed: int) -> torch.Generator | None:
    """A generator on ``device`` seeded with ``seed`` (a draw of the Mixer's), so device draws replay; None on meta."""
    if device.type == "meta":  # meta tensors hold no values: nothing to draw, and torch has no meta generator
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def _thresholds(ascending: torch.Tensor, kept: np.ndarray) -> torch.Tensor:
    """``(K, N)`` float32: above it ``round(kept[k, n] * size)`` of row n's values lie, midway between two of them.

    ``ascending`` ``(N, size)`` holds each row's values in ascending order, on any
    device; the positions are worked out on the host and the values gathered where the
    rows are. A row that keeps all (or none) of its values gets a threshold 1 below its
    smallest (1 above its largest). The two neighbours are averaged in float64.
    """
    count, size = ascending.shape
    rank = np.clip(np.round(kept.T * size), 0, size).astype(np.int64)  # (N, K): how many values lie above
    index = np.stack([size + 1 - rank, size - rank], axis=-1).reshape(count, -1)  # the rank-th largest, the next
    values = ascending.double()  # padded: position 0 lies 1 below the smallest, size + 1 1 above the largest
    padded = torch.cat([values[:, :1] - 1, values, values[:, -1:] + 1], dim=1)
    pairs = padded.gather(1, torch.from_numpy(index).to(ascending.device, non_blocking=True))
    return pairs.view(count, -1, 2).mean(-1).float().t()


class Fourier(NamedTuple):
    """FMix noise and thresholds: a pixel is the sample's own where the upsampled noise exceeds ``high``."""

    noise: torch.Tensor  # (B, h, w) float32 coarse noise (one map shared by the batch without per_sample)
    high: torch.Tensor  # (B,) float32: above it the mask is 1
    low: torch.Tensor  # (B,) float32: below it 0; linear in between (max_soft > 0), else low == high
    mask: torch.Tensor | None = None  # (B or 1, H, W), from FMix.prepare when label maps are mixed too


class FMix(Adapter):
    """Mix with a binary mask thresholded from low-frequency Fourier noise; lam is the mask's mean exactly.

    Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", 2020: the top lam
    of the noise values keep the sample, the rest come from the partner. The noise
    (:func:`fourier_noise`) is drawn by the Mixer's generator on the host, except a map
    per sample for a batch off the CPU (a GPU): there a device generator seeded from
    one draw of the Mixer's draws, transforms and sorts the maps (a run replays on the
    same kind of device and torch release, and no host work grows with the batch). The
    device upsamples the noise to (H, W) (bilinear), thresholds it and mixes, so the
    label weight is the mean of the mask actually applied. ``max_soft`` > 0 softens
    the edge over that fraction of pixels.

    Example:
        >>> import multimix
        >>> out = multimix.Mixer(FMix(1.0), num_classes=4, per_sample=True, seed=0)(
        ...     torch.rand(4, 3, 16, 16), torch.arange(4))
        >>> bool(torch.allclose(out.targets.sum(1), torch.ones(4)))
        True
    """

    # 3-D: one-channel maps such as spectrograms (B, F, T), whose masks or boxes span frequency and time
    min_ndim, max_ndim, layout, hf_inputs = 3, 5, "(B, H, W), (B, C, H, W) or (B, C, T, H, W)", _IMAGE_INPUTS

    def __init__(
        self, alpha: float = 1.0, decay_power: float = 3.0, max_soft: float = 0.0, *, inplace: bool = True
    ) -> None:
        super().__init__(alpha, inplace=inplace)
        if isinstance(decay_power, bool) or not isinstance(decay_power, (int, float)) or not decay_power > 0:
            raise ValueError(f"decay_power must be a number > 0 (the paper uses 3), got {decay_power!r}")
        self.decay_power = float(decay_power)
        self.max_soft = check_probability(max_soft, "max_soft")
        if self.max_soft > 0.5:
            raise ValueError(f"max_soft must be in [0, 0.5] (a fraction of pixels on each side), got {max_soft!r}")

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Fourier:
        lam = plan.region_lam().numpy()  # every sample's, or a mixed sample's for the batch's one map
        count, soft = len(lam), np.minimum(self.max_soft, np.minimum(lam, 1.0 - lam))
        if x.device.type == "cpu" or count == 1:  # one map costs the host less than the launches it would take
            noise = fourier_noise(count, x.shape[-2], x.shape[-1], self.decay_power, generator)
        else:  # a map per sample: drawn and transformed on the device from one host draw
            seed = int(torch.randint(2**62, (1,), generator=generator))
            noise = fourier_noise(count, x.shape[-2], x.shape[-1], self.decay_power,
                                  _device_generator(x.device, seed), device=x.device)  # fmt: skip
        ascending = noise.flatten(1).sort(dim=1).values
        thresholds = _thresholds(ascending, np.stack([lam - soft, lam + soft]) if self.max_soft else lam[None])
        return Fourier(noise, thresholds[0], thresholds[-1])  # one map for a per-batch draw, broadcast in apply

    def mask(self, x: torch.Tensor, region: Fourier) -> torch.Tensor:
        """``(B or 1, H, W)`` weight of each sample's own pixels (bool when binary), on ``x``'s device."""
        if region.mask is not None:  # computed once by prepare
            return region.mask
        noise = region.noise.unsqueeze(1)
        if noise.shape[-2:] != x.shape[-2:]:
            noise = F.interpolate(noise, size=x.shape[-2:], mode="bilinear", align_corners=False)
        noise, high, low = noise.squeeze(1), region.high.view(-1, 1, 1), region.low.view(-1, 1, 1)
        if self.max_soft == 0:
            return noise > high
        return ((noise - low) / (high - low).clamp(min=1e-12)).clamp(0, 1).to(x.dtype)

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Fourier, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = self.writes_inplace(x)
        if plan.nothing_to_mix:
            return unchanged(x, inplace), torch.ones_like(plan.lam)
        if not self.vectorized(x):
            write, lam = self.row_writer(x, plan, region)
            return apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), write, inplace=inplace), lam
        weight, lam = self._weight(x, plan, region)
        partner = x.index_select(0, plan.index)
        if self.max_soft:
            return keep_unmixed(torch.lerp(partner, x, weight), x, plan, inplace=inplace), lam
        if not plan.nothing_to_keep:  # unmixed samples keep every pixel: one selection still does it all
            weight = weight | ~row_view(plan.mixed, weight)
        return (where_into(~weight, partner, x) if inplace else torch.where(weight, x, partner)), lam

    def label_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return image_label_shape(x)

    def prepare(self, x: torch.Tensor, plan: MixPlan, region: Fourier, valid: Validity | None = None) -> Fourier:
        """The region with its mask, which the labels and the pixels then share."""
        return region if plan.nothing_to_mix else region._replace(mask=self.mask(x, region))

    @property
    def moves_whole_positions(self) -> bool:  # type: ignore[override]
        """A hard mask (``max_soft=0``) takes positions whole; a soft edge shares them."""
        return self.max_soft == 0

    def mix_label_map(
        self, labels: torch.Tensor, x: torch.Tensor, plan: MixPlan, region: Fourier
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask that mixes the pixels mixes the labels: whole positions when hard, shared on a soft edge."""
        if plan.nothing_to_mix:
            own = torch.ones(1, *x.shape[-2:], dtype=torch.bool, device=x.device)
        else:
            own, keep = self.mask(x, region), plan.mixed.view(-1, 1, 1)
            own = own | ~keep if own.dtype == torch.bool else torch.where(keep, own.float(), 1.0)
        return region_labels(labels, x, plan, own if self.max_soft == 0 else own.float())

    def row_writer(
        self, x: torch.Tensor, plan: MixPlan, region: Fourier, valid: Validity | None = None
    ) -> tuple[Callable[[torch.Tensor, int, torch.Tensor], None], torch.Tensor]:
        """The CPU loop's write: a sample takes its partner's values where its mask is 0 (blends a soft edge)."""
        weight, lam = self._weight(x, plan, region)
        shared = weight.shape[0] == 1

        def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
            w = weight[0 if shared else i]
            torch.lerp(partner, dst, w, out=dst) if self.max_soft else torch.where(w, dst, partner, out=dst)

        return write, lam

    def _weight(self, x: torch.Tensor, plan: MixPlan, region: Fourier) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask, shaped to broadcast over ``x``, and the label lam: the mean of the mask applied, exactly."""
        mask = self.mask(x, region)
        count = mask.flatten(1).sum(1, dtype=torch.int32 if mask.dtype == torch.bool else torch.float64)  # exact
        own = count.to(torch.float64) / mask[0].numel()
        lam = torch.where(plan.mixed, own.expand(x.shape[0]), 1.0)
        return mask.view(mask.shape[0], *([1] * (x.dim() - 3)), *mask.shape[1:]), lam
