"""SaliencyMix (Uddin et al., ICLR 2021): CutMix centred on the partner's salient point; in ``multimix.image``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from multimix._kernels import paste_boxes, unchanged
from multimix.adapter import Adapter
from multimix.image import _IMAGE_INPUTS, box_masks
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["Halves", "SaliencyMix", "saliency_peaks"]


def saliency_peaks(x: torch.Tensor, grid: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column ``(B,)`` long of each image's most salient point, computed on ``x``'s device.

    Saliency is the gradient magnitude of the grey image sampled at the centres of at
    most ``grid`` cells per side (reading a fraction of the batch) and blurred 3x3:
    cheap, vectorised, no read-back. The peak cell's centre pixel is returned.

    The grey maps are pooled as the channels of one channels_last image, which torch's
    CPU pooling vectorises over channels (about 10x a batch of one-channel maps; same
    values); the central differences are not halved, which leaves the argmax as it is
    (barring squares that underflow, on images of values near 1e-20).
    """
    n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    sy, sx = max(1, height // grid), max(1, width // grid)
    gh, gw = height // sy, width // sx
    grey = x.detach()[..., sy // 2 :: sy, sx // 2 :: sx][..., :gh, :gw].reshape(n, -1, gh, gw).float().mean(1)
    grey = grey.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # (n, gh, gw), stored (gh, gw, n)
    image = grey.unsqueeze(0).as_strided((1, n, gh, gw), (n * gh * gw, 1, gw * n, n))  # channels_last strides
    blurred = F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
    padded = F.pad(blurred, (1, 1, 1, 1), mode="replicate")[0]
    dy, dx = padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1], padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
    peak = (dy.square() + dx.square()).permute(1, 2, 0).reshape(gh * gw, n).argmax(0)  # first peak, row-major
    rows = (torch.div(peak, gw, rounding_mode="floor") * sy + sy // 2).clamp(max=height - 1)
    return rows, ((peak % gw) * sx + sx // 2).clamp(max=width - 1)


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
