"""Pixel mixup and CutMix on ``(B, C, H, W)`` (or video ``(B, C, T, H, W)``).

Mixup (Zhang et al., ICLR 2018) blends whole images; CutMix (Yun et al., ICCV 2019)
pastes a box of the partner. Both write into the input batch by default, which is
what makes them faster than timm's and torchvision's mixers (see
``docs/performance.md``); pass ``inplace=False`` for a new tensor.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from multimix._checks import check_generator, check_positive_int, check_tensor
from multimix._kernels import applied_lam, box_writer, lerp_rows, lerp_writer, paste_boxes, paste_window
from multimix.adapter import Adapter
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["CutMix", "Mixup", "sample_boxes"]

_IMAGE_INPUTS = ("pixel_values",)


def image_label_shape(x: torch.Tensor) -> tuple[int, ...]:
    """The positions label maps of images follow: ``(H, W)``, or ``(T, H, W)`` for video ``(B, C, T, H, W)``."""
    return tuple(x.shape[2:] if x.dim() >= 4 else x.shape[1:])


def region_labels(
    labels: torch.Tensor, x: torch.Tensor, plan: MixPlan, own: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The partner's labels and the own-position weight ``(B, *S)`` of a region ``own`` ``(B or 1, H, W)``.

    The region spans the last two axes; video maps take it at every frame, as the pixels do.
    """
    shape = labels.shape[: 1 + len(image_label_shape(x))]
    own = own.view(own.shape[0], *([1] * (len(shape) - own.dim())), *own.shape[1:]).expand(shape)
    return labels.index_select(0, plan.index), own


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
        mixed = lerp_rows(x, plan, inplace=self.writes_inplace(x), vectorized=self.vectorized(x))
        return mixed, applied_lam(plan.lam, x)

    def row_writer(self, x: torch.Tensor, plan: MixPlan, region: None, valid: Validity | None = None):
        return lerp_writer(plan.lam, x.dtype), applied_lam(plan.lam, x)

    def label_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return image_label_shape(x)


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
    if lam.dim() != 1 or lam.device.type != "cpu" or not bool(((lam.numpy() >= 0) & (lam.numpy() <= 1)).all()):
        raise ValueError(
            f"lam must be a (N,) CPU tensor of values in [0, 1] (boxes are drawn on the host), "
            f"got shape {tuple(lam.shape)} on {lam.device}"
        )
    check_positive_int(height, "height")
    check_positive_int(width, "width")
    check_generator(generator)
    return _draw_boxes(lam.double().numpy(), height, width, generator, minmax=None if minmax is None else
                       check_minmax(minmax))  # fmt: skip


