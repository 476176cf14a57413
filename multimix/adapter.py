"""The adapter interface: the one modality-specific part of mixing.

A :class:`~multimix.Mixer` validates, draws the plan and mixes the targets; an
adapter only knows where and how to mix its kind of input (pixels, spectrogram
bands, waveforms, hidden states) and which label weight that really applied.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from multimix._checks import check_alpha, check_flag, check_float_tensor, check_writable
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["Adapter"]


class Adapter(ABC):
    """Base class of every modality adapter.

    Subclasses set ``min_ndim`` and ``layout`` (the expected shape, for messages)
    and ``hf_inputs`` (the Hugging Face model inputs they mix, read by
    :func:`multimix.wrap`), may override :meth:`draw_region` to draw adapter-specific
    randomness from the plan's generator, and implement :meth:`apply`.

    Args:
        alpha: lam ~ Beta(alpha, alpha); settable, e.g. to schedule it.
        inplace: write the mixed batch into the input tensor (the fast default,
            as timm does); ``False`` returns a new tensor. Inputs that need
            autograd history are never mixed in place.
    """

    min_ndim: ClassVar[int] = 2
    max_ndim: ClassVar[int | None] = None
    layout: ClassVar[str] = "(B, ...)"
    takes_lengths: ClassVar[bool] = False  # whether calls may pass lengths / a padding mask on the last axis
    # whether, given lengths, a sample takes its partner's values only on its own valid steps (so its lengths hold)
    keeps_lengths: ClassVar[bool] = False
    hf_inputs: ClassVar[tuple[str, ...]] = ()  # model inputs that multimix.wrap mixes with this adapter
    # whether label maps follow it position by position whole (a pasted box, a hard mask: integer maps stay integer
    # maps), rather than shared by a weight (a blend, a soft edge: probability maps)
    moves_whole_positions: ClassVar[bool] = False

    def __init__(self, alpha: float = 1.0, *, inplace: bool = True) -> None:
        self.alpha = alpha
        check_flag(inplace, "inplace")
        self.inplace = inplace

    @property
    def alpha(self) -> float:
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self._alpha = check_alpha(value)

    def check_input(self, x: object, name: str = "inputs") -> torch.Tensor:
        """Raise a clear error if ``x`` cannot be mixed by this adapter; never modifies it nor reads its values."""
        x = check_float_tensor(x, name, self.min_ndim, self.layout)
        if x.numel() == 0:  # B > 0: an empty sample axis, where a box, mask or bands have no area to weigh labels by
            raise ValueError(
                f"{name} has an empty axis in its samples (shape {tuple(x.shape)}, expected {self.layout}); each "
                "sample needs at least one value along every axis"
            )
        if self.max_ndim is not None and x.dim() > self.max_ndim:
            raise ValueError(
                f"{name} must have at most {self.max_ndim} dimensions {self.layout} for {type(self).__name__}, "
                f"got shape {tuple(x.shape)}"
            )
        if self.writes_inplace(x) and not torch.compiler.is_compiling():  # traced writes are functionalised
            check_writable(x, name)
        return x

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> Any:
        """Draw what this adapter needs beyond the plan (a box, bands) on the CPU; None by default.

        ``plan`` is the CPU plan. Return tensors (in tuples, named tuples, dicts or
        lists): the Mixer moves them to the batch's device with the plan, in one copy.
        Plain Python values pass through, for decisions made on the host.
        """
        return None

    def check_lengths(self) -> None:
        """Refuse lengths this adapter cannot follow; the Mixer asks before it draws anything for a call with them."""
        if not self.takes_lengths:
            raise ValueError(f"{type(self).__name__} does not take lengths; they are for audio adapters")

    def label_shape(self, x: torch.Tensor) -> tuple[int | None, ...] | None:
        """The positions of ``x`` that label maps follow (``(H, W)``, frames ``(T,)``; None for an axis of any length).

        None (the default): this adapter mixes whole samples only, so targets are class
        indices ``(B,)`` or rows ``(B, C)``.
        """
        return None

    def label_shapes(self, x: torch.Tensor) -> list[tuple[str, tuple[int | None, ...] | None]]:
        """Each adapter this one may mix a sample by, named, with its :meth:`label_shape` (a Switch lists its
        members): label maps must fit every one of them."""
        return [(type(self).__name__, self.label_shape(x))]

    def region_shape(self, x: torch.Tensor) -> tuple[int | None, ...] | None:
        """The positions a region is drawn over (:meth:`label_shape` by default; SpecMix's bands span frequency too):
        dict fields mixed by one adapter object share its region where this agrees."""
        return self.label_shape(x)

    def prepare(self, x: torch.Tensor, plan: MixPlan, region: Any, valid: Validity | None = None) -> Any:
        """``region`` with what :meth:`mix_label_map` and :meth:`apply` would each compute from it on the device
        (FMix's mask, SaliencyMix's boxes, SpecMix's bands fitted to ``valid`` lengths), computed once; ``region``
        as it is by default.

        The Mixer calls it for a call with label maps or lengths, on the unmixed ``x``. Tensor ops only.
        """
        return region

    def mix_label_map(
        self, labels: torch.Tensor, x: torch.Tensor, plan: MixPlan, region: Any
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """How label maps follow this adapter's mix: the labels each position's partner side shows, and its weight.

        Called with the unmixed ``x`` (before :meth:`apply` writes it) and maps ``labels``
        ``(B, *S)`` or rows ``(B, *S, C)``, ``S`` being :meth:`label_shape`. Returns
        ``(partner, weight)``: ``partner`` the shape of ``labels``, ``weight`` ``(B, *S)``
        the weight of each position's own label (bool where a region takes positions
        whole: a pasted box, a hard mask). None (the default) means a blend: every
        position follows the sample's lam and its partner's labels. Tensor ops only.
        """
        return None

    @abstractmethod
    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: Any, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix ``x`` by ``plan``; return the mixed tensor and the applied label lam ``(B,)`` float64.

        ``plan`` and ``region`` are already on ``x``'s device (``plan.on_host`` is the
        CPU original), and the returned lam must be too: nothing here may read values back
        from the device. Shortcuts for plans that mix nothing or every sample read
        ``plan.nothing_to_mix`` / ``plan.nothing_to_keep`` (never true while traced, so one
        graph serves every plan), not ``any_mixed`` / ``all_mixed``.
        ``valid`` holds the valid steps of the last axis, for adapters with
        ``takes_lengths``; None means all steps are valid. The lam returned may be the
        plan's or the region's own tensor (or a view of it), not a copy: the Mixer reports
        a fresh float32 one (``MixedBatch.lam``); clone it before writing into it.
        """

    def row_writer(
        self, x: torch.Tensor, plan: MixPlan, region: Any, valid: Validity | None = None
    ) -> tuple[Callable[[torch.Tensor, int, torch.Tensor], None], torch.Tensor] | None:
        """The per-sample write of the CPU loop and the label lam ``(B,)`` it gives, or None without a loop.

        ``write(dst, i, partner)`` mixes sample ``i`` into ``dst`` from its partner's original
        value; :func:`~multimix._kernels.apply_rowwise` orders the writes so that mixing in
        place never reads a value already written. Only called on the CPU outside a trace,
        with host plans, so it may read values. A composite adapter (``Switch``) runs its
        members' writes in one loop.
        """
        return None

    def writes_inplace(self, x: torch.Tensor) -> bool:
        """Whether this call may overwrite ``x`` (never when autograd must see the original)."""
        return self.inplace and not (torch.is_grad_enabled() and x.requires_grad)

    # Below this many elements per sample, a loop over samples costs more in per-call
    # overhead than the full-batch temporaries of the vectorised path (measured on CPU).
    loop_min_numel: ClassVar[int] = 1 << 15

    def vectorized(self, x: torch.Tensor) -> bool:
        """Vectorise on accelerators (a kernel per sample is slow there), under ``torch.compile`` (the loop reads
        the plan's values), under autograd, and for small samples."""
        return (
            x.device.type != "cpu"
            or torch.compiler.is_compiling()
            or (torch.is_grad_enabled() and x.requires_grad)
            or x.numel() < self.loop_min_numel * x.shape[0]
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha!r}, inplace={self.inplace!r})"

