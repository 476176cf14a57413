"""A drop-in for ``timm.data.Mixup``, built on the :class:`~multimix.Mixer`.

timm's training script builds ``Mixup(mixup_alpha=..., cutmix_alpha=..., ...)`` and calls
``x, target = mixup_fn(x, target)``; :class:`Mixup` takes the same arguments and returns
the same pair, mixed by multimix: drawn on the CPU from its own ``torch.Generator``
(exact resume, no global NumPy state), moved to the device once, no read-back, in place,
and any batch size (timm asserts an even one). How timm's modes map:

- ``mode="batch"``: one lam and one of Mixup/CutMix for the batch (the Mixer's default);
  ``prob`` is one coin per batch, as in timm.
- ``mode="elem"``: lam per sample, the adapter chosen per sample with ``switch_prob``
  (``Mixer(..., per_sample=True, switch="sample")``); ``prob`` is a coin per sample.
- ``mode="pair"``: the batch is split into pairs that mix with each other, one lam, one
  adapter and one coin per pair (timm pairs ``i`` with ``B - 1 - i``; here the pairs are a
  random matching). CutMix draws a box per sample, not per pair. In an odd batch one
  sample is left unmixed.

Partners in batch and elem mode are one random cycle through the batch (timm: the flipped
batch); CutMix boxes follow torchvision's rule (timm's differs by a pixel in the side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import torch

from multimix import image
from multimix._checks import check_probability
from multimix.mixer import Mixer
from multimix.plan import MixPlan, draw_plan, identity_plan

__all__ = ["Mixup"]

MODES = ("batch", "pair", "elem")


class _TimmMixer(Mixer):
    """A Mixer with timm's two draws the Mixer does not make: a coin per batch, and pairs."""

    def __init__(self, adapters: list[Any], num_classes: int, *, mode: str, prob: float, **options: Any) -> None:
        self.mode = mode
        self.batch_prob = prob if mode == "batch" else 1.0
        super().__init__(adapters, num_classes, p=1.0 if mode == "batch" else prob, **options)
        self._built = True  # from here on, unknown attributes are refused as by the Mixer

    def draw(self, batch_size: int) -> MixPlan:
        if not self.enabled:
            return identity_plan(batch_size)
        if self.batch_prob < 1.0:  # timm's prob in batch mode: one coin for the whole batch
            coin = float(torch.rand((), generator=self.generator, dtype=torch.float64))
            if coin >= self.batch_prob:
                return identity_plan(batch_size)
        if self.mode == "pair":
            return self._draw_pairs(batch_size)
        return super().draw(batch_size)

    def _draw_pairs(self, batch_size: int) -> MixPlan:
        """One lam, adapter and coin per pair of a random matching; the odd sample out is left unmixed."""
        pairs = batch_size // 2
        if pairs == 0 or self.p == 0:
            return identity_plan(batch_size)
        alphas = [adapter.alpha for adapter in self.adapters]
        half = draw_plan(pairs, alphas, self.generator, weights=self.weights, per_sample=True, p=self.p,
                         switch=self.switch)  # fmt: skip
        order = torch.randperm(batch_size, generator=self.generator)
        paired = half.lam < 1  # the pairs the coin mixes (the cycle drawn with half is not used)
        first, second = order[0 : 2 * pairs : 2][paired], order[1 : 2 * pairs : 2][paired]
        index = torch.arange(batch_size)
        index[first], index[second] = second, first
        lam = torch.ones(batch_size, dtype=torch.float64)
        lam[first] = lam[second] = half.lam[paired]
        choices = None
        if half.choices is not None:
            choices = torch.zeros(batch_size, dtype=torch.long)
            choices[first] = choices[second] = half.choices[paired]
        return MixPlan(index=index, lam=lam, choice=half.choice, per_sample=True, choices=choices)


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
        seed: seed of the plan generator; or ``generator=``. If neither, drawn from
            torch's global RNG (so ``torch.manual_seed`` fixes it).
        generator: a CPU ``torch.Generator`` to draw plans from.

    Attributes:
        mixer: the :class:`~multimix.Mixer` doing the work; ``mixer(x, y)`` returns the
            whole :class:`~multimix.MixedBatch` (lam, index, plan, boxes).
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
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if mode not in MODES:
            hint = " ('half' is FastCollateMixup's; use 'elem')" if mode == "half" else ""
            raise ValueError(f"mode must be 'batch', 'pair' or 'elem' (timm's modes), got {mode!r}{hint}")
        mixup_alpha = _check_alpha(mixup_alpha, "mixup_alpha")
        cutmix_alpha = _check_alpha(cutmix_alpha, "cutmix_alpha")
        if not isinstance(correct_lam, bool):
            raise TypeError(f"correct_lam must be a bool, got {type(correct_lam).__name__} {correct_lam!r}")
        prob = check_probability(prob, "prob")
        switch_prob = check_probability(switch_prob, "switch_prob")
        if cutmix_minmax is not None:
            cutmix_minmax = image._check_minmax(cutmix_minmax, "cutmix_minmax")
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
        self.mixer = _TimmMixer(
            adapters, num_classes, mode=mode, prob=prob, per_sample=mode != "batch",
            switch="sample" if both and mode != "batch" else "batch", switch_prob=switch_prob if both else None,
            label_smoothing=label_smoothing, seed=seed, generator=generator,
        )  # fmt: skip
        self.mixup_alpha, self.cutmix_alpha, self.cutmix_minmax = mixup_alpha, cutmix_alpha, cutmix_minmax
        self.mix_prob, self.switch_prob, self.mode, self.correct_lam = prob, switch_prob, mode, correct_lam
        self.label_smoothing, self.num_classes = self.mixer.label_smoothing, self.mixer.num_classes
        self._built = True

    @property
    def mixup_enabled(self) -> bool:
        """Whether calls mix (timm's flag, set by its training loop at ``mixup_off_epoch``)."""
        return self.mixer.enabled

    @mixup_enabled.setter
    def mixup_enabled(self, value: bool) -> None:
        self.mixer.enabled = value

    def __setattr__(self, name: str, value: Any) -> None:
        """Only ``mixup_enabled`` changes after construction; setting another would silently do nothing."""
        if self.__dict__.get("_built") and name not in self._settable:
            raise AttributeError(
                f"multimix.timm.Mixup.{name} is fixed at construction, so setting it would do nothing; "
                "build a new Mixup (mixup_enabled is the one switch that can change)"
            )
        super().__setattr__(name, value)

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix ``x`` ``(B, C, H, W)`` (in place) and return it with soft targets ``(B, num_classes)``."""
        out = self.mixer(x, target)
        return out.inputs, out.targets

    def state_dict(self) -> dict[str, Any]:
        """The mixer's generator and schedule, so a resumed run draws the same plans."""
        return self.mixer.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mixer.load_state_dict(state)

    def __repr__(self) -> str:
        return (
            f"multimix.timm.Mixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
            f"cutmix_minmax={self.cutmix_minmax}, prob={self.mix_prob}, switch_prob={self.switch_prob}, "
            f"mode={self.mode!r}, correct_lam={self.correct_lam}, label_smoothing={self.label_smoothing}, "
            f"num_classes={self.num_classes})"
        )
