"""A Mixer's arguments: which fields it mixes with which adapters, and every check of a call made before anything
is drawn or written.

Shapes, dtypes and layouts are checked at every call (they cost no read and trace under
``torch.compile``); values (label range, target rows, lengths) where reading them costs
nothing, as :func:`~multimix.target_checks.check_targets` says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from multimix.adapter import Adapter
from multimix.batch import Inputs
from multimix.lengths import check_lengths
from multimix.plan import MixPlan
from multimix.switch import Switch
from multimix.target_checks import check_partners, check_targets, follows_positions
from multimix.targets import target_kind

__all__: list[str] = []

Route = tuple[str, list[Adapter]]


def adapter_routes(adapters: object) -> tuple[list[Adapter], list[str] | None, list[Route]]:
    """The Mixer's ``adapters`` argument checked: the adapters, the field names (None for tensor batches) and the
    routes, one shape for both modes: each route is a field and the adapters it may be mixed by (a list of adapters
    is one route with several candidates, one chosen per batch)."""
    fields: list[str] | None = None
    if isinstance(adapters, Adapter):
        members = [adapters]
    elif isinstance(adapters, Mapping):
        fields, members = list(adapters), list(adapters.values())
        if not fields or not all(isinstance(k, str) for k in fields):
            raise ValueError(f"adapters as a dict must map field names (str) to adapters, got keys {fields!r}")
    elif isinstance(adapters, Sequence) and not isinstance(adapters, str):
        members = list(adapters)
        if not members:
            raise ValueError("adapters is an empty list; pass at least one adapter, e.g. Mixup(1.0)")
    else:
        raise TypeError(f"adapters must be an Adapter, a list or a dict of them, got {type(adapters).__name__}")
    for i, adapter in enumerate(members):
        if not isinstance(adapter, Adapter):
            raise TypeError(f"adapters[{i}] must be a multimix Adapter (e.g. Mixup(1.0)), got {type(adapter).__name__}")
        if isinstance(adapter, Switch) and (len(members) > 1 or fields is not None):
            raise ValueError(
                "a Switch chooses an adapter per sample and must be the Mixer's only adapter: Mixer(Switch([...]), "
                "per_sample=True), or pass its members as the list with switch='sample'"
            )
    if fields is None:
        return members, None, [("inputs", members)]
    return members, fields, [(name, [adapter]) for name, adapter in zip(fields, members, strict=True)]


class CallInputs:
    """The Mixer's checks of a call (a base class, so the checks read the Mixer's own configuration)."""

    # the Mixer's configuration that the checks read
    adapters: list[Adapter]
    fields: list[str] | None
    _routes: list[Route]
    _sources: list[Any]  # region_sources of the routes
    num_classes: int
    target_key: str
    switch: str
    label_smoothing: float
    multi_label: bool
    ignore_index: int
    validate: bool

    def _split(
        self,
        inputs: Inputs,
        targets: torch.Tensor | None,
        lengths: torch.Tensor | None,
        *,
        need_targets: bool = True,
        values: bool = True,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Return the fields of a call to mix and its targets, checking everything before any write or draw.

        ``values=False`` keeps to the checks of shapes, dtypes and layouts, which read no
        data and so trace under ``torch.compile``.
        """
        if self.fields is None:
            if not isinstance(inputs, torch.Tensor) and isinstance(inputs, Mapping):
                raise TypeError("got a dict batch but this Mixer has no field names; build it with {field: adapter}")
            if targets is None and need_targets:
                raise ValueError("targets is missing: call mixer(inputs, targets)")
            fields_ = {"inputs": inputs}
        else:
            if not isinstance(inputs, Mapping):
                raise TypeError(f"this Mixer mixes dict batches with fields {self.fields}, got {type(inputs).__name__}")
            missing = [name for name in self.fields if name not in inputs]
            if missing:
                raise ValueError(f"batch has no field(s) {missing}; it has {sorted(inputs)}")
            if targets is None and (need_targets or self.target_key in inputs):
                if self.target_key not in inputs:
                    raise ValueError(f"batch has no targets under {self.target_key!r}; pass targets or set target_key")
                targets = inputs[self.target_key]
            fields_ = {name: inputs[name] for name in self.fields}
        batch_size = None
        for (name, candidates), x in zip(self._routes, fields_.values(), strict=True):
            for candidate in candidates:
                candidate.check_input(x, name)
            if batch_size is not None and x.shape[0] != batch_size:
                raise ValueError(f"field {name!r} has batch size {x.shape[0]}, other fields {batch_size}")
            batch_size = x.shape[0]
        if values and self.fields is not None:
            _check_disjoint(fields_, self._routes)
        device = next(iter(fields_.values())).device
        for name, value in (("targets", targets), ("lengths", lengths)):
            if isinstance(value, torch.Tensor) and value.device != device and value.device.type != "cpu":
                raise ValueError(
                    f"{name} is on {value.device} but the inputs are on {device}; put them on the inputs' device "
                    f"(or leave them on the CPU: they are moved with the plan)"
                )
        if targets is not None:
            first = next(iter(fields_.values()))
            # label maps follow the adapter's positions; class indices (B,) need no shape
            multi_dim = not isinstance(targets, torch.Tensor) or targets.dim() > 1
            label_shape = _agreed_label_shape(self._routes[0][1], first, targets) if multi_dim else None
            check_targets(targets, self.num_classes, batch_size, multi_label=self.multi_label, validate=self.validate,
                          values=values, label_shape=label_shape, ignore_index=self.ignore_index)  # fmt: skip
            if target_kind(targets) == "map" and self.label_smoothing > 0:
                raise ValueError(
                    f"label_smoothing={self.label_smoothing} is not folded into integer label maps; build the Mixer "
                    "without it and smooth in the criterion, e.g. nn.CrossEntropyLoss(label_smoothing=0.1)"
                )
        if lengths is not None:
            if self.switch == "sample":
                raise ValueError("lengths= works with one adapter per batch; build the Mixer with switch='batch'")
            if self.fields is not None:
                raise ValueError("lengths= works with tensor batches; a dict-built Mixer mixes fields without lengths")
            for adapter in self.adapters:
                adapter.check_lengths()
            check_lengths(lengths, batch_size, fields_["inputs"].shape[-1], validate=self.validate, values=values)
        return fields_, targets

    def _check_plan(self, plan: MixPlan, fields_: dict[str, torch.Tensor]) -> None:
        """Refuse a plan that was not drawn for these inputs (batch, device, sample shape) or lacks a region."""
        first = next(iter(fields_.values()))
        if first.shape[0] != plan.batch_size or plan.device != first.device:
            raise ValueError(
                f"plan was drawn for {plan.batch_size} samples on {plan.device}, but inputs hold {first.shape[0]} on "
                f"{first.device}; draw it with mixer.plan_for(inputs) for this batch"
            )
        if plan.sample_shape is not None and plan.sample_shape != sample_shape(fields_):
            raise ValueError(
                f"plan was drawn for samples of shape {plan.sample_shape}, but inputs hold {sample_shape(fields_)}; "
                "its region fits the inputs it was drawn for: draw it with mixer.plan_for(inputs) for this batch"
            )
        if plan.drawn_by is not None:  # drawn by plan_for: its regions are what the adapters drew, if they are these
            expected = self._sources[min(plan.choice, len(self._sources) - 1)]
            if plan.drawn_by != expected:
                raise ValueError(
                    f"plan was drawn for {plan.drawn_by} (by another Mixer's plan_for), but this Mixer "
                    f"mixes with {expected}; draw it with this mixer's plan_for(inputs)"
                )
            return
        for name, candidates in self._routes:
            region = plan.region if self.fields is None else (plan.region or {}).get(name)
            adapter = candidates[min(plan.choice, len(candidates) - 1)]
            if region is None and type(adapter).draw_region is not Adapter.draw_region:
                raise ValueError(
                    f"plan holds no region for {type(adapter).__name__} (a MixPlan built by hand?), which mixes "
                    "a region it draws on the host; draw the plan with mixer.plan_for(inputs)"
                )
        host = plan.on_host  # a plan built by hand: its values, where reading them costs nothing (eager, on the CPU)
        if not torch.compiler.is_compiling() and host.index.device.type == "cpu":
            check_partners(host.index, host.lam, "plan")


