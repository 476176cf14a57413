"""SaliencyMix (Uddin et al., ICLR 2021): CutMix centred on the partner's salient point; in ``multimix.image``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from multimix._kernels import box_writer, paste_boxes, unchanged
from multimix.adapter import Adapter
from multimix.image.boxes import box_masks
from multimix.image.mixup_cutmix import _IMAGE_INPUTS, image_label_shape, region_labels
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["SaliencyMix"]


def _cells(height: int, width: int, grid: int) -> tuple[int, int, int, int]:
    """Cell strides ``sy, sx`` and counts ``gh, gw`` of at most ``grid`` saliency cells per side."""
    sy, sx = max(1, height // grid), max(1, width // grid)
    return sy, sx, height // sy, width // sx


def _peak_cells(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``(B,)`` long: each image's saliency cell (row-major) of largest squared gradient of its blurred grey cells.

    The central differences are not halved, which leaves the argmax as it is (barring
    squares that underflow, on images of values near 1e-20). Ties go to the first cell.
    """
    sy, sx, gh, gw = _cells(x.shape[-2], x.shape[-1], grid)
    sampled = x.detach()[..., sy // 2 :: sy, sx // 2 :: sx][..., :gh, :gw].reshape(x.shape[0], -1, gh, gw).float()
    blurred = F.avg_pool2d(sampled.mean(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=False)
    padded = F.pad(blurred, (1, 1, 1, 1), mode="replicate")[:, 0]
    dy, dx = padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1], padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
    return dy.square().add_(dx.square()).flatten(1).argmax(1)


def _peak_centres(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``(B, 4)`` long ``[row, row, col, col]`` of each image's peak cell centre pixel (inside the image)."""
    sy, sx, _, gw = _cells(x.shape[-2], x.shape[-1], grid)
    cells = _peak_cells(x, grid)
    rows = cells.div(gw, rounding_mode="floor").mul_(sy).add_(sy // 2)
    cols = cells.remainder(gw).mul_(sx).add_(sx // 2)
    return torch.stack([rows, rows, cols, cols], dim=1)


def saliency_peaks(x: torch.Tensor, grid: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column ``(B,)`` long of each image's most salient point, computed on ``x``'s device.

    Saliency is the gradient magnitude of the grey image sampled at the centres of at
    most ``grid`` cells per side (reading a fraction of the batch) and blurred 3x3:
    cheap, vectorised, no read-back. The peak cell's centre pixel is returned (the
    first peak in row-major order).
    """
    centres = _peak_centres(x, grid)
    return centres[:, 0], centres[:, 2]


class Halves(NamedTuple):
    """A SaliencyMix draw: half box sides from lam, on the host; the box centres come from the device."""

    offsets: torch.Tensor  # (B, 4) long [-half_h, half_h, -half_w, half_w]; 0 for unmixed samples (an empty box)
    limits: torch.Tensor  # (2, 4) long: [0, 0, 0, 0] and [H, H, W, W], the clip of each box coordinate
    boxes: torch.Tensor | None = None  # (B, 4) long, from SaliencyMix.prepare when label maps are mixed too


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

    moves_whole_positions = True

    # 3-D: one-channel maps such as spectrograms (B, F, T), whose masks or boxes span frequency and time
    min_ndim, max_ndim, layout, hf_inputs = 3, 5, "(B, H, W), (B, C, H, W) or (B, C, T, H, W)", _IMAGE_INPUTS

    grid = 32  # saliency cells per side at most (saliency_peaks)

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Halves:
        ratio = np.where(plan.mixed.numpy(), 0.5 * np.sqrt(1.0 - plan.lam.numpy()), 0.0)
        height, width = x.shape[-2], x.shape[-1]
        half_h, half_w = np.floor(ratio * height).astype(np.int64), np.floor(ratio * width).astype(np.int64)
        offsets = np.stack([-half_h, half_h, -half_w, half_w], axis=1)
        limits = np.array([[0, 0, 0, 0], [height, height, width, width]], dtype=np.int64)
        return Halves(torch.from_numpy(offsets), torch.from_numpy(limits))

    def boxes(self, x: torch.Tensor, plan: MixPlan, region: Halves) -> torch.Tensor:
        """``(B, 4)`` long ``[y1, y2, x1, x2)`` on ``x``'s device: each box around its partner's peak, clipped."""
        if region.boxes is not None:  # computed once by prepare
            return region.boxes
        centre = _peak_centres(x, self.grid).index_select(0, plan.index)
        return torch.clamp(centre.add_(region.offsets), min=region.limits[0], max=region.limits[1])

    def _boxes_and_lam(self, x: torch.Tensor, plan: MixPlan, region: Halves) -> tuple[torch.Tensor, torch.Tensor]:
        """The boxes and the label lam, the area kept (unmixed samples have empty boxes: lam 1, nothing pasted)."""
        boxes = self.boxes(x, plan, region)
        sides = boxes[:, 1::2] - boxes[:, ::2]
        return boxes, 1.0 - sides.prod(1).double().div_(x.shape[-2] * x.shape[-1])

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Halves, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = self.writes_inplace(x)
        if plan.nothing_to_mix:
            return unchanged(x, inplace), torch.ones_like(plan.lam)
        boxes, lam = self._boxes_and_lam(x, plan, region)
        vectorized = self.vectorized(x)
        masks = box_masks(boxes, None, x.shape[-2], x.shape[-1]) if vectorized else {}
        return paste_boxes(x, plan, boxes, inplace=inplace, vectorized=vectorized, **masks), lam

    def label_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return image_label_shape(x)

    def prepare(self, x: torch.Tensor, plan: MixPlan, region: Halves, valid: Validity | None = None) -> Halves:
        """The region with its boxes (the saliency peaks of the unmixed ``x``), which labels and pixels then share."""
        return region if plan.nothing_to_mix else region._replace(boxes=self.boxes(x, plan, region))

    def mix_label_map(
        self, labels: torch.Tensor, x: torch.Tensor, plan: MixPlan, region: Halves
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The boxes of the unmixed ``x`` (around each partner's peak) paste the labels."""
        boxes, _ = self._boxes_and_lam(x, plan, region)
        masks = box_masks(boxes, None, x.shape[-2], x.shape[-1])
        return region_labels(labels, x, plan, ~(masks["rows"].unsqueeze(2) & masks["cols"].unsqueeze(1)))

    def row_writer(
        self, x: torch.Tensor, plan: MixPlan, region: Halves, valid: Validity | None = None
    ) -> tuple[Callable[[torch.Tensor, int, torch.Tensor], None], torch.Tensor]:
        """The CPU loop's write: CutMix's box copy, on the boxes computed for the batch."""
        boxes, lam = self._boxes_and_lam(x, plan, region)
        return box_writer(boxes), lam
