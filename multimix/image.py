"""Image adapters: pixel mixup and CutMix on ``(B, C, H, W)`` (or video ``(B, C, T, H, W)``).

Mixup (Zhang et al., ICLR 2018) blends whole images; CutMix (Yun et al., ICCV 2019)
pastes a box of the partner. Both write into the input batch by default, which is
what makes them faster than timm's and torchvision's mixers (see
``docs/performance.md``); pass ``inplace=False`` for a new tensor.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from multimix._checks import check_generator, check_positive_int, check_probability, check_tensor
from multimix._kernels import apply_rowwise, keep_unmixed, lerp_rows, paste_boxes, row_view, unchanged
from multimix.adapter import Adapter
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = [
    "Boxes",
    "CutMix",
    "FMix",
    "Mixup",
    "ResizeMix",
    "SaliencyMix",
    "box_masks",
    "fourier_noise",
    "saliency_peaks",
    "sample_boxes",
]

_IMAGE_INPUTS = ("pixel_values",)


class Mixup(Adapter):
    """Blend each image with its partner: ``lam * x + (1 - lam) * x[index]``.

    Example:
        >>> import multimix
        >>> mixer = multimix.Mixer(Mixup(alpha=1.0), num_classes=10, seed=0)
        >>> out = mixer(torch.rand(8, 3, 32, 32), torch.arange(8))
        >>> out.inputs.shape, out.targets.shape
        (torch.Size([8, 3, 32, 32]), torch.Size([8, 10]))
    """

    min_ndim = 4
    max_ndim = 5
    layout = "(B, C, H, W) or (B, C, T, H, W)"
    hf_inputs = _IMAGE_INPUTS

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: None, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mixed = lerp_rows(x, plan, plan.lam, inplace=self.writes_inplace(x), vectorized=self.vectorized(x))
        return mixed, plan.lam


def sample_boxes(
    lam: torch.Tensor,
    height: int,
    width: int,
    generator: torch.Generator,
    *,
    minmax: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw CutMix boxes for cut fractions ``1 - lam`` and return them with the area kept.

    The centre is uniform over the image and the half sides are
    ``int(0.5 * sqrt(1 - lam) * side)`` (torchvision's rule); boxes are clipped at the
    border, so the kept area is what lam must be corrected to (the bug reported in
    clovaai/CutMix-PyTorch#1 and kornia#3077).

    With ``minmax=(low, high)`` (timm's ``cutmix_minmax``, after Darknet) lam only sets
    how many boxes are drawn: each side is uniform over the integers from
    ``int(low * side)`` to ``int(high * side) - 1`` (timm's range; ``int(low * side)``
    when that range is empty), and the box is placed uniformly inside the image.

    Returns:
        boxes ``(N, 4)`` long ``[y1, y2, x1, x2)`` and kept fraction ``(N,)`` float64.

    Example:
        >>> boxes, kept = sample_boxes(torch.tensor([0.75]), 8, 8, torch.Generator().manual_seed(0))
        >>> bool(kept == 1 - (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2]) / 64)
        True
    """
    lam = check_tensor(lam, "lam")
    if lam.dim() != 1 or lam.device.type != "cpu" or not bool(((lam >= 0) & (lam <= 1)).all()):
        raise ValueError(
            f"lam must be a (N,) CPU tensor of values in [0, 1] (boxes are drawn on the host), "
            f"got shape {tuple(lam.shape)} on {lam.device}"
        )
    check_positive_int(height, "height")
    check_positive_int(width, "width")
    check_generator(generator)
    if minmax is not None:
        return _minmax_boxes(lam.shape[0], height, width, _check_minmax(minmax), generator)
    cy = torch.randint(0, height, lam.shape, generator=generator).numpy()
    cx = torch.randint(0, width, lam.shape, generator=generator).numpy()
    ratio = 0.5 * np.sqrt(1.0 - lam.double().numpy())  # NumPy: a few host ops on N numbers cost less than torch's
    half_h = np.floor(ratio * height).astype(np.int64)
    half_w = np.floor(ratio * width).astype(np.int64)
    boxes = np.stack(
        [
            np.maximum(cy - half_h, 0),
            np.minimum(cy + half_h, height),
            np.maximum(cx - half_w, 0),
            np.minimum(cx + half_w, width),
        ],
        axis=1,
    )
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    return torch.from_numpy(boxes), torch.from_numpy(1.0 - area / (height * width))


