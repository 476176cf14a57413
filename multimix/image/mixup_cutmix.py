"""Pixel mixup and CutMix on ``(B, C, H, W)`` (or video ``(B, C, T, H, W)``).

Mixup (Zhang et al., ICLR 2018) blends whole images; CutMix (Yun et al., ICCV 2019)
pastes a box of the partner. Both write into the input batch by default, which is
what makes them faster than timm's and torchvision's mixers (see
``docs/performance.md``); pass ``inplace=False`` for a new tensor.
"""

from __future__ import annotations

import torch

from multimix._checks import check_flag
from multimix._kernels import applied_lam, box_writer, lerp_rows, lerp_writer, paste_boxes, paste_window
from multimix.adapter import Adapter
from multimix.image.boxes import Boxes, _draw_boxes, _host_box_masks, box_masks, check_minmax, kept_where_mixed
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["CutMix", "Mixup"]

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

    moves_whole_positions = True

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
        check_flag(correct_lam, "correct_lam")
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
        if not plan.all_mixed or kept.shape[0] != n:  # (B,) contiguous for every plan: one traced graph
            kept = kept_where_mixed(plan, kept)
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
        # host ints: no read-back; never while traced (checked first: a plan held by a module is static to dynamo,
        # and reading its box would make every box a graph)
        if not torch.compiler.is_compiling() and region.box is not None and vectorized:
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
