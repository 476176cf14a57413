"""ResizeMix (Qin et al. 2020): the whole partner, resized into a box; in ``multimix.image``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from multimix._kernels import apply_rowwise, unchanged, where_into
from multimix.adapter import Adapter
from multimix.image.boxes import kept_where_mixed
from multimix.image.mixup_cutmix import _IMAGE_INPUTS, image_label_shape, region_labels
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["ResizeMix"]


class Resized(NamedTuple):
    """ResizeMix boxes, their label weight, and each box's resize scale (rows, columns)."""

    boxes: torch.Tensor  # (B, 4) long [y1, y2, x1, x2)
    kept: torch.Tensor  # (B,) float64, the fraction of each image kept (the label weight)
    scale: torch.Tensor | None = None  # (B, 2) float32 image side / box side; None: computed from the boxes


def _box_scale(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, 2)`` float32 ``size / side`` of each box's rows and columns (an empty side counts as 1).

    The step of torch's nearest resize in float32 (its rule for every dtype on CUDA),
    computed where the boxes are.
    """
    sides = (boxes[:, 1::2] - boxes[:, 0::2]).clamp(min=1).float()
    sizes = torch.empty_like(sides)
    sizes[:, 0], sizes[:, 1] = height, width
    return sizes.div_(sides)


def _source_maps(region: Resized, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Each box's ``rows`` ``(B, H)`` and ``cols`` ``(B, W)`` bool, and the partner's ``row_source`` / ``col_source``.

    The source of position k of a box starting at ``start`` is torch's float32 nearest
    rule ``floor((k - start) * scale)``, 0 outside the box. Rows and columns are
    computed together, with static shapes, where the boxes are.
    """
    boxes = region.boxes
    scale = _box_scale(boxes, height, width) if region.scale is None else region.scale
    positions = torch.arange(max(height, width), dtype=torch.float32, device=boxes.device)
    steps = positions - boxes[:, 0::2, None]  # (B, 2, L) float32, exact: position inside each box's rows, columns
    inside = (steps >= 0) & (positions < boxes[:, 1::2, None])
    sources = torch.where(inside, steps.mul_(scale.unsqueeze(-1)).floor_(), 0).long()
    return inside[:, 0, :height], inside[:, 1, :width], sources[:, 0, :height], sources[:, 1, :width]


def _resized_partners(
    x: torch.Tensor, index: torch.Tensor, row_source: torch.Tensor, col_source: torch.Tensor
) -> torch.Tensor:
    """``x[index[n], ..., row_source[n, h], col_source[n, w]]`` for every sample n: each partner, resized by the maps.

    The partner and its rows come in one ``index_select`` of whole rows, of the
    ``(N * C * H, W)`` view of a contiguous batch or the ``(N * H, W * C)`` view of a
    channels_last one; then one gather picks the columns. Other layouts gather the
    partners, then the rows.
    """
    n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        pixels = x.permute(0, 2, 3, 1)  # (N, H, W, C), contiguous
        rows = torch.add(row_source, index.view(n, 1), alpha=height).flatten()  # partner's row of (N * H, W * C)
        rows = pixels.reshape(n * height, -1).index_select(0, rows).view(pixels.shape)
        return rows.gather(2, col_source.view(n, 1, width, 1).expand(pixels.shape)).permute(0, 3, 1, 2)
    planes = x.reshape(n, -1, height, width)
    if x.is_contiguous():
        per = planes.shape[1]  # the partner's row of (N * C * H, W): row + H * (C * partner + channel)
        rows = torch.add(row_source, index.view(n, 1), alpha=per * height).view(n, 1, height)
        rows = rows + torch.arange(0, per * height, height, device=x.device).view(1, per, 1)
        resized = planes.reshape(-1, width).index_select(0, rows.flatten()).view(planes.shape)
    else:
        partner = planes.index_select(0, index)
        resized = partner.gather(2, row_source.view(n, 1, height, 1).expand(planes.shape))
    return resized.gather(3, col_source.view(n, 1, 1, width).expand(planes.shape)).view(x.shape)


