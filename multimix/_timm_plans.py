"""The draws timm's mixing modes make that the :class:`~multimix.Mixer` does not: a coin per batch, pairs, halves.

:class:`TimmMixer` is the Mixer behind :mod:`multimix.timm`: ``mode="batch"`` with
``prob < 1`` flips one coin for the whole batch; ``"pair"`` mixes the two samples of
each pair of a random matching with each other (one lam, adapter and coin per pair);
``"half"`` mixes each sample of the first half with one of the second. Every draw comes
from the mixer's generator, so ``state_dict`` resumes them.
"""

from __future__ import annotations

from typing import Any

import torch

from multimix.mixer import Mixer
from multimix.plan import MixPlan, _draw, identity_plan

__all__: list[str] = []


class TimmMixer(Mixer):
    """A Mixer with timm's draws the Mixer does not make: a coin per batch, pairs, and halves."""

    def __init__(
        self, adapters: list[Any], num_classes: int, *, mode: str, prob: float, row_smoothing: float = 0.0,
        **options: Any,
    ) -> None:  # fmt: skip
        self.mode = mode
        self.batch_prob = prob if mode == "batch" else 1.0
        self.row_smoothing = row_smoothing  # timm's multi-label smoothing: rows toward 0.5, not the Mixer's s / C
        super().__init__(adapters, num_classes, p=1.0 if mode == "batch" else prob, **options)
        self._built = True  # from here on, unknown attributes are refused as by the Mixer

    def _split(
        self, inputs: Any, targets: torch.Tensor | None, lengths: torch.Tensor | None, **checks: Any
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The Mixer's checks, with timm's multi-label rows: 0/1 integers taken as floats, smoothed toward 0.5 (so
        ``mixup_fn.mixer(x, y)`` gives the targets ``mixup_fn(x, y)`` does)."""
        rows = self.multi_label and isinstance(targets, torch.Tensor) and targets.dim() == 2
        if rows and targets.dtype != torch.float32:  # timm's rows are float32 whatever the labels' dtype
            targets = targets.float()
        fields_, targets = super()._split(inputs, targets, lengths, **checks)
        if rows and self.row_smoothing > 0:
            targets = targets * (1.0 - self.row_smoothing) + 0.5 * self.row_smoothing
        return fields_, targets

    def draw(self, batch_size: int) -> MixPlan:
        if not self.enabled:
            return self._unmixed(batch_size)
        if self.batch_prob < 1.0:  # timm's prob in batch mode: one coin for the whole batch
            coin = float(torch.rand((), generator=self.generator, dtype=torch.float64))
            if coin >= self.batch_prob:
                return self._unmixed(batch_size)
        if self.mode in ("pair", "half"):
            return self._draw_matched(batch_size)
        return super().draw(batch_size)

    def _unmixed(self, batch_size: int) -> MixPlan:
        """The plan that mixes nothing, with per-sample choices where the adapter is chosen per sample."""
        plan = identity_plan(batch_size)
        if self.switch != "sample":
            return plan
        return MixPlan(plan.index, plan.lam, per_sample=True, choices=torch.zeros(batch_size, dtype=torch.long))

    def _draw_matched(self, batch_size: int) -> MixPlan:
        """One lam, adapter and coin per pair of a random matching (``"pair"``: both mix, the odd one out stays);
        or per sample of the first half, mixed with a partner from the second (``"half"``: the second half stays)."""
        count = batch_size // 2
        if count == 0 or self.p == 0:
            return self._unmixed(batch_size)
        alphas = [adapter.alpha for adapter in self.adapters]  # each checked when it was set, as p and the weights
        drawn = _draw(count, alphas, self.generator, self.weights, True, self.p, self.switch, matched=True)
        mixed = drawn.lam < 1  # the samples or pairs the coin mixes (the cycle drawn with them is not used)
        if self.mode == "pair":
            order = torch.randperm(batch_size, generator=self.generator)
            first, second = order[0 : 2 * count : 2][mixed], order[1 : 2 * count : 2][mixed]
        else:
            first = torch.arange(count)[mixed]
            second = (batch_size - count + torch.randperm(count, generator=self.generator))[mixed]
        index = torch.arange(batch_size)
        index[first] = second
        lam = torch.ones(batch_size, dtype=torch.float64)
        lam[first] = drawn.lam[mixed]
        choices = None
        if drawn.choices is not None:
            choices = torch.zeros(batch_size, dtype=torch.long)
            choices[first] = drawn.choices[mixed]
        if self.mode == "pair":
            index[second], lam[second] = first, lam[first]
            if choices is not None:
                choices[second] = choices[first]
        return MixPlan(index=index, lam=lam, choice=drawn.choice, per_sample=True, choices=choices)
