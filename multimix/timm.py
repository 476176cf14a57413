"""Drop-ins for ``timm.data.Mixup`` and ``timm.data.FastCollateMixup``, built on the :class:`~multimix.Mixer`.

timm's training script builds ``Mixup(mixup_alpha=..., cutmix_alpha=..., ...)`` and calls
``x, target = mixup_fn(x, target)``, or, with ``--prefetcher``, passes
``FastCollateMixup(...)`` to its loader as the ``collate_fn``. :class:`Mixup` and
:class:`FastCollateMixup` take the same arguments and return the same values, mixed by
multimix: drawn on the CPU from its own ``torch.Generator`` (exact resume, no global
NumPy state), moved to the device once, no read-back, and any batch size (timm asserts
an even one). How timm's modes map:

- ``mode="batch"``: one lam and one of Mixup/CutMix for the batch (the Mixer's default);
  ``prob`` is one coin per batch, as in timm.
- ``mode="elem"``: lam per sample, the adapter chosen per sample with ``switch_prob``
  (``Mixer(..., per_sample=True, switch="sample")``); ``prob`` is a coin per sample.
- ``mode="pair"``: the batch is split into pairs that mix with each other, one lam, one
  adapter and one coin per pair (timm pairs ``i`` with ``B - 1 - i``; here the pairs are a
  random matching). CutMix draws a box per sample, not per pair. In an odd batch one
  sample is left unmixed.
- ``mode="half"`` (:class:`FastCollateMixup` only): the first ``B // 2`` samples are mixed,
  as in ``"elem"``, with partners from the second half, and only they are returned.

Partners in batch and elem mode are one random cycle through the batch (timm: the flipped
batch); CutMix boxes follow torchvision's rule (timm's differs by a pixel in the side).
uint8 images are mixed in float32 and rounded half to even (timm's collate rounding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch

from multimix import image
from multimix._checks import check_flag, check_probability
from multimix._timm_plans import TimmMixer
from multimix._timm_samples import class_indices, stack_samples
from multimix.image.boxes import check_minmax

try:  # timm's PrefetchLoader forwards mixup_enabled only to an instance of its own class
    from timm.data.mixup import FastCollateMixup as _TimmFastCollateMixup

    _COLLATE_BASES: tuple[type, ...] = (_TimmFastCollateMixup,)
except ImportError:  # timm is optional: without it there is no PrefetchLoader to satisfy
    _COLLATE_BASES = ()

__all__ = ["FastCollateMixup", "Mixup"]

MODES = ("batch", "pair", "elem")
# timm's settings, fixed once built (and the mixer built from them)
_SETTINGS = ("mixup_alpha", "cutmix_alpha", "cutmix_minmax", "mix_prob", "switch_prob", "mode", "correct_lam",
             "label_smoothing", "num_classes", "multi_label", "mixer")  # fmt: skip


def _check_alpha(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number >= 0 (0 turns it off), got {type(value).__name__} {value!r}")
    if not 0 <= float(value) < float("inf"):
        raise ValueError(f"{name} must be finite and >= 0 (0 turns it off), got {value!r}")
    return float(value)


class Mixup:
    """timm's ``Mixup`` with its constructor and call, mixed by a :class:`~multimix.Mixer`.

    Args:
        mixup_alpha: Mixup's Beta alpha; mixup is active if > 0.
        cutmix_alpha: CutMix's Beta alpha; CutMix is active if > 0.
        cutmix_minmax: CutMix box side ratios ``(low, high)``; activates CutMix with
            alpha 1 and boxes drawn by size, as timm.
        prob: probability of mixing a batch (``mode="batch"``), a pair or a sample.
        switch_prob: probability of CutMix instead of Mixup when both are active.
        mode: ``"batch"``, ``"pair"`` or ``"elem"`` (see the module docstring).
        correct_lam: CutMix's label weight is the area kept after clipping (else the drawn lam).
        label_smoothing: folded into the targets as timm (off = s / C, on = 1 - s + s / C).
        num_classes: width of the soft targets.
        multi_label: targets are dense multi-hot rows ``(B, num_classes)``, smoothed
            toward 0.5 as timm (``y * (1 - s) + s / 2``), for a BCE loss.
        seed: seed of the plan generator; or ``generator=``. If neither, drawn from
            torch's global RNG (so ``torch.manual_seed`` fixes it).
        generator: a CPU ``torch.Generator`` to draw plans from.

    Attributes:
        mixer: the :class:`~multimix.Mixer` doing the work; ``mixer(x, y)`` returns the
            whole :class:`~multimix.MixedBatch` (lam, index, plan, boxes) of a float batch.
        mixup_enabled: set to False to stop mixing (targets stay smoothed rows), as timm.

    Example:
        >>> import torch
        >>> from multimix.timm import Mixup
        >>> mixup_fn = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10, seed=0)
        >>> x, target = mixup_fn(torch.rand(7, 3, 32, 32), torch.randint(0, 10, (7,)))  # odd batches work
        >>> target.shape, bool(torch.allclose(target.sum(1), torch.ones(7)))
        (torch.Size([7, 10]), True)
    """

    _settable = ("mixup_enabled",)
    _modes = MODES

    def __init__(
        self,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: Sequence[float] | None = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
        multi_label: bool = False,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if mode not in self._modes:
            names = ", ".join(repr(m) for m in self._modes[:-1]) + f" or {self._modes[-1]!r}"
            hint = " ('half' is FastCollateMixup's: use multimix.timm.FastCollateMixup, or 'elem')" \
                if mode == "half" else ""  # fmt: skip
            raise ValueError(f"mode must be {names} (timm's modes), got {mode!r}{hint}")
        mixup_alpha = _check_alpha(mixup_alpha, "mixup_alpha")
        cutmix_alpha = _check_alpha(cutmix_alpha, "cutmix_alpha")
        for name, flag in (("correct_lam", correct_lam), ("multi_label", multi_label)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__} {flag!r}")
        correct_lam, multi_label = bool(correct_lam), bool(multi_label)
        prob = check_probability(prob, "prob")
        switch_prob = check_probability(switch_prob, "switch_prob")
        if cutmix_minmax is not None:
            cutmix_minmax = check_minmax(cutmix_minmax, "cutmix_minmax")
            cutmix_alpha = 1.0  # timm forces it: the boxes are drawn by size, not from lam
        adapters: list[Any] = []
        if mixup_alpha > 0:
            adapters.append(image.Mixup(mixup_alpha))
        if cutmix_alpha > 0:
            adapters.append(image.CutMix(cutmix_alpha, minmax=cutmix_minmax,
                                         correct_lam=correct_lam or cutmix_minmax is not None))  # fmt: skip
        if not adapters:
            raise ValueError(
                "mixup_alpha and cutmix_alpha are both 0 and cutmix_minmax is None, so nothing would be mixed; "
                "set mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax"
            )
        both = len(adapters) == 2
        smoothing = check_probability(label_smoothing, "label_smoothing")
        self.mixer = TimmMixer(
            adapters, num_classes, mode=mode, prob=prob, per_sample=mode != "batch",
            switch="sample" if both and mode != "batch" else "batch", switch_prob=switch_prob if both else None,
            label_smoothing=0.0 if multi_label else smoothing, row_smoothing=smoothing if multi_label else 0.0,
            multi_label=multi_label, seed=seed, generator=generator,
        )  # fmt: skip
        self.mixup_alpha, self.cutmix_alpha, self.cutmix_minmax = mixup_alpha, cutmix_alpha, cutmix_minmax
        self.mix_prob, self.switch_prob, self.mode, self.correct_lam = prob, switch_prob, mode, correct_lam
        self.label_smoothing, self.num_classes, self.multi_label = smoothing, self.mixer.num_classes, multi_label
        self._built = True

    @property
    def mixup_enabled(self) -> bool:
        """Whether calls mix (timm's flag, set by its training loop at ``mixup_off_epoch``)."""
        return self.mixer.enabled

    @mixup_enabled.setter
    def mixup_enabled(self, value: bool) -> None:
        self.mixer.enabled = check_flag(bool(value) if isinstance(value, np.bool_) else value, "mixup_enabled")

    def __setattr__(self, name: str, value: Any) -> None:
        """Only ``mixup_enabled`` of timm's settings changes after construction; setting another, or a name these
        classes do not have (``mixup_enable``), would silently do nothing. A subclass's own attributes are its own."""
        ours = type(self).__module__ == __name__
        fixed = name in _SETTINGS or (ours and not hasattr(type(self), name) and name not in self.__dict__)
        if self.__dict__.get("_built") and fixed and name not in self._settable:
            raise AttributeError(
                f"multimix.timm.{type(self).__name__}.{name} is fixed at construction, so setting it would do "
                f"nothing; build a new {type(self).__name__} (mixup_enabled is the one switch that can change)"
            )
        super().__setattr__(name, value)

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix ``x`` ``(B, C, H, W)`` in place and return it with soft targets ``(B, num_classes)``.

        A uint8 ``x`` is mixed in float32 and rounded half to even into ``x``; the
        targets carry the lam actually drawn (timm's elem and pair modes cast it to uint8).
        """
        if isinstance(x, torch.Tensor) and not (x.is_floating_point() or x.dtype == torch.uint8):
            raise TypeError(f"x must be a floating-point or uint8 image batch (B, C, H, W), got dtype {x.dtype}")
        self._check_multi_label(target)
        if isinstance(target, torch.Tensor) and target.dim() == 1 and target.is_floating_point():
            target = class_indices(target, "target[{}]")  # timm takes whole-number float indices
        if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
            out = self.mixer(x.float(), target)
            x.copy_(out.inputs.round_())
            return x, out.targets
        out = self.mixer(x, target)
        return out.inputs, out.targets

    def _check_multi_label(self, target: object) -> None:
        """timm's multi-label targets are dense rows (the mixer takes 0/1 integers and smooths them toward 0.5)."""
        if self.multi_label and (not isinstance(target, torch.Tensor) or target.dim() != 2):
            shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
            raise ValueError(
                f"multi_label=True mixes dense multi-hot targets (B, num_classes={self.num_classes}), got {shape}; "
                "pass 0/1 rows, or build the mixer with multi_label=False for class indices"
            )

    def state_dict(self) -> dict[str, Any]:
        """The mixer's generator and schedule, so a resumed run draws the same plans."""
        return self.mixer.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mixer.load_state_dict(state)

    def __repr__(self) -> str:
        return (
            f"multimix.timm.{type(self).__name__}(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
            f"cutmix_minmax={self.cutmix_minmax}, prob={self.mix_prob}, switch_prob={self.switch_prob}, "
            f"mode={self.mode!r}, correct_lam={self.correct_lam}, label_smoothing={self.label_smoothing}, "
            f"num_classes={self.num_classes}, multi_label={self.multi_label})"
        )


class FastCollateMixup(Mixup, *_COLLATE_BASES):
    """timm's ``FastCollateMixup``: a ``collate_fn`` that stacks uint8 samples and mixes them in the worker.

    Takes :class:`Mixup`'s arguments, and ``mode="half"`` besides: the first ``B // 2``
    samples are mixed per sample with partners from the second half, and only they are
    returned (timm's choice for fewer, more varied mixed samples per loaded batch).

    Called with the list of ``(image, label)`` samples a ``DataLoader`` collects (uint8
    NumPy arrays or tensors ``(C, H, W)``; labels class indices, or dense rows with
    ``multi_label=True``), it returns a uint8 batch ``(B, C, H, W)`` (``(B // 2, ...)``
    in half mode) mixed in float32 and rounded half to even, and float32 soft targets
    ``(B, num_classes)``, as timm's. Each worker draws its own plans
    (:meth:`~multimix.Mixer.seed_worker`) and follows ``mixup_enabled`` as set in the
    main process; with timm installed this is an instance of timm's class, so timm's
    ``PrefetchLoader.mixup_enabled`` reaches it.

    Example:
        >>> import numpy as np
        >>> from multimix.timm import FastCollateMixup
        >>> collate = FastCollateMixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=10, seed=0)
        >>> samples = [(np.full((3, 8, 8), 10 * i, dtype=np.uint8), i) for i in range(5)]
        >>> images, target = collate(samples)
        >>> images.dtype, images.shape, target.shape
        (torch.uint8, torch.Size([5, 3, 8, 8]), torch.Size([5, 10]))
    """

    _modes = (*MODES, "half")

    def __call__(self, batch: Sequence[Any], _: object = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Collate and mix ``batch``, a list of ``(image, label)`` samples; the second argument is ignored, as timm."""
        self.mixer.seed_worker()  # a no-op in the main process
        images, labels = stack_samples(batch)
        if self.mode == "half" and images.shape[0] < 2:
            raise ValueError("mode='half' mixes the first half of a batch with the second; got a batch of 1 sample")
        images, target = Mixup.__call__(self, images, labels)
        if self.mode == "half":  # the second half only lent its samples
            keep = images.shape[0] // 2
            return images[:keep], target[:keep]
        return images, target