def _agreed_label_shape(adapters: Sequence[Adapter], x: torch.Tensor, targets: object) -> tuple[int | None, ...] | None:
    """The positions label maps follow, which every adapter that may be chosen must agree on when the targets are
    maps (a map that fits SpecMixup's frames cannot follow FMix's time-frequency mask); class labels need not."""
    found = [named for adapter in adapters for named in adapter.label_shapes(x)]
    shapes = [shape for _, shape in found]
    maps = isinstance(targets, torch.Tensor) and any(follows_positions(targets, shape) for shape in shapes)
    if maps and len(set(shapes)) > 1:
        raise ValueError(
            f"targets: label maps follow the positions an adapter mixes, and these adapters mix different ones "
            f"({', '.join(f'{i}: {name} {shape}' for i, (name, shape) in enumerate(found))}); give such a Mixer "
            "class labels or rows, or choose adapters whose label positions agree"
        )
    return shapes[0]


def _byte_span(x: torch.Tensor) -> tuple[int, int]:
    """The first and one-past-last byte a tensor view can touch (from its strides, no data read)."""
    start = x.data_ptr()
    reach = sum((size - 1) * stride for size, stride in zip(x.shape, x.stride(), strict=True) if size > 0)
    return start, start + (reach + 1) * x.element_size()