def _check_minmax(minmax: object, name: str = "minmax") -> tuple[float, float]:
    """``(low, high)`` box side ratios with ``0 <= low <= high <= 1``, else a ValueError naming the value."""
    ok = isinstance(minmax, (tuple, list)) and len(minmax) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in minmax)
    if not ok or not 0 <= minmax[0] <= minmax[1] <= 1:
        raise ValueError(
            f"{name} must be (low, high) box side ratios with 0 <= low <= high <= 1, e.g. (0.2, 0.8), got {minmax!r}"
        )
    return float(minmax[0]), float(minmax[1])


def _minmax_boxes(
    count: int, height: int, width: int, minmax: tuple[float, float], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_boxes` with ``minmax``: sides uniform in timm's range, boxes inside the image."""
    sides = []
    for size in (height, width):
        low = int(size * minmax[0])
        high = max(int(size * minmax[1]), low + 1)  # randint's upper end is exclusive, as NumPy's in timm
        sides.append(torch.randint(low, high, (count,), generator=generator).numpy())
    cut_h, cut_w = sides
    u = torch.rand(2, count, generator=generator, dtype=torch.float64).numpy()
    y1 = np.floor(u[0] * (height - cut_h + 1)).astype(np.int64)  # uniform over 0 .. size - cut
    x1 = np.floor(u[1] * (width - cut_w + 1)).astype(np.int64)
    boxes = np.stack([y1, y1 + cut_h, x1, x1 + cut_w], axis=1)
    return torch.from_numpy(boxes), torch.from_numpy(1.0 - (cut_h * cut_w) / (height * width))


def box_masks(boxes: torch.Tensor, mixed: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    """``rows`` ``(B, H)`` and ``cols`` ``(B, W)`` bool masks of boxes ``(B, 4)``; unmixed samples get no rows."""
    rows = torch.arange(height, device=boxes.device).view(1, height)
    cols = torch.arange(width, device=boxes.device).view(1, width)
    row_mask = (rows >= boxes[:, :1]) & (rows < boxes[:, 1:2]) & mixed.view(-1, 1)
    return {"rows": row_mask, "cols": (cols >= boxes[:, 2:3]) & (cols < boxes[:, 3:])}


class Boxes(NamedTuple):
    """CutMix boxes of one batch: what :meth:`CutMix.draw_region` draws and :meth:`CutMix.apply` pastes."""

    boxes: torch.Tensor  # (B, 4) long [y1, y2, x1, x2)
    kept: torch.Tensor  # (B,) float64, the fraction of each image kept (1 for unmixed samples): the label weight
    rows: torch.Tensor | None = None  # (B, H) bool, rows inside each mixed sample's box (vectorised path)
    cols: torch.Tensor | None = None  # (B, W) bool, columns inside each box (vectorised path)
    box: tuple[int, int, int, int] | None = None  # the one box of a per-batch draw, as host ints


class CutMix(Adapter):
    """Paste a box of the partner into each image; lam is the area actually kept.

    One box for the batch, or one per sample when the mixer draws lam per sample.
    Boxes live on the last two dimensions (H, W).

    Args:
        alpha: lam ~ Beta(alpha, alpha) sets the box area (with ``minmax``, unused).
        minmax: timm's ``cutmix_minmax``: box sides drawn uniformly between these
            fractions of the image's (see :func:`sample_boxes`), lam being the area kept.
        correct_lam: the label weight is the area actually kept, after clipping at the
            border (default); ``False`` keeps the drawn lam, as timm's
            ``correct_lam=False``. With ``minmax`` the kept area is the only lam there is.
        inplace: see :class:`~multimix.adapter.Adapter`.

    Example:
        >>> import multimix
        >>> mixer = multimix.Mixer(CutMix(alpha=1.0), num_classes=10, per_sample=True, seed=0)
        >>> out = mixer(torch.rand(4, 3, 32, 32), torch.arange(4))
        >>> bool(torch.allclose(out.targets.sum(1), torch.ones(4)))
        True
    """

    min_ndim = 4
    max_ndim = 5
    layout = "(B, C, H, W) or (B, C, T, H, W)"
    hf_inputs = _IMAGE_INPUTS

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        minmax: tuple[float, float] | None = None,
        correct_lam: bool = True,
        inplace: bool = True,
    ) -> None:
        super().__init__(alpha, inplace=inplace)
        if not isinstance(correct_lam, bool):
            raise TypeError(f"correct_lam must be a bool, got {type(correct_lam).__name__} {correct_lam!r}")
        self.minmax = None if minmax is None else _check_minmax(minmax)
        if self.minmax is not None and not correct_lam:
            raise ValueError(
                "correct_lam=False keeps the drawn lam, but with minmax the box is not drawn from lam: its area "
                "is the label weight; leave correct_lam=True (timm ignores correct_lam with cutmix_minmax)"
            )
        self.correct_lam = correct_lam

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Boxes:
        lam = plan.lam if plan.per_sample else plan.lam[:1]
        height, width = x.shape[-2], x.shape[-1]
        boxes, kept = sample_boxes(lam, height, width, generator, minmax=self.minmax)
        n = plan.batch_size
        if not self.correct_lam:
            kept = plan.lam  # timm's correct_lam=False: the label weight is the lam drawn, clipped box or not
        kept = torch.where(plan.mixed, kept, 1.0)  # the label weight: unmixed samples keep all their pixels
        if not plan.per_sample:
            return Boxes(boxes.expand(n, 4), kept, box=tuple(boxes[0].tolist()))
        if not self.vectorized(x):
            return Boxes(boxes, kept)
        # Row and column masks are built here on the host and moved with the plan (one copy);
        # the device only forms their outer product.
        return Boxes(boxes, kept, **box_masks(boxes, plan.mixed, height, width))

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Boxes, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        region = Boxes(*region)
        if self.vectorized(x) and region.box is None and region.rows is None:  # boxes given by hand
            region = region._replace(**box_masks(region.boxes, plan.mixed, x.shape[-2], x.shape[-1]))
        mixed = paste_boxes(
            x, plan, region.boxes, inplace=self.writes_inplace(x), vectorized=self.vectorized(x),
            rows=region.rows, cols=region.cols, box=region.box,
        )  # fmt: skip
        return mixed, region.kept

    def __repr__(self) -> str:
        extra = "" if self.minmax is None else f", minmax={self.minmax!r}"
        extra += "" if self.correct_lam else ", correct_lam=False"
        return f"CutMix(alpha={self.alpha!r}{extra}, inplace={self.inplace!r})"


# ----------------------------------------------------------------------------- ResizeMix, FMix, SaliencyMix


def _nearest_sources(size: int, out: int) -> torch.Tensor:
    """Source index of each of ``out`` steps resized from ``size`` (F.interpolate's "nearest", in float32 as torch)."""
    scale = torch.tensor(size, dtype=torch.float32) / out
    return (torch.arange(out, dtype=torch.float32) * scale).floor().long().clamp(max=size - 1)


class Resized(NamedTuple):
    """ResizeMix boxes, their label weight, and for each box the partner's source rows and columns."""

    boxes: torch.Tensor  # (B, 4) long [y1, y2, x1, x2)
    kept: torch.Tensor  # (B,) float64, the fraction of each image kept (the label weight)
    rows: torch.Tensor  # (B, H) bool, rows inside each mixed sample's box
    cols: torch.Tensor  # (B, W) bool
    row_source: torch.Tensor  # (B, H) long, the partner row shown at each row of the box (0 outside)
    col_source: torch.Tensor  # (B, W) long
    box: tuple[int, int, int, int] | None = None  # the one box of a per-batch draw, as host ints


class ResizeMix(Adapter):
    """Paste the whole partner, resized (nearest) into a box, into each image; lam is the area kept.

    Qin et al., "ResizeMix: Mixing Data with Preserved Object Information and True
    Labels", 2020. The box side is ``tau`` times the image's, ``tau = scale[0] + lam *
    (scale[1] - scale[0])`` with the plan's lam (OpenMixup's rule), centred uniformly and
    clipped at the border; the partner is resized to the clipped box.

    Example:
        >>> import multimix
        >>> out = multimix.Mixer(ResizeMix(1.0), num_classes=4, per_sample=True, seed=0)(
        ...     torch.rand(4, 3, 16, 16), torch.arange(4))
        >>> bool(torch.allclose(out.targets.sum(1), torch.ones(4)))
        True
    """

    min_ndim, max_ndim, layout, hf_inputs = 4, 5, "(B, C, H, W) or (B, C, T, H, W)", _IMAGE_INPUTS

    def __init__(self, alpha: float = 1.0, *, scale: tuple[float, float] = (0.1, 0.8), inplace: bool = True) -> None:
        super().__init__(alpha, inplace=inplace)
        if not (isinstance(scale, (tuple, list)) and len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1 (box side / image), got {scale!r}")
        self.scale = (float(scale[0]), float(scale[1]))

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Resized:
        height, width = x.shape[-2], x.shape[-1]
        lam = (plan.lam if plan.per_sample else plan.lam[:1]).numpy()
        tau = self.scale[0] + lam * (self.scale[1] - self.scale[0])
        cy = torch.randint(0, height, lam.shape, generator=generator).numpy()
        cx = torch.randint(0, width, lam.shape, generator=generator).numpy()
        cut_h, cut_w = (height * tau).astype(np.int64), (width * tau).astype(np.int64)
        y1, x1 = np.clip(cy - cut_h // 2, 0, height), np.clip(cx - cut_w // 2, 0, width)
        y2, x2 = np.clip(cy + cut_h // 2, 0, height), np.clip(cx + cut_w // 2, 0, width)
        boxes = torch.from_numpy(np.stack([y1, y2, x1, x2], axis=1)).expand(plan.batch_size, 4)
        kept = 1.0 - torch.from_numpy((y2 - y1) * (x2 - x1) / (height * width)).expand(plan.batch_size)
        row_source = torch.zeros(plan.batch_size, height, dtype=torch.long)
        col_source = torch.zeros(plan.batch_size, width, dtype=torch.long)
        for i, (a, b, c, d) in enumerate(boxes.tolist() if plan.per_sample else boxes[:1].tolist()):
            rows = slice(None) if not plan.per_sample else i
            if b > a and d > c:
                row_source[rows, a:b] = _nearest_sources(height, b - a)
                col_source[rows, c:d] = _nearest_sources(width, d - c)
        box = None if plan.per_sample else tuple(boxes[0].tolist())
        return Resized(boxes, torch.where(plan.mixed, kept, 1.0), **box_masks(boxes, plan.mixed, height, width),
                       row_source=row_source, col_source=col_source, box=box)  # fmt: skip

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Resized, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = self.writes_inplace(x)
        if not plan.any_mixed:
            return unchanged(x, inplace), region.kept
        if region.box is not None:  # one box: resize the batch once, read and write only the box
            y1, y2, x1, x2 = region.box
            out = x if inplace else x.clone()
            if y2 > y1 and x2 > x1:
                rows, cols = region.row_source[0, y1:y2], region.col_source[0, x1:x2]
                resized = x.index_select(-2, rows).index_select(-1, cols).index_select(0, plan.index)
                window = out[..., y1:y2, x1:x2]
                if not plan.all_mixed:
                    resized = torch.where(row_view(plan.mixed, resized), resized, window)
                window.copy_(resized)
            return out, region.kept
        if self.vectorized(x):
            n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
            flat = x.reshape(n, -1, height, width)
            resized = flat[plan.index.view(n, 1, 1), :, region.row_source.view(n, height, 1),
                           region.col_source.view(n, 1, width)].permute(0, 3, 1, 2).reshape(x.shape)  # fmt: skip
            mask = (region.rows.unsqueeze(2) & region.cols.unsqueeze(1)).view(n, *([1] * (x.dim() - 3)), height, width)
            return (torch.where(mask, resized, x, out=x) if inplace else torch.where(mask, resized, x)), region.kept
        boxes, row_source, col_source = region.boxes.tolist(), region.row_source, region.col_source

        def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
            y1, y2, x1, x2 = boxes[i]  # whole rows first (memcpy), then the columns: faster than interpolate here
            rows, cols = row_source[i, y1:y2], col_source[i, x1:x2]
            dst[..., y1:y2, x1:x2].copy_(partner.index_select(-2, rows).index_select(-1, cols))

        return apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), write, inplace=inplace), region.kept


def fourier_noise(count: int, height: int, width: int, decay_power: float, generator: torch.Generator,
                  grid: int = 32) -> torch.Tensor:  # fmt: skip
    """``(count, h, w)`` low-frequency noise of an image ``(height, width)``, on a grid of at most ``grid`` per side.

    FMix's spectrum (Harris et al. 2020, ``make_low_freq_image``): Gaussian Fourier
    coefficients scaled by ``1 / max(f, 1 / max(height, width)) ** decay_power``, f in
    cycles per pixel of the full image. The field has almost no energy above a few
    cycles per image, so it is synthesised on a coarse grid (the same frequencies up to
    ``grid / 2`` cycles per image) and upsampled by the adapter: far less host work.
    """
    gh, gw = min(height, grid), min(width, grid)
    fy = torch.fft.fftfreq(gh, dtype=torch.float64) * gh / height
    fx = torch.fft.rfftfreq(gw, dtype=torch.float64) * gw / width
    freqs = (fy.view(-1, 1) ** 2 + fx.view(1, -1) ** 2).sqrt()
    scale = 1.0 / freqs.clamp(min=1.0 / max(height, width)) ** decay_power
    coefficients = torch.randn(count, gh, gw // 2 + 1, 2, generator=generator)
    spectrum = torch.view_as_complex(coefficients * scale.float().unsqueeze(-1))
    return torch.fft.irfft2(spectrum, s=(gh, gw))


class Fourier(NamedTuple):
    """FMix noise and thresholds: a pixel is the sample's own where the upsampled noise exceeds ``high``."""

    noise: torch.Tensor  # (B, h, w) float32 coarse noise (one map shared by the batch without per_sample)
    high: torch.Tensor  # (B,) float32: above it the mask is 1
    low: torch.Tensor  # (B,) float32: below it 0; linear in between (max_soft > 0), else low == high


class FMix(Adapter):
    """Mix with a binary mask thresholded from low-frequency Fourier noise; lam is the mask's mean exactly.

    Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", 2020: the top lam
    of the noise values keep the sample, the rest come from the partner. The noise is
    drawn on the CPU (:func:`fourier_noise`); the device upsamples it to (H, W)
    (bilinear), thresholds it and mixes, so the label weight is the mean of the mask
    actually applied. ``max_soft`` > 0 softens the edge over that fraction of pixels.

    Example:
        >>> import multimix
        >>> out = multimix.Mixer(FMix(1.0), num_classes=4, per_sample=True, seed=0)(
        ...     torch.rand(4, 3, 16, 16), torch.arange(4))
        >>> bool(torch.allclose(out.targets.sum(1), torch.ones(4)))
        True
    """

    min_ndim, max_ndim, layout, hf_inputs = 4, 5, "(B, C, H, W) or (B, C, T, H, W)", _IMAGE_INPUTS

    def __init__(
        self, alpha: float = 1.0, *, decay_power: float = 3.0, max_soft: float = 0.0, inplace: bool = True
    ) -> None:
        super().__init__(alpha, inplace=inplace)
        if isinstance(decay_power, bool) or not isinstance(decay_power, (int, float)) or not decay_power > 0:
            raise ValueError(f"decay_power must be a number > 0 (the paper uses 3), got {decay_power!r}")
        self.decay_power = float(decay_power)
        self.max_soft = check_probability(max_soft, "max_soft")
        if self.max_soft > 0.5:
            raise ValueError(f"max_soft must be in [0, 0.5] (a fraction of pixels on each side), got {max_soft!r}")

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Fourier:
        count = plan.batch_size if plan.per_sample else 1
        noise = fourier_noise(count, x.shape[-2], x.shape[-1], self.decay_power, generator)
        ordered = noise.flatten(1).sort(dim=1, descending=True).values.double()
        size = ordered.shape[1]
        lam = plan.lam[:count]
        soft = np.minimum(self.max_soft, np.minimum(lam.numpy(), 1.0 - lam.numpy()))
        padded = torch.cat([ordered[:, :1] + 1, ordered, ordered[:, -1:] - 1], dim=1)  # ranks 0 and size+1 sit outside

        def threshold(kept: np.ndarray) -> torch.Tensor:  # midway between the kept-th and the next value
            rank = torch.from_numpy(np.clip(np.round(kept * size), 0, size).astype(np.int64)).view(-1, 1)
            return ((padded.gather(1, rank) + padded.gather(1, rank + 1)) / 2).squeeze(1).float()

        high, low = threshold(lam.numpy() - soft), threshold(lam.numpy() + soft)
        return Fourier(noise, high, low)  # one map for a per-batch draw, broadcast on the device

    def mask(self, x: torch.Tensor, region: Fourier) -> torch.Tensor:
        """``(B or 1, H, W)`` weight of each sample's own pixels (bool when binary), on ``x``'s device."""
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
        if not plan.any_mixed:
            return unchanged(x, inplace), torch.ones_like(plan.lam)
        mask = self.mask(x, region)
        own = mask.flatten(1).sum(1, dtype=torch.float64) / mask[0].numel()  # the mask's mean, exactly
        lam = torch.where(plan.mixed, own.expand(x.shape[0]), 1.0)
        weight = mask.view(mask.shape[0], *([1] * (x.dim() - 3)), *mask.shape[1:])
        if self.vectorized(x):
            partner = x.index_select(0, plan.index)
            mixed = torch.lerp(partner, x, weight) if self.max_soft else torch.where(weight, x, partner)
            return keep_unmixed(mixed, x, plan, inplace=inplace), lam
        shared = weight.shape[0] == 1

        def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
            w = weight[0 if shared else i]
            torch.lerp(partner, dst, w, out=dst) if self.max_soft else torch.where(w, dst, partner, out=dst)

        return apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), write, inplace=inplace), lam


def saliency_peaks(x: torch.Tensor, grid: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column ``(B,)`` long of each image's most salient point, computed on ``x``'s device.

    Saliency is the gradient magnitude of the grey image sampled at the centres of at
    most ``grid`` cells per side (reading a fraction of the batch) and blurred 3x3:
    cheap, vectorised, no read-back. The peak cell's centre pixel is returned.
    """
    n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    sy, sx = max(1, height // grid), max(1, width // grid)
    gh, gw = height // sy, width // sx
    grey = x.detach()[..., sy // 2 :: sy, sx // 2 :: sx][..., :gh, :gw].reshape(n, -1, gh, gw).float()
    grey = F.avg_pool2d(grey.mean(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=False).squeeze(1)
    padded = F.pad(grey.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    dy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / 2
    dx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / 2
    peak = (dy.square() + dx.square()).flatten(1).argmax(1)
    cells = grey.shape[-1]
    rows = (torch.div(peak, cells, rounding_mode="floor") * sy + sy // 2).clamp(max=height - 1)
    return rows, ((peak % cells) * sx + sx // 2).clamp(max=width - 1)


class Halves(NamedTuple):
    """SaliencyMix half box sides ``(B,)`` long, drawn on the host from lam; the centres come from the device."""

    half_h: torch.Tensor
    half_w: torch.Tensor


class SaliencyMix(Adapter):
    """CutMix with the box centred on the partner's most salient point; lam is the area kept.

    Uddin et al., "SaliencyMix: A Saliency Guided Data Augmentation Strategy for Better
    Regularization", ICLR 2021. The box sides follow CutMix (``sqrt(1 - lam)`` of each
    side, clipped at the border); the centre is :func:`saliency_peaks` of the partner,
    so the boxes, their masks and the kept area are computed on the device from index
    arithmetic, never read back.

    Example:
        >>> import multimix
        >>> out = multimix.Mixer(SaliencyMix(1.0), num_classes=4, per_sample=True, seed=0)(
        ...     torch.rand(4, 3, 16, 16), torch.arange(4))
        >>> bool(torch.allclose(out.targets.sum(1), torch.ones(4)))
        True
    """

    min_ndim, max_ndim, layout, hf_inputs = 4, 5, "(B, C, H, W) or (B, C, T, H, W)", _IMAGE_INPUTS

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Halves:
        ratio = 0.5 * np.sqrt(1.0 - plan.lam.numpy())
        height, width = x.shape[-2], x.shape[-1]
        return Halves(torch.from_numpy(np.floor(ratio * height).astype(np.int64)),
                      torch.from_numpy(np.floor(ratio * width).astype(np.int64)))  # fmt: skip

    def boxes(self, x: torch.Tensor, plan: MixPlan, region: Halves) -> torch.Tensor:
        """``(B, 4)`` long ``[y1, y2, x1, x2)`` on ``x``'s device: each box around its partner's peak."""
        rows, cols = saliency_peaks(x)
        cy, cx = rows.index_select(0, plan.index), cols.index_select(0, plan.index)
        height, width = x.shape[-2], x.shape[-1]
        y1, y2 = (cy - region.half_h).clamp(min=0), (cy + region.half_h).clamp(max=height)
        return torch.stack([y1, y2, (cx - region.half_w).clamp(min=0), (cx + region.half_w).clamp(max=width)], dim=1)

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Halves, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = self.writes_inplace(x)
        if not plan.any_mixed:
            return unchanged(x, inplace), torch.ones_like(plan.lam)
        boxes = self.boxes(x, plan, region)
        area = ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).double() / (x.shape[-2] * x.shape[-1])
        lam = torch.where(plan.mixed, 1.0 - area, 1.0)
        vectorized = self.vectorized(x)
        masks = box_masks(boxes, plan.mixed, x.shape[-2], x.shape[-1]) if vectorized else {}
        mixed = paste_boxes(x, plan, boxes, inplace=inplace, vectorized=vectorized, **masks)
        return mixed, lam
