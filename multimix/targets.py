"""Soft targets: one contract for every adapter.

Targets come in as class indices ``(B,)`` or rows ``(B, C)`` (probabilities, or
multi-hot with ``multi_label=True``) and leave as float rows ``(B, C)``. Label
smoothing is folded in the way timm does it (off = s / C, on = 1 - s + s / C), and
mixing is ``lam * y + (1 - lam) * y[index]`` with the lam the adapter actually
applied, so single-label rows always sum to 1.

Label maps (dense targets that follow the input's positions: segmentation masks
``(B, H, W)``, frame labels ``(B, T)`` or frame rows ``(B, T, C)``) are mixed by the
same rules with a weight per position (see :func:`mixed_targets`), and
:func:`label_weights` is the one place where a ``label_mode`` turns the weight of a
sample's own labels into the weights of both sources.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from multimix._checks import check_probability
from multimix.plan import MixPlan
from multimix.target_checks import check_mix_arguments, check_targets

__all__ = ["label_weights", "mix_targets", "soft_targets"]

LABEL_MODES = ("lerp", "union", "original", "dominant")


def check_label_mode(label_mode: object) -> str:
    """Return ``label_mode`` after checking it names one of :data:`LABEL_MODES`."""
    if label_mode not in LABEL_MODES:
        raise ValueError(
            f"label_mode must be one of {LABEL_MODES} ('lerp' mixes labels by lam, 'union' keeps both label sets, "
            f"'original' each sample's own, 'dominant' the larger share's), got {label_mode!r}"
        )
    return label_mode


def label_weights(lam: torch.Tensor, label_mode: str = "lerp") -> tuple[torch.Tensor, torch.Tensor]:
    """The weights of a sample's own labels and of its partner's under ``label_mode``: the one rule of every path.

    ``lam`` is the weight of the own source, per sample ``(B,)`` or per position of a
    label map ``(B, *S)`` (bool for a region that takes each position whole). Both weights
    come back in ``lam``'s dtype and shape; tensor ops only, so wrappers and traced steps
    share it.

    - ``"lerp"``: ``(lam, 1 - lam)``, mixup's labels.
    - ``"union"``: 1 for each source that shows anywhere (``lam > 0``, ``lam < 1``): a
      mixed sample carries both label sets (multi-label, AudioSet style); combine rows
      with a maximum, not a sum.
    - ``"original"``: ``(1, 0)``: inputs mixed, each sample keeps its own labels.
    - ``"dominant"``: the larger share's labels, ``lam >= 0.5`` keeping its own.

    Example:
        >>> lam = torch.tensor([0.25, 0.5, 1.0])
        >>> [w.tolist() for w in label_weights(lam, "dominant")]
        [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    """
    if lam.dtype == torch.bool:
        own = torch.ones_like(lam) if label_mode == "original" else lam
        return own, ~own
    if label_mode == "lerp":
        return lam, 1.0 - lam
    if label_mode == "original":
        return torch.ones_like(lam), torch.zeros_like(lam)
    if label_mode == "dominant":
        own = (lam >= 0.5).to(lam.dtype)
        return own, 1.0 - own
    if label_mode == "union":
        return (lam > 0).to(lam.dtype), (lam < 1).to(lam.dtype)
    raise ValueError(check_label_mode(label_mode))


def soft_targets(
    targets: torch.Tensor,
    num_classes: int,
    *,
    label_smoothing: float = 0.0,
    multi_label: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Turn indices or rows into float rows ``(B, C)`` with label smoothing folded in.

    Example:
        >>> soft_targets(torch.tensor([0, 2]), 3, label_smoothing=0.3)
        tensor([[0.8000, 0.1000, 0.1000],
                [0.1000, 0.1000, 0.8000]])
    """
    label_smoothing = check_probability(label_smoothing, "label_smoothing")
    targets = check_targets(targets, num_classes, multi_label=multi_label)
    return smoothed_rows(targets, num_classes, label_smoothing, dtype)


def smoothed_rows(
    targets: torch.Tensor, num_classes: int, label_smoothing: float, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """:func:`soft_targets` for targets already checked by :func:`check_targets` (no second pass over them)."""
    if dtype is None:
        dtype = targets.dtype if targets.is_floating_point() and targets.dim() == 2 else torch.float32
    if targets.dim() == 1:  # timm's on and off values, written at once
        off = label_smoothing / num_classes
        rows = torch.full((targets.shape[0], num_classes), off, dtype=dtype, device=targets.device)
        labels = targets if targets.dtype == torch.int64 else targets.long()
        return rows.scatter_(1, labels.unsqueeze(1), 1.0 - label_smoothing + off)
    rows = targets.to(dtype=dtype, copy=True)
    if label_smoothing > 0:
        rows.mul_(1.0 - label_smoothing).add_(label_smoothing / num_classes)
    return rows


def mix_targets(rows: torch.Tensor, index: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Return ``lam[i] * rows[i] + (1 - lam[i]) * rows[index[i]]`` as a new tensor.

    Example:
        >>> rows = torch.eye(2)
        >>> mix_targets(rows, torch.tensor([1, 0]), torch.tensor([0.75, 0.75]))
        tensor([[0.7500, 0.2500],
                [0.2500, 0.7500]])
    """
    rows, index, lam = check_mix_arguments(rows, index, lam)
    return _lerp_from_partner(rows, index.to(rows.device), lam.to(rows.device))


def _lerp_from_partner(rows: torch.Tensor, index: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """:func:`mix_targets` for checked arguments on one device: each row lerped from its partner's, so a class both
    rows hold stays exactly at its value."""
    return rows.index_select(0, index).lerp_(rows, lam.to(rows.dtype).unsqueeze(1))


def mixed_targets(
    targets: torch.Tensor,
    plan: MixPlan,
    lam: torch.Tensor,
    num_classes: int,
    label_smoothing: float,
    *,
    label_mode: str = "lerp",
) -> torch.Tensor:
    """The soft rows of a mixed batch: targets checked by :func:`check_targets`, smoothed, then mixed.

    The one place where the Mixer and the model wrappers build their targets; ``plan``
    and ``lam`` (the label weight the adapter applied) are on the targets' device.
    Each sample's smoothed row (class indices written at timm's on and off values) is
    lerped from its partner's by lam, so a class both rows hold keeps its value exactly:
    two ``(B, C)`` buffers and five kernels for class indices. Tensor ops only.

    Args:
        targets: class indices ``(B,)`` or rows ``(B, C)``.
        plan: the plan on the targets' device (its ``index``, and ``any_mixed`` on the host in an eager call).
        lam: ``(B,)`` the weight of each sample's own source (what the adapter applied).
        num_classes: C.
        label_smoothing: folded in before mixing (timm's on/off values).
        label_mode: how lam weighs the two label sets, see :func:`label_weights`:
            ``"lerp"`` (default), ``"union"`` (the maximum of both rows), ``"original"``,
            ``"dominant"``.

    Example:
        >>> from multimix.plan import MixPlan
        >>> plan = MixPlan(torch.tensor([1, 0]), torch.tensor([0.75, 0.25], dtype=torch.float64))
        >>> mixed_targets(torch.tensor([0, 1]), plan, plan.lam, 3, 0.0, label_mode="union")
        tensor([[1., 1., 0.],
                [1., 1., 0.]])
    """
    return _mixed_rows(targets, plan.index, not plan.nothing_to_mix, lam, num_classes, label_smoothing, label_mode)


def _mixed_rows(
    targets: torch.Tensor,
    index: torch.Tensor,
    any_mixed: bool,
    lam: torch.Tensor,
    num_classes: int,
    label_smoothing: float,
    label_mode: str,
) -> torch.Tensor:
    """:func:`mixed_targets` from the partner map and ``any_mixed`` (True while traced: an unmixed row is its own
    partner at lam = 1, so the lerp gives its row exactly, and a step needs no graph for unmixed batches)."""
    if not any_mixed or label_mode == "original":
        return smoothed_rows(targets, num_classes, label_smoothing)
    dtype = targets.dtype if targets.is_floating_point() and targets.dim() == 2 else torch.float32
    if label_mode != "lerp":
        own, other = label_weights(lam, label_mode)
        rows = smoothed_rows(targets, num_classes, label_smoothing, dtype)
        partner = rows.index_select(0, index).mul_(other.to(dtype).unsqueeze(1))
        rows.mul_(own.to(dtype).unsqueeze(1))
        return torch.maximum(rows, partner) if label_mode == "union" else rows.add_(partner)
    return _lerp_from_partner(smoothed_rows(targets, num_classes, label_smoothing, dtype), index, lam)


class LabelMix(NamedTuple):
    """How a batch's labels were mixed: what builds its targets, or scores a loss without building them.

    ``weight`` is the weight of each sample's own labels: ``(B,)`` per sample (the lam the
    adapter applied), or ``(B, *S)`` per position of a label map (bool where a region takes
    each position whole, float where positions are shared). ``partner`` holds the labels the
    partner's side shows at each position (``labels[index]``, or the partner's map resized
    by ResizeMix). ``kind`` is :func:`target_kind` of ``labels``.
    """

    labels: torch.Tensor
    partner: torch.Tensor | None  # None for class indices and rows (``labels[index]``, gathered where needed)
    weight: torch.Tensor
    index: torch.Tensor  # (B,) each sample's partner
    any_mixed: bool  # known on the host; True in a traced call (:attr:`MixPlan.nothing_to_mix`)
    kind: str
    num_classes: int
    label_smoothing: float = 0.0
    label_mode: str = "lerp"
    ignore_index: int = -100

    def targets(self) -> torch.Tensor:
        """The mixed targets: soft rows ``(B, C)``, or for label maps see :func:`mixed_maps`."""
        if self.kind in ("index", "rows"):
            return _mixed_rows(self.labels, self.index, self.any_mixed, self.weight, self.num_classes,
                               self.label_smoothing, self.label_mode)  # fmt: skip
        return mixed_maps(self.labels, self.partner, self.weight, self.num_classes,
                          label_smoothing=self.label_smoothing, label_mode=self.label_mode,
                          ignore_index=self.ignore_index)  # fmt: skip

    def position_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`label_weights` of ``weight``, shaped to broadcast over the labels' positions."""
        weight = self.weight
        if self.kind in ("map", "map_rows"):
            rank = self.labels.dim() - (self.kind == "map_rows")  # the batch axis and the positions
            weight = weight.view(*weight.shape, *([1] * (rank - weight.dim())))
            weight = weight.unsqueeze(-1) if self.kind == "map_rows" else weight  # rows: over their classes
        return label_weights(weight, self.label_mode)


def target_kind(targets: torch.Tensor) -> str:
    """The kind of targets: ``"index"`` ``(B,)``, ``"rows"`` ``(B, C)`` float, ``"map"`` integer ``(B, *S)``,
    ``"map_rows"`` float ``(B, *S, C)``.

    Decided by rank and dtype alone (static under a trace).
    """
    if targets.dim() == 1:
        return "index"
    if targets.is_floating_point():
        return "rows" if targets.dim() == 2 else "map_rows"
    return "map"


def mixed_maps(
    labels: torch.Tensor,
    partner: torch.Tensor,
    weight: torch.Tensor,
    num_classes: int,
    *,
    label_smoothing: float = 0.0,
    label_mode: str = "lerp",
    ignore_index: int = -100,
) -> torch.Tensor:
    """Mix label maps position by position: the rule of :func:`mixed_targets` with a weight per position.

    Args:
        labels: integer maps ``(B, *S)`` (``ignore_index`` allowed) or float rows ``(B, *S, C)``.
        partner: what the partner's side shows at each position, the shape of ``labels``.
        weight: own weight ``(B,)`` (one per sample, a blend) or ``(B, *S)`` (per position).
        num_classes: C.
        label_smoothing: folded into float rows (integer maps take it in the criterion).
        label_mode: see :func:`label_weights`.
        ignore_index: the label of positions that carry none.

    Returns:
        For integer maps and a bool weight (a region took every position whole): the
        integer map of the label each position now shows, ``(B, *S)``. For integer maps
        and shared positions: probability maps ``(B, C, *S)`` (the class axis second, as
        ``F.cross_entropy`` takes them), where an ignored source adds nothing (a position
        ignored by both is all zero). For float rows: rows ``(B, *S, C)``.

    Example:
        >>> y = torch.tensor([[0, 1], [2, -100]])
        >>> mixed_maps(y, y.flip(0), torch.tensor([0.75, 0.25]), 3)[0]
        tensor([[0.7500, 0.0000],
                [0.0000, 0.7500],
                [0.2500, 0.0000]])
    """
    positions = labels.dim() - (2 if labels.is_floating_point() else 1)
    weight = weight.view(*weight.shape, *([1] * (positions + 1 - weight.dim())))
    own, other = label_weights(weight, label_mode)
    if labels.is_floating_point():
        own, other = own.unsqueeze(-1).to(labels.dtype), other.unsqueeze(-1).to(labels.dtype)
        if label_mode == "union":  # each source's rows smoothed, then the larger of the two
            rows = smoothed_rows(labels.flatten(0, -2), num_classes, label_smoothing).view(labels.shape)
            partner = smoothed_rows(partner.flatten(0, -2), num_classes, label_smoothing).view(labels.shape)
            return torch.maximum(rows.mul_(own), partner.mul_(other))
        mixed = (labels * own).add_(partner * other)  # the weights sum to 1: smoothing the mix smooths both
        return mixed.mul_(1.0 - label_smoothing).add_(label_smoothing / num_classes) if label_smoothing else mixed
    if own.dtype == torch.bool:
        return torch.where(own.expand(labels.shape), labels, partner)
    out = torch.zeros(labels.shape[0], num_classes, *labels.shape[1:], dtype=torch.float32, device=labels.device)
    reduce = "amax" if label_mode == "union" else "sum"
    for source, share in ((labels, own), (partner, other)):
        valid = source != ignore_index
        share = torch.where(valid, share.to(out.dtype), 0.0).unsqueeze(1)
        out.scatter_reduce_(1, torch.where(valid, source, 0).long().unsqueeze(1), share, reduce)  # uint8 PNG masks too
    return out
