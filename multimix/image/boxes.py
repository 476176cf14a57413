"""CutMix's boxes: drawn on the host from lam (clipped at the border, the area kept being the label weight), and the
row and column masks that paste them on a device.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import NamedTuple

import numpy as np
import torch

from multimix._checks import check_generator, check_positive_int, check_tensor
from multimix.plan import MixPlan

__all__ = ["sample_boxes"]


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
    ok = isinstance(minmax, (tuple, list, np.ndarray)) and np.ndim(minmax) == 1 and len(minmax) == 2  # NumPy too
    ok = ok and all(isinstance(v, Real) and not isinstance(v, (bool, np.bool_)) for v in minmax)
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
    positions = np.arange(max(height, width))  # rows and columns compared at once, as box_masks does
    inside = (positions >= boxes[:, 0::2, None]) & (positions < boxes[:, 1::2, None])  # (B, 2, max(H, W))
    rows = inside[:, 0, :height]
    # contiguous for every plan (the same strides: one traced graph), without a pass when every sample is mixed
    rows = np.ascontiguousarray(rows) if plan.all_mixed else rows & plan.mixed.numpy()[:, None]
    return torch.from_numpy(rows), torch.from_numpy(inside[:, 1, :width])


class Boxes(NamedTuple):
    """CutMix boxes of one batch: what :meth:`CutMix.draw_region` draws and :meth:`CutMix.apply` pastes."""

    boxes: torch.Tensor  # (B, 4) long [y1, y2, x1, x2)
    kept: torch.Tensor  # (B,) float64, the fraction of each image kept (1 for unmixed samples): the label weight
    rows: torch.Tensor | None = None  # (B, H) bool, rows inside each mixed sample's box (vectorised path)
    cols: torch.Tensor | None = None  # (B, W) bool, columns inside each box (vectorised path)
    box: tuple[int, int, int, int] | None = None  # the batch's one box as host ints (one lam per batch)