def _check_disjoint(fields_: dict[str, torch.Tensor], routes: list[tuple[str, list[Adapter]]]) -> None:
    """Refuse dict batches whose fields share memory when one is written in place: it would be mixed twice."""
    spans = []
    for (name, candidates), x in zip(routes, fields_.values(), strict=True):
        if x.device.type == "meta" or x.numel() == 0 or not any(a.writes_inplace(x) for a in candidates):
            continue
        spans.append((name, *_byte_span(x)))
    for k, (name, start, end) in enumerate(spans):
        for other, other_start, other_end in spans[:k]:
            if start < other_end and other_start < end:
                raise ValueError(
                    f"fields {other!r} and {name!r} share memory, so mixing in place would mix it twice; "
                    f"pass separate tensors (e.g. batch[{name!r}].clone()) or build the adapters with inplace=False"
                )


def region_sources(routes: list[Route], tensor_batch: bool) -> list[Any]:
    """For each adapter choice, what a plan's ``drawn_by`` holds: the adapter names whose regions it carries (per
    field for dict batches, naming a field whose adapter object it shares, as they share its region; a switch with
    its members), found once when the Mixer is built."""

    def name(adapter: Adapter) -> str:
        if isinstance(adapter, Switch):
            return f"Switch({', '.join(type(member).__name__ for member in adapter.adapters)})"
        return type(adapter).__name__

    found = []
    for k in range(max(len(candidates) for _, candidates in routes)):
        names: dict[str, str] = {}
        owners: dict[int, str] = {}  # the first field each adapter object mixes
        for field, candidates in routes:
            adapter = candidates[min(k, len(candidates) - 1)]
            owner = owners.setdefault(id(adapter), field)
            names[field] = name(adapter) + (f" (the object of {owner!r})" if owner != field else "")
        found.append(names)
    return [names["inputs"] for names in found] if tensor_batch else found


def sample_shape(fields_: dict[str, torch.Tensor]) -> Any:
    """One sample's shape, per field for dict batches: what a plan's region was drawn for."""
    if list(fields_) == ["inputs"]:
        return tuple(fields_["inputs"].shape[1:])
    return {name: tuple(x.shape[1:]) for name, x in fields_.items()}