class ResizeMix(Adapter):
    """Paste the whole partner, resized (nearest) into a box, into each image; lam is the area kept.

    Qin et al., "ResizeMix: Mixing Data with Preserved Object Information and True
    Labels", 2020. The box side is ``tau`` times the image's, ``tau = scale[0] + lam *
    (scale[1] - scale[0])`` with the plan's lam (OpenMixup's rule), centred uniformly and
    clipped at the border; the partner is resized to the clipped box by torch's float32
    nearest rule, as a gather of fixed shape (one box for the batch or one per sample).

    Example:
        >>> import multimix
        >>> out = multimix.Mixer(ResizeMix(1.0), num_classes=4, per_sample=True, seed=0)(
        ...     torch.rand(4, 3, 16, 16), torch.arange(4))
        >>> bool(torch.allclose(out.targets.sum(1), torch.ones(4)))
        True
    """

    moves_whole_positions = True

    min_ndim, max_ndim, layout, hf_inputs = 4, 5, "(B, C, H, W) or (B, C, T, H, W)", _IMAGE_INPUTS

    def __init__(self, alpha: float = 1.0, scale: tuple[float, float] = (0.1, 0.8), *, inplace: bool = True) -> None:
        super().__init__(alpha, inplace=inplace)
        if not (isinstance(scale, (tuple, list)) and len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1 (box side / image), got {scale!r}")
        self.scale = (float(scale[0]), float(scale[1]))

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Resized:
        height, width = x.shape[-2], x.shape[-1]
        lam = plan.region_lam().numpy()
        tau = self.scale[0] + lam * (self.scale[1] - self.scale[0])
        cy = torch.randint(0, height, lam.shape, generator=generator).numpy()
        cx = torch.randint(0, width, lam.shape, generator=generator).numpy()
        cut_h, cut_w = (height * tau).astype(np.int64), (width * tau).astype(np.int64)
        y1, x1 = np.clip(cy - cut_h // 2, 0, height), np.clip(cx - cut_w // 2, 0, width)
        y2, x2 = np.clip(cy + cut_h // 2, 0, height), np.clip(cx + cut_w // 2, 0, width)
        boxes = torch.from_numpy(np.stack([y1, y2, x1, x2], axis=1)).expand(plan.batch_size, 4)
        kept = 1.0 - torch.from_numpy((y2 - y1) * (x2 - x1) / (height * width)).expand(plan.batch_size)
        return Resized(boxes, kept_where_mixed(plan, kept), _box_scale(boxes, height, width))

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Resized, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        region, inplace = Resized(*region), self.writes_inplace(x)
        if plan.nothing_to_mix:
            return unchanged(x, inplace), region.kept
        if not self.vectorized(x):
            write, kept = self.row_writer(x, plan, region)
            return apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), write, inplace=inplace), kept
        height, width = x.shape[-2], x.shape[-1]
        rows, cols, row_source, col_source = _source_maps(region, height, width)
        resized = _resized_partners(x, plan.index, row_source, col_source)
        mask = ((rows & plan.mixed.view(-1, 1)).unsqueeze(2) & cols.unsqueeze(1)).view(
            x.shape[0], *([1] * (x.dim() - 3)), height, width
        )
        if inplace:
            return where_into(mask, resized, x), region.kept
        return torch.where(~mask, x, resized), region.kept  # x first: its layout (paste_boxes says why)

    def label_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return image_label_shape(x)

    def mix_label_map(
        self, labels: torch.Tensor, x: torch.Tensor, plan: MixPlan, region: Resized
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The partner's map resized into the box by the pixels' nearest source maps."""
        region = Resized(*region)
        rows, cols, row_source, col_source = _source_maps(region, x.shape[-2], x.shape[-1])
        own = ~((rows & plan.mixed.view(-1, 1)).unsqueeze(2) & cols.unsqueeze(1))
        _, own = region_labels(labels, x, plan, own)
        if labels.is_floating_point():  # rows (B, H, W, C): resize the class planes
            resized = _resized_partners(labels.movedim(-1, 1), plan.index, row_source, col_source).movedim(1, -1)
        else:
            resized = _resized_partners(labels, plan.index, row_source, col_source)
        return resized, own

    def row_writer(
        self, x: torch.Tensor, plan: MixPlan, region: Resized, valid: Validity | None = None
    ) -> tuple[Callable[[torch.Tensor, int, torch.Tensor], None], torch.Tensor]:
        """The CPU loop's write: a sample's box gets its partner's pixels picked by the same source maps."""
        region = Resized(*region)
        _, _, row_source, col_source = _source_maps(region, x.shape[-2], x.shape[-1])
        boxes = region.boxes.tolist()

        def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
            y1, y2, x1, x2 = boxes[i]
            resized = partner.index_select(-2, row_source[i, y1:y2]).index_select(-1, col_source[i, x1:x2])
            dst[..., y1:y2, x1:x2].copy_(resized)

        return write, region.kept