def _draw_boxes(
    lam: np.ndarray, height: int, width: int, generator: torch.Generator, *, minmax: tuple[float, float] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_boxes` for checked arguments (what :meth:`CutMix.draw_region` calls at every batch)."""
    if minmax is not None:
        return _minmax_boxes(lam.shape[0], height, width, minmax, generator)
    return _centred_boxes(lam, height, width, generator)


def _centred_boxes(
    lam: np.ndarray, height: int, width: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_boxes` without ``minmax`` for checked arguments: one draw of the centres, NumPy on N numbers."""
    if lam.shape[0] == 1:  # the batch's one box: plain floats cost less host time than NumPy calls
        return _one_centred_box(float(lam[0]), height, width, generator)
    sides = np.array([[height], [width]])
    centres = torch.rand(2, lam.shape[0], generator=generator, dtype=torch.float64).numpy() * sides
    half = 0.5 * np.sqrt(1.0 - lam) * sides
    np.floor(centres, out=centres)
    np.floor(half, out=half)
    low, high = np.maximum(centres - half, 0), np.minimum(centres + half, sides)
    boxes = np.empty((lam.shape[0], 4), dtype=np.int64)
    boxes[:, 0::2], boxes[:, 1::2] = low.T, high.T
    sides_kept = high - low
    return torch.from_numpy(boxes), torch.from_numpy(1.0 - sides_kept[0] * sides_kept[1] / (height * width))


def _one_centred_box(
    lam: float, height: int, width: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_centred_boxes` for one box, the same arithmetic on plain floats (the same two uniforms)."""
    box = []
    for u, side in zip(torch.rand(2, generator=generator, dtype=torch.float64).tolist(), (height, width), strict=True):
        centre, half = math.floor(u * side), math.floor(0.5 * math.sqrt(1.0 - lam) * side)
        box += [max(centre - half, 0), min(centre + half, side)]
    kept = 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / (height * width)
    # from NumPy: less host time than torch.tensor on a handful of numbers
    return torch.from_numpy(np.array([box], dtype=np.int64)), torch.from_numpy(np.array([kept]))


def check_minmax(minmax: object, name: str = "minmax") -> tuple[float, float]:
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


def kept_where_mixed(plan: MixPlan, kept: torch.Tensor) -> torch.Tensor:
    """The label weight of a region: ``kept`` for mixed samples, 1 for the unmixed (NumPy: host work on B numbers)."""
    return torch.from_numpy(np.where(plan.on_host.mixed.numpy(), kept.numpy(), 1.0))


def box_masks(boxes: torch.Tensor, mixed: torch.Tensor | None, height: int, width: int) -> dict[str, torch.Tensor]:
    """``rows`` ``(B, H)`` and ``cols`` ``(B, W)`` bool masks of boxes ``(B, 4)``; unmixed samples get no rows.

    ``mixed`` ``(B,)`` bool, or None where unmixed samples already have empty boxes.
    Rows and columns are compared in one pass each (four kernels on a device).
    """
    positions = torch.arange(max(height, width), device=boxes.device)
    inside = (positions >= boxes[:, 0::2, None]) & (positions < boxes[:, 1::2, None])  # (B, 2, max(H, W))
    rows, cols = inside[:, 0, :height], inside[:, 1, :width]
    return {"rows": rows if mixed is None else rows & mixed.view(-1, 1), "cols": cols}


def _host_box_masks(boxes: np.ndarray, plan: MixPlan, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`box_masks` on the host in NumPy (a handful of numbers: cheaper than torch's dispatch)."""
    rows = (np.arange(height) >= boxes[:, :1]) & (np.arange(height) < boxes[:, 1:2])
    cols = (np.arange(width) >= boxes[:, 2:3]) & (np.arange(width) < boxes[:, 3:4])
    if not plan.all_mixed:
        rows = rows & plan.mixed.numpy()[:, None]
    return torch.from_numpy(rows), torch.from_numpy(cols)


class Boxes(NamedTuple):
    """CutMix boxes of one batch: what :meth:`CutMix.draw_region` draws and :meth:`CutMix.apply` pastes."""

    boxes: torch.Tensor  # (B, 4) long [y1, y2, x1, x2)
    kept: torch.Tensor  # (B,) float64, the fraction of each image kept (1 for unmixed samples): the label weight
    rows: torch.Tensor | None = None  # (B, H) bool, rows inside each mixed sample's box (vectorised path)
    cols: torch.Tensor | None = None  # (B, W) bool, columns inside each box (vectorised path)
    box: tuple[int, int, int, int] | None = None  # the batch's one box as host ints (one lam per batch)


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
        self.minmax = None if minmax is None else check_minmax(minmax)
        if self.minmax is not None and not correct_lam:
            raise ValueError(
                "correct_lam=False keeps the drawn lam, but with minmax the box is not drawn from lam: its area "
                "is the label weight; leave correct_lam=True (timm ignores correct_lam with cutmix_minmax)"
            )
        self.correct_lam = correct_lam

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Boxes:
        lam = plan.region_lam()
        height, width = x.shape[-2], x.shape[-1]
        boxes, kept = _draw_boxes(lam.double().numpy(), height, width, generator, minmax=self.minmax)
        n = plan.batch_size
        if not self.correct_lam:
            kept = plan.lam  # timm's correct_lam=False: the label weight is the lam drawn, clipped box or not
        kept = kept.expand(n) if plan.all_mixed else kept_where_mixed(plan, kept)
        if not plan.per_sample:  # one box: a vectorised eager call moves only its window (paste_window)
            return Boxes(boxes.expand(n, 4), kept, box=tuple(boxes.numpy()[0].tolist()))
        if not self.vectorized(x):
            return Boxes(boxes, kept)
        # Row and column masks are built here on the host and moved with the plan (one copy);
        # the device only forms their outer product.
        return Boxes(boxes, kept, *_host_box_masks(boxes.numpy(), plan.on_host, height, width))

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Boxes, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        region = Boxes(*region)
        inplace, vectorized = self.writes_inplace(x), self.vectorized(x)
        if region.box is not None and vectorized and not torch.compiler.is_compiling():  # host ints: no read-back
            return paste_window(x, plan, region.box, inplace=inplace), region.kept
        if vectorized and region.rows is None:  # one box, drawn for the CPU loop, or boxes given by hand
            region = region._replace(**box_masks(region.boxes, plan.mixed, x.shape[-2], x.shape[-1]))
        mixed = paste_boxes(x, plan, region.boxes, inplace=inplace, vectorized=vectorized, rows=region.rows,
                            cols=region.cols)  # fmt: skip
        return mixed, region.kept

    def row_writer(self, x: torch.Tensor, plan: MixPlan, region: Boxes, valid: Validity | None = None):
        region = Boxes(*region)
        return box_writer(region.boxes), region.kept

    def label_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return image_label_shape(x)

    def mix_label_map(
        self, labels: torch.Tensor, x: torch.Tensor, plan: MixPlan, region: Boxes
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The box masks that paste the pixels paste the labels."""
        region = Boxes(*region)
        rows, cols = region.rows, region.cols
        if rows is None:
            rows, cols = box_masks(region.boxes, plan.mixed, x.shape[-2], x.shape[-1]).values()
        return region_labels(labels, x, plan, ~(rows.unsqueeze(2) & cols.unsqueeze(1)))

    def __repr__(self) -> str:
        extra = "" if self.minmax is None else f", minmax={self.minmax!r}"
        extra += "" if self.correct_lam else ", correct_lam=False"
        return f"CutMix(alpha={self.alpha!r}{extra}, inplace={self.inplace!r})"
