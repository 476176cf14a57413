"""ResizeMix (Qin et al. 2020): the whole partner, resized into a box; in ``multimix.image``."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from multimix._kernels import SAME_SIZE_INTEGER, apply_rowwise, row_view, unchanged
from multimix._transfer import to_device
from multimix.adapter import Adapter
from multimix.image import _IMAGE_INPUTS, kept_where_mixed
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["ResizeMix", "Resized"]


def _nearest_rule(steps: np.ndarray, size: int, out: np.ndarray | int) -> np.ndarray:
    """Source index of position ``steps`` of ``out`` resized from ``size`` by nearest neighbour.

    torch's rule for float32 (and every dtype on CUDA): ``floor(k * (size / out))`` in
    float32, clamped to ``size - 1``. Every ResizeMix path uses it, so CPU and device agree.
    """
    return np.minimum(np.floor(steps.astype(np.float32) * _nearest_scale(size, out)), size - 1).astype(np.int64)


def _nearest_scale(size: int | np.ndarray, out: np.ndarray | int) -> np.ndarray:
    """torch's float32 step ``size / out`` of a nearest resize from ``size`` to ``out`` (``out`` at least 1)."""
    return np.asarray(size, dtype=np.float32) / np.maximum(np.asarray(out), 1).astype(np.float32)


@functools.lru_cache(maxsize=1024)
def _nearest_index(size: int, out: int) -> np.ndarray:
    """:func:`_nearest_rule` for every position of one box side (read-only, cached)."""
    index = _nearest_rule(np.arange(out), size, out)
    index.flags.writeable = False  # shared by every call that asks for the same sizes
    return index


def _box_scale(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, 2)`` float32 ``size / side`` of each box's rows and columns, as :func:`_nearest_rule` (host, B numbers)."""
    y1, y2, x1, x2 = boxes.numpy().T
    return torch.from_numpy(_nearest_scale(np.array([height, width]), np.stack([y2 - y1, x2 - x1], axis=1)))


