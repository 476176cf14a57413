"""``Switch``: one adapter chosen per sample (timm's ``mode="elem"``), as one composite adapter.

The plan holds each sample's choice (``plan.choices``, drawn with each sample's lam from
its own adapter's alpha). Each member mixes the samples that chose it, every sample
reading its partner's original value whatever the partner chose. On a device or under
``torch.compile`` every member mixes the batch out of place and one selection per member
keeps its samples (static shapes); on the CPU one in-place loop runs each sample's own
member's write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from multimix._checks import check_flag, check_probability
from multimix._kernels import apply_rowwise, row_view, unchanged
from multimix.adapter import Adapter
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["Switch"]


def adapter_weights(switch_prob: float | Sequence[float] | None, count: int) -> list[float] | None:
    """Turn timm-style ``switch_prob`` into one selection weight per adapter."""
    if switch_prob is None:
        return None
    if isinstance(switch_prob, (int, float)) and not isinstance(switch_prob, bool):
        if count != 2:
            raise ValueError(
                f"switch_prob={switch_prob!r} as a single number needs exactly two adapters (the probability of "
                f"the second, as timm's switch_prob), got {count}; pass one probability per adapter instead"
            )
        second = check_probability(switch_prob, "switch_prob")
        return [1.0 - second, second]
    weights = [check_probability(w, f"switch_prob[{i}]") for i, w in enumerate(switch_prob)]
    if len(weights) != count or sum(weights) <= 0:
        raise ValueError(
            f"switch_prob must give one probability per adapter ({count}) with a positive sum, "
            f"got {list(switch_prob)!r}"
        )
    return weights


class Part(NamedTuple):
    """One member's share of a switched batch: the plan restricted to its samples, and the region it drew."""

    index: torch.Tensor  # (B,) long: the partner of each of its samples, self elsewhere
    lam: torch.Tensor  # (B,) float64: the lam of each of its samples, 1 elsewhere
    mixed: torch.Tensor  # (B,) bool: its samples that are mixed
    chosen: torch.Tensor  # (B,) bool: its samples
    region: Any
    any_mixed: bool
    all_mixed: bool


