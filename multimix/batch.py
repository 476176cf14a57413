"""``MixedBatch``: what a Mixer call returns, ready to move to a device or to unpack as ``x, y``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch

from multimix.plan import MixPlan
from multimix.targets import LabelMix

__all__ = ["MixedBatch"]

Inputs = torch.Tensor | dict[str, Any]


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor in ``value`` (a tensor, or a dict of them), leaving other values alone."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {key: _map_tensors(item, fn) for key, item in value.items()}
    return value


class _Targets:
    """``MixedBatch.targets``: stored when given, else built from the batch's :class:`LabelMix` on first read.

    A data descriptor without a class-level default, so the dataclass keeps ``targets`` a
    required field (``MixedBatch(inputs, targets, ...)``) and its ``__init__`` assigns it here.
    """

    def __get__(self, batch: MixedBatch | None, owner: type | None = None) -> torch.Tensor | None:
        if batch is None:
            raise AttributeError("targets")  # no default: the dataclass field stays required
        value = batch.__dict__.get("_targets")
        if value is None and batch.__dict__.get("mix") is not None:
            value = batch.__dict__["_targets"] = batch.mix.targets()
        return value

    def __set__(self, batch: MixedBatch, value: torch.Tensor | None) -> None:
        batch.__dict__["_targets"] = value


@dataclass
class MixedBatch:
    """What a :class:`Mixer` returns for one batch.

    Unpacks as ``inputs, targets = batch``, so ``for x, y in loader`` works with
    ``collate_fn=mixer.collate``.

    Attributes:
        inputs: the mixed inputs (the input tensor itself when mixed in place), or
            for dict batches a dict of every field but the targets, ready for
            ``model(**out.inputs)``.
        targets: ``(B, C)`` float soft targets, on the inputs' device; for label maps, the
            map each position now shows or soft maps (see :func:`~multimix.targets.mixed_maps`).
            Built on first read (a loss given the batch, :func:`~multimix.mixed_loss` or
            ``soft_cross_entropy(logits, batch)``, never builds it); read inside a compiled
            step it is traced with the step.
        lam: ``(B,)`` float32, the label weight of each sample's own target (for
            CutMix the area actually kept; 1 for samples left unmixed), on the inputs' device.
        index: ``(B,)`` long, each sample's partner, on the inputs' device.
        plan: the drawn :class:`~multimix.plan.MixPlan` (on the CPU).
        region: what the adapter drew beyond the plan (CutMix boxes, on the CPU; what an
            adapter draws on the device, FMix's per-sample noise off the CPU, stays there), per
            field for dict batches; for a call given ``lengths``, as the adapter fitted it to them (SpecMix's
            bands on each clip's valid frames, on the device). With ``switch="sample"``, a list with each adapter's
            :class:`~multimix.switch.Part` (its share of the plan and the region it drew, over
            the whole batch), None for an adapter no sample chose.
        lengths: for calls given ``lengths``, the mixed lengths ``(B,)`` or padding
            mask ``(B, T)``: a mixed item is valid wherever either source was (an adapter that
            takes the partner only on a sample's own valid steps, ``keeps_lengths``, keeps them).
        labels: the targets the Mixer was given (class indices ``(B,)`` or rows
            ``(B, C)``), unmixed, on the inputs' device: what :func:`~multimix.mixed_loss`
            scores a criterion against.
        mix: how the labels were mixed (:class:`~multimix.targets.LabelMix`): what builds
            ``targets`` and what the losses read instead of them.
    """

    inputs: Inputs
    targets: torch.Tensor = _Targets()
    lam: torch.Tensor
    index: torch.Tensor
    plan: MixPlan
    region: Any = None
    lengths: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    mix: LabelMix | None = None

    def __iter__(self) -> Iterator[Any]:
        """``inputs, targets = batch``."""
        return iter((self.inputs, self.targets))

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> MixedBatch:
        """A copy with ``fn`` applied to every tensor field except the plan and region, as drawn."""
        moved = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "targets"}
        for name, value in moved.items():
            if name not in ("plan", "region", "mix"):
                moved[name] = _map_tensors(value, fn)
        if self.mix is not None:  # targets not read yet stay unbuilt: their sources move instead
            mix = self.mix
            moved["mix"] = mix._replace(
                labels=moved["labels"] if mix.labels is self.labels else fn(mix.labels),
                partner=None if mix.partner is None else fn(mix.partner),
                weight=fn(mix.weight),
                index=moved["index"] if mix.index is self.index else fn(mix.index),
            )
        built = self.__dict__.get("_targets")
        return MixedBatch(targets=None if built is None else fn(built), **moved)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MixedBatch:
        """Move every tensor field to ``device`` (the plan and region stay where they were drawn)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> MixedBatch:
        """Let ``DataLoader(pin_memory=True)`` pin a batch mixed in a worker."""
        return self._map(lambda t: t.pin_memory())