def _source_maps(boxes: torch.Tensor, scale: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Each box's ``rows`` ``(B, H)`` and ``cols`` ``(B, W)`` bool, and the partner's ``row_source`` / ``col_source``.

    Computed where the boxes are (a dozen kernels for the batch, rows and columns
    together) with :func:`_nearest_rule` in float32: the source of position k of a box
    of side n is ``floor((k - start) * scale)``, 0 outside the box.
    """
    positions = torch.arange(max(height, width), dtype=torch.float32, device=boxes.device)
    steps = positions - boxes[:, 0::2, None]  # (B, 2, L) float32, exact: position inside each box's rows, columns
    inside = (steps >= 0) & (positions < boxes[:, 1::2, None])
    sources = torch.where(inside, steps.mul_(scale.unsqueeze(-1)).floor_(), 0).long()
    return inside[:, 0, :height], inside[:, 1, :width], sources[:, 0, :height], sources[:, 1, :width]


# glibc gives a block above this (the ceiling of its mmap threshold on 64-bit Linux) fresh pages from the kernel
# on every call, each faulted in on first touch: a 35 MB batch of resized boxes then takes 2-3x as long to
# write as the same resizes one sample at a time (benchmarks/adapter_kernels.py).
_FRESH_PAGES_BYTES = 32 * 2**20

# Partners whose source rows take about this much are resized together: the rows stay in a cache while resized.
_CHUNK_BYTES = 2 * 2**20

# Up to this many pixels per box (64 x 64), torch's 2-D nearest kernel is slow per pixel on a CPU (a 128x3x224x224
# batch to 64 x 64: 8.8 ms, to 64 x 65: 3.1 ms; benchmarks/adapter_kernels.py): ResizeMix picks rows and columns
# itself there.
_SMALL_BOX_PIXELS = 64 * 64


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A CPU tensor's memory as NumPy integers of its element size: a gather moves bytes (NumPy has no bfloat16)."""
    return t.view(SAME_SIZE_INTEGER[t.element_size()]).numpy()


def _take_nearest(image: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A CPU sample ``(..., H, W)`` resized (nearest) to ``size``, by NumPy's ``take`` on rows, then columns.

    One sample at a time, NumPy's take is faster than torch's nearest kernel on a CPU
    (benchmarks/adapter_kernels.py); the result is the sample's bytes, as :func:`_as_numpy`.
    """
    height, width = image.shape[-2:]
    rows = _as_numpy(image).take(_nearest_index(height, size[0]), axis=-2)
    return rows.take(_nearest_index(width, size[1]), axis=-1)


def _nearest_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``images`` ``(N, ..., H, W)`` resized to ``(N, ..., *size)`` by nearest neighbour, as :func:`_nearest_rule`.

    torch's nearest kernel reads only the pixels it keeps. Contiguous planes go in as
    ``(N * C, 1, H, W)``: with three channels torch's CPU kernel first copies the whole
    input for some output sizes (square ones among them), with one it never does; other
    layouts (channels_last) go in as they are, so no reshape copies them. float64 on a
    CPU is gathered by rows, then columns (:func:`_columns`).
    """
    if images.dtype == torch.float64 and images.device.type == "cpu":
        rows = images.index_select(-2, torch.tensor(_nearest_index(images.shape[-2], size[0])))
        return _columns(rows.reshape(-1, *rows.shape[-2:]), size[1]).view(*images.shape[:-2], *size)
    shape = (-1, 1) if images.is_contiguous() else (images.shape[0], -1)
    planes = images.reshape(*shape, *images.shape[-2:])
    return F.interpolate(planes, size=size, mode="nearest").view(*images.shape[:-2], *size)


@functools.lru_cache(maxsize=1024)
def _plane_rows(planes: int, height: int, out: int) -> torch.Tensor:
    """The source rows of a nearest resize to ``out`` rows, in one sample's ``(planes * height, W)`` view (cached)."""
    return (torch.arange(planes).view(-1, 1) * height + torch.tensor(_nearest_index(height, out))).flatten()


def _columns(rows: torch.Tensor, out: int) -> torch.Tensor:
    """CPU ``rows`` ``(P, h, W)`` resized (nearest) to ``out`` columns by the float32 rule: torch's 1-D kernel.

    float64 is gathered instead: torch's CPU kernels compute float64 indices in double
    precision, which for some sizes (26 -> 22, 224 -> 184) picks other pixels than the
    float32 rule that CUDA and every other dtype follow.
    """
    if rows.dtype == torch.float64:
        return rows.index_select(2, torch.tensor(_nearest_index(rows.shape[-1], out)))
    return F.interpolate(rows, out, mode="nearest")


def _partner_boxes(x: torch.Tensor, partners: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(len(partners), ..., *size)``: each ``x[partners[n]]`` resized (nearest) to ``size``, from a contiguous batch.

    A fresh tensor, so the caller may write the batch afterwards. A chunk of partners at
    a time (about :data:`_CHUNK_BYTES` of source rows, which stay in a cache while the
    columns are picked): their rows by one ``index_select`` of whole rows of the batch's
    ``(N * planes * H, W)`` view, then the columns (:func:`_columns`). On a CPU, for boxes
    up to :data:`_SMALL_BOX_PIXELS`, about 3x as fast as torch's 2-D kernel on the batch
    and a copy per sample; for larger boxes faster in some runs, slower in others
    (benchmarks/adapter_kernels.py).
    """
    height, width = x.shape[-2:]
    planes = x[0].numel() // (height * width)
    plane_rows = _plane_rows(planes, height, size[0])
    out = x.new_empty(len(partners), *x.shape[1:-2], *size)
    step = max(1, _CHUNK_BYTES // (len(plane_rows) * width * x.element_size()))
    for start in range(0, len(partners), step):
        chunk = partners[start : start + step]
        rows = x.view(-1, width).index_select(0, (chunk.view(-1, 1) * (planes * height) + plane_rows).flatten())
        out[start : start + step].copy_(_columns(rows.view(-1, size[0], width), size[1]).view(-1, *out.shape[1:]))
    return out


def _resized_partners(
    x: torch.Tensor, index: torch.Tensor, row_source: torch.Tensor, col_source: torch.Tensor
) -> torch.Tensor:
    """``x[index[n], ..., row_source[n, h], col_source[n, w]]`` for every sample n: each partner, resized by the maps.

    The partner and its rows come in one ``index_select`` of whole rows (a tenth of the
    time of a gather along the rows, on a CPU), of the ``(N * C * H, W)`` view of a
    contiguous batch or the ``(N * H, W * C)`` view of a channels_last one; then one
    gather picks the columns. Other layouts gather the partners, then the rows.
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


class Resized(NamedTuple):
    """ResizeMix boxes, their label weight, and each box's resize scale (rows, columns)."""

    boxes: torch.Tensor  # (B, 4) long [y1, y2, x1, x2)
    kept: torch.Tensor  # (B,) float64, the fraction of each image kept (the label weight)
    scale: torch.Tensor | None = None  # (B, 2) float32 image side / box side, for the device's source maps
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
        kept = kept_where_mixed(plan, kept)
        if not plan.per_sample:
            return Resized(boxes, kept, box=tuple(boxes[0].tolist()))
        return Resized(boxes, kept, _box_scale(boxes, height, width))

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Resized, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = self.writes_inplace(x)
        if not plan.any_mixed:
            return unchanged(x, inplace), region.kept
        if region.box is not None:
            return self._paste_one_box(x, plan, region.box, inplace=inplace), region.kept
        if self.vectorized(x):
            n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
            boxes, scale = region.boxes, region.scale
            if scale is None:  # a region made by hand: the scale is host arithmetic on its boxes
                if boxes.device.type != "cpu":
                    raise ValueError(
                        f"this ResizeMix region has no scale and its boxes are on {boxes.device}, where "
                        "computing it would read them back; give Resized(boxes, kept, scale=...) or CPU boxes "
                        "(the Mixer's draw_region does)"
                    )
                scale = _box_scale(boxes, height, width)
            boxes, scale = to_device((boxes, scale), x.device)  # a region made by hand may be on the CPU
            rows, cols, row_source, col_source = _source_maps(boxes, scale, height, width)
            resized = _resized_partners(x, plan.index, row_source, col_source)
            mask = ((rows & plan.mixed.view(-1, 1)).unsqueeze(2) & cols.unsqueeze(1)).view(
                n, *([1] * (x.dim() - 3)), height, width
            )
            if inplace:
                return torch.where(mask, resized, x, out=x), region.kept
            return torch.where(~mask, x, resized), region.kept  # x first: its layout (paste_boxes says why)
        boxes = region.boxes.tolist()

        def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
            y1, y2, x1, x2 = boxes[i]
            if y2 > y1 and x2 > x1:
                _as_numpy(dst)[..., y1:y2, x1:x2] = _take_nearest(partner, (y2 - y1, x2 - x1))

        out = apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), write, inplace=inplace)
        if inplace:  # the writes went through NumPy: let autograd see that the batch changed, as a torch write would
            torch.autograd.graph.increment_version(x)
        return out, region.kept

    def _paste_one_box(
        self, x: torch.Tensor, plan: MixPlan, box: tuple[int, int, int, int], *, inplace: bool
    ) -> torch.Tensor:
        """A per-batch draw: every mixed sample's box gets its partner resized to it, from the originals.

        On a device, one resize of the batch and one selection. On a CPU the route
        depends on the box: a resized batch above :data:`_FRESH_PAGES_BYTES` is resized a
        sample at a time in the in-place schedule; a box of a contiguous batch up to
        :data:`_SMALL_BOX_PIXELS` gets the partners' rows and columns
        (:func:`_partner_boxes`); other boxes, one resize of the batch and a copy per sample.
        """
        y1, y2, x1, x2 = box
        if y2 <= y1 or x2 <= x1:
            return x if inplace else x.clone()
        size, loop = (y2 - y1, x2 - x1), not self.vectorized(x)
        if loop and x[..., y1:y2, x1:x2].numel() * x.element_size() > _FRESH_PAGES_BYTES:

            def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
                dst[..., y1:y2, x1:x2].copy_(_nearest_resize(partner.unsqueeze(0), size)[0])

            return apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), write, inplace=inplace)
        out = x if inplace else x.clone()
        window = out[..., y1:y2, x1:x2]
        if loop and x.is_contiguous() and size[0] * size[1] <= _SMALL_BOX_PIXELS:
            filled = plan.mixed.nonzero().flatten()
            resized = _partner_boxes(x, plan.index[filled], size)
            if plan.all_mixed:
                window.copy_(resized)
            else:
                window.index_copy_(0, filled, resized)
            return out
        resized = _nearest_resize(x, size)  # torch's nearest resize reads only the pixels it keeps, in any layout
        if loop:  # a copy per mixed sample, not a second box-sized temporary in partner order
            for i, (j, mixed) in enumerate(zip(plan.index.tolist(), plan.mixed.tolist(), strict=True)):
                if mixed and i != j:
                    window[i].copy_(resized[j])
            return out
        resized = resized.index_select(0, plan.index)
        if not plan.all_mixed:
            resized = torch.where(row_view(plan.mixed, resized), resized, window)
        window.copy_(resized)
        return out