class Switch(Adapter):
    """Mix each sample with the adapter it chose (``Mixer(..., switch="sample")`` builds one).

    Args:
        adapters: the members, e.g. ``[Mixup(0.8), CutMix(1.0)]``; each sample's lam is drawn
            from its own member's alpha.

    Example:
        >>> import torch, multimix
        >>> from multimix.image import CutMix, Mixup
        >>> mixer = multimix.Mixer(Switch([Mixup(0.8), CutMix(1.0)]), num_classes=4, per_sample=True, seed=0)
        >>> out = mixer(torch.rand(6, 3, 8, 8), torch.arange(6) % 4)
        >>> out.plan.choices.shape, bool(torch.allclose(out.targets.sum(1), torch.ones(6)))
        (torch.Size([6]), True)
    """

    def __init__(self, adapters: Sequence[Adapter]) -> None:
        members = list(adapters) if isinstance(adapters, Sequence) and not isinstance(adapters, str) else None
        if not members or not all(isinstance(a, Adapter) and not isinstance(a, Switch) for a in members):
            raise TypeError(
                f"Switch takes a non-empty list of adapters (e.g. [Mixup(0.8), CutMix(1.0)]), got {adapters!r}"
            )
        self.adapters = members
        self._readers = [_out_of_place(member) for member in members]
        # Adapter.__init__ would set inplace, which is the members' own here (the property below): alpha is all it sets
        self.alpha = members[0].alpha
        self.min_ndim = max(a.min_ndim for a in members)
        self.layout = members[0].layout
        self.hf_inputs = members[0].hf_inputs

    @property
    def inplace(self) -> bool:  # type: ignore[override]
        """Whether calls write into the batch: when every member does, read live (a member's ``inplace`` set after the
        Switch was built holds); setting it sets every member's."""
        return all(adapter.inplace for adapter in self.adapters)

    @inplace.setter
    def inplace(self, value: bool) -> None:
        check_flag(value, "inplace")
        for adapter in self.adapters:
            adapter.inplace = value

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and copied without the out-of-place views (their classes are made at run time): rebuilt on load."""
        state = self.__dict__.copy()
        del state["_readers"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._readers = [_out_of_place(member) for member in self.adapters]

    @property
    def alphas(self) -> list[float]:
        """Each member's alpha: the Mixer draws each sample's lam from its own member's."""
        return [adapter.alpha for adapter in self.adapters]

    def check_input(self, x: object, name: str = "inputs") -> torch.Tensor:
        for adapter in self.adapters:
            x = adapter.check_input(x, name)
        return x

    def draw_region(self, x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> list[Part | None]:
        """Each member's share of the plan and the region it draws, for every member, so a traced step sees the same
        structure whatever the plan (one graph). A member with no mixed sample draws from a generator of its own:
        its region is never applied to a sample, and the plans' stream stays what it was."""
        if plan.choices is None and not plan.any_mixed:  # mixing off: the identity plan chooses nothing
            return [None] * len(self.adapters)
        if plan.choices is None:
            raise ValueError("Switch needs a plan with per-sample choices; build the Mixer with per_sample=True")
        choices, mixed = plan.choices.numpy(), plan.mixed.numpy()
        index, lam = plan.index.numpy(), plan.lam.numpy()
        own = np.arange(plan.batch_size)
        parts: list[Part | None] = []
        for k, adapter in enumerate(self.adapters):
            chosen = choices == k
            mixes = chosen & mixed  # its samples left unmixed (by p, or partnered with themselves) keep lam 1
            sub = MixPlan(torch.from_numpy(np.where(mixes, index, own)), torch.from_numpy(np.where(mixes, lam, 1.0)),
                          choice=k, per_sample=True, mixed=torch.from_numpy(mixes))  # fmt: skip
            region = adapter.draw_region(x, sub, generator if mixes.any() else torch.Generator())
            parts.append(Part(sub.index, sub.lam, sub.mixed, torch.from_numpy(chosen), region, sub.any_mixed,
                              sub.all_mixed))  # fmt: skip
        return parts

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: list[Part | None], valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = self.writes_inplace(x)
        active = _active(region)
        if not self.vectorized(x):
            writers = self._writers(x, active, valid)
            if writers is not None:
                write, label = writers
                host = plan.on_host
                return apply_rowwise(x, host.index.tolist(), host.mixed.tolist(), write, inplace=inplace), label
        label = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
        if not active:
            return unchanged(x, inplace), label
        out = None
        for k, part in active:
            mixed, lam = self._readers[k].apply(x, _member_plan(part, k), part.region, valid)
            # a member's result is x, bit for bit, outside its own mixed samples: the first needs no selection
            out = mixed if out is None else torch.where(row_view(part.chosen, x), mixed, out)
            label = torch.where(part.chosen, lam.to(torch.float64), label)
        return (x.copy_(out) if inplace else out), label

    def label_shape(self, x: torch.Tensor) -> tuple[int | None, ...] | None:
        return self.adapters[0].label_shape(x)  # the Mixer refuses label maps that do not fit every member

    def label_shapes(self, x: torch.Tensor) -> list[tuple[str, tuple[int | None, ...] | None]]:
        return [found for adapter in self.adapters for found in adapter.label_shapes(x)]

    @property
    def moves_whole_positions(self) -> bool:  # type: ignore[override]
        """Whole positions when every member moves them so: then label maps stay integer maps at every call."""
        return all(adapter.moves_whole_positions for adapter in self.adapters)

    def mix_label_map(
        self, labels: torch.Tensor, x: torch.Tensor, plan: MixPlan, region: list[Part | None]
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Each sample's labels follow its own member's rule. The kind of the result is the same at every call
        (integer maps when every member moves whole positions, probability maps otherwise), whichever members the
        draw chose: None (a blend's) when no member moves positions here and some member blends."""
        found = []
        for k, part in _active(region):
            found.append((part, self.adapters[k].mix_label_map(labels, x, _member_plan(part, k), part.region)))
        hard = self.moves_whole_positions
        if not hard and all(moved is None for _, moved in found):
            return None
        shape = labels.shape[: 1 + len(self.label_shape(x))]
        partner = labels.index_select(0, plan.index)
        weight = torch.ones(shape, dtype=torch.bool if hard else torch.float64, device=labels.device)
        for part, moved in found:
            if moved is None:  # a blend: its samples' lam at every position
                moved = labels.index_select(0, part.index), part.lam.view(-1, *([1] * (len(shape) - 1))).expand(shape)
            chosen = part.chosen.view(-1, *([1] * (len(shape) - 1)))
            partner = torch.where(chosen.view(-1, *([1] * (labels.dim() - 1))), moved[0], partner)
            weight = torch.where(chosen, moved[1].to(weight.dtype), weight)
        return partner, weight

    def _writers(
        self, x: torch.Tensor, active: list[tuple[int, Part]], valid: Validity | None
    ) -> tuple[Callable[[torch.Tensor, int, torch.Tensor], None], torch.Tensor] | None:
        """One write that runs each sample's own member's write, and the label lam; None if a member has no loop."""
        writes: dict[int, Callable[[torch.Tensor, int, torch.Tensor], None]] = {}
        label = torch.ones(x.shape[0], dtype=torch.float64)
        for k, part in active:
            sub = MixPlan(part.index, part.lam, choice=k, per_sample=True, mixed=part.mixed)
            found = self.adapters[k].row_writer(x, sub, part.region, valid)
            if found is None:
                return None
            writes[k], lam = found
            label = torch.where(part.chosen, lam.to(torch.float64), label)
        owner = np.full(x.shape[0], -1)
        for k, part in active:
            owner[part.chosen.numpy()] = k
        owners = owner.tolist()

        def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
            writes[owners[i]](dst, i, partner)

        return write, label

    def __repr__(self) -> str:
        return f"Switch({self.adapters!r})"


_OUT_OF_PLACE: dict[type, type] = {}


def _out_of_place(member: Adapter) -> Adapter:
    """``member`` as the vectorised path applies it, where every member reads the original batch: the same object
    state (one shared ``__dict__``, so settings changed after the Switch was built hold here too), but never writing
    in place (a class-level ``inplace`` of False, which an instance's own value cannot override)."""
    kind = type(member)
    if kind not in _OUT_OF_PLACE:
        _OUT_OF_PLACE[kind] = type(f"OutOfPlace{kind.__name__}", (kind,),
                                   {"inplace": property(lambda self: False), "__module__": __name__})  # fmt: skip
    view = object.__new__(_OUT_OF_PLACE[kind])
    view.__dict__ = member.__dict__
    for slot in _slots(kind):  # values outside __dict__ are copied: as they are when the Switch is built or loaded
        if hasattr(member, slot):
            setattr(view, slot, getattr(member, slot))
    return view


def _slots(kind: type) -> list[str]:
    """The ``__slots__`` names of ``kind`` and its bases (``__dict__`` and ``__weakref__`` left out)."""
    names = []
    for base in kind.__mro__:
        slots = vars(base).get("__slots__", ())
        names += [slots] if isinstance(slots, str) else [s for s in slots if s not in ("__dict__", "__weakref__")]
    return names


def _active(parts: list[Part | None]) -> list[tuple[int, Part]]:
    """The members that mix something, by position: in an eager call those with a mixed sample (the others leave
    the batch as it is); while traced, every member that has a share, so one graph serves every plan."""
    eager = not torch.compiler.is_compiling()
    return [(k, part) for k, part in enumerate(parts) if part is not None and not (eager and not part.any_mixed)]


def _member_plan(part: Part, k: int) -> MixPlan:
    """The plan of member ``k``'s samples (on the batch's device); a traced call reads none of its host flags."""
    if torch.compiler.is_compiling():  # any values: nothing_to_mix and nothing_to_keep ignore them while traced
        return MixPlan(part.index, part.lam, choice=k, per_sample=True, mixed=part.mixed, any_mixed=True,
                       all_mixed=False)  # fmt: skip
    return MixPlan(part.index, part.lam, choice=k, per_sample=True, mixed=part.mixed, any_mixed=part.any_mixed,
                   all_mixed=part.all_mixed)  # fmt: skip
