"""The Mixer: validate, draw one plan, let the adapter apply it, mix the targets.

The template call lives here (torchvision's ``Transform.forward`` pattern): adapters
only implement the modality-specific part, so every modality gets the same
validation, randomness, target contract and schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from multimix._checks import check_positive_int, seeded_generator
from multimix.adapter import Adapter
from multimix.batch import Inputs, MixedBatch
from multimix.inputs import CallInputs, adapter_routes, region_sources, sample_shape
from multimix.lengths import Validity
from multimix.plan import SWITCHES, MixPlan, _draw, identity_plan
from multimix.schedule import Schedule, Scheduled
from multimix.settings import CHECKS, FIXED
from multimix.switch import Switch, adapter_weights
from multimix.targets import LabelMix, target_kind
from multimix.workers import WorkerCopies

__all__ = ["MixedBatch", "Mixer"]


class Mixer(CallInputs, WorkerCopies, Scheduled):
    """Draw one mixing plan per batch and apply it to inputs and targets.

    Args:
        adapters: an adapter (``Mixup(1.0)``); a list of adapters, one chosen per
            batch (timm's mixup/CutMix switch); or a dict ``{field: adapter}`` to mix
            named fields of dict batches with one plan (the first field's label
            weight mixes the targets; other fields pass through untouched). Fields
            given the same adapter object share its region where their positions
            agree (one box for aligned RGB and depth); separate adapters draw their own.
        num_classes: width C of the soft targets.
        per_sample: one lam (and CutMix box) per sample instead of per batch.
        p: probability that each sample is mixed; the others get lam=1, index=self.
        switch_prob: with two adapters, the probability of the second (timm); or
            one probability per adapter. Uniform if None.
        switch: with a list of adapters, ``"batch"`` (default) chooses one adapter per
            batch; ``"sample"`` chooses one per sample (timm's ``mode="elem"``), each
            sample's lam drawn from its adapter's alpha; it needs ``per_sample=True``.
            The list becomes one :class:`~multimix.switch.Switch` adapter; each sample
            reads its partner's original value whatever the partner chose (see
            docs/integrations.md, "timm", for the cost).
        label_smoothing: folded into the targets (timm's on/off values).
        label_mode: how lam weighs a mixed sample's two label sets (docs/targets.md):
            ``"lerp"`` (default, ``lam * y + (1 - lam) * y[index]``), ``"union"`` (both label
            sets, the maximum of the two rows: multi-label), ``"original"`` (each sample keeps
            its own labels) or ``"dominant"`` (the larger share's labels, ``lam >= 0.5``
            keeping its own). For every adapter, label maps and losses.
        ignore_index: in label maps (segmentation masks ``(B, H, W)``, frame labels
            ``(B, T)``), the label of positions that carry none (torch's -100 by default).
        multi_label: targets are multi-hot rows meant for BCE; rows need not sum to 1.
        seed: seed of the plan generator; or pass ``generator``. If neither, the
            seed is drawn from torch's global RNG (so ``torch.manual_seed`` fixes it).
        generator: a CPU ``torch.Generator`` to draw plans from.
        off_epoch: :meth:`set_epoch` switches mixing off from this epoch on (timm's
            ``mixup_off_epoch``).
        alpha_schedule: ``epoch -> factor``; :meth:`set_epoch` sets each adapter's
            alpha to its initial alpha times the factor.
        target_key: where dict batches keep their targets.
        validate: also check the values of accelerator tensors (label range, target
            rows, lengths) on the host, which waits for the device at every call; for
            debugging. Values of CPU tensors are always checked; see docs/concepts.md.

    Example:
        >>> import torch, multimix
        >>> from multimix.image import Mixup, CutMix
        >>> mixer = multimix.Mixer([Mixup(0.8), CutMix(1.0)], num_classes=10, seed=0)
        >>> out = mixer(torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,)))
        >>> out.targets.sum(1)
        tensor([1., 1., 1., 1., 1., 1., 1., 1.])
    """

    def __init__(
        self,
        adapters: Adapter | Sequence[Adapter] | Mapping[str, Adapter],
        num_classes: int,
        *,
        per_sample: bool = False,
        p: float = 1.0,
        switch_prob: float | Sequence[float] | None = None,
        switch: str = "batch",
        label_smoothing: float = 0.0,
        label_mode: str = "lerp",
        ignore_index: int = -100,
        multi_label: bool = False,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        off_epoch: int | None = None,
        alpha_schedule: Callable[[int], float] | None = None,
        target_key: str = "labels",
        validate: bool = False,
    ) -> None:
        self.adapters, self.fields, self._routes = adapter_routes(adapters)
        self.num_classes = num_classes
        self.per_sample, self.multi_label, self.validate = per_sample, multi_label, validate  # each checked when set
        self.p, self.label_smoothing, self.label_mode = p, label_smoothing, label_mode
        self.ignore_index = ignore_index
        self.weights = adapter_weights(switch_prob, len(self.adapters)) if self.fields is None else None
        if self.fields is not None and switch_prob is not None:
            raise ValueError(
                "switch_prob chooses between a list of adapters; a dict of adapters mixes every field each batch"
            )
        if switch not in SWITCHES:
            raise ValueError(
                f"switch must be 'batch' (one adapter per batch) or 'sample' (one per sample), got {switch!r}"
            )
        if switch == "sample" and self.fields is not None:
            raise ValueError("switch='sample' chooses among a list of adapters; a dict of adapters has one per field")
        if switch == "sample" and not per_sample:
            raise ValueError(
                "switch='sample' draws one lam per sample from each sample's adapter; pass per_sample=True"
            )
        self.switch = switch
        if switch == "sample":  # one composite adapter: the Mixer keeps one path
            self._routes = [("inputs", [Switch(self.adapters)])]
        if isinstance(self._routes[0][1][0], Switch) and not per_sample:
            raise ValueError("a Switch draws one lam per sample from each sample's adapter; pass per_sample=True")
        self._sources = region_sources(self._routes, self.fields is None)
        self.generator = seeded_generator(seed, generator)
        self.seed = seed if seed is not None else int(self.generator.initial_seed())
        self.target_key = target_key
        members = self._routes[0][1][0].adapters if isinstance(self._routes[0][1][0], Switch) else self.adapters
        self._schedule = Schedule(members, None, None)
        self.off_epoch, self.alpha_schedule = off_epoch, alpha_schedule  # checked and kept by the schedule
        self._worker_seed: int | None = None
        if type(self) is Mixer:
            self._built = True

    def __setattr__(self, name: str, value: Any) -> None:
        """Check a setting as the constructor does, and refuse attributes the Mixer does not have (a leftover
        ``mixer.mixup_enabled = False`` would do nothing) or cannot change once built."""
        if name in CHECKS:
            value = CHECKS[name](value, name)
        if self.__dict__.get("_built"):
            known = name.startswith("_") or name in self.__dict__ or hasattr(type(self), name)
            if not known:
                hint = "; to switch mixing off use mixer.enabled = False" if "enable" in name else ""
                raise AttributeError(f"Mixer has no attribute {name!r}, so setting it would do nothing{hint}")
            if name in FIXED:
                raise AttributeError(f"Mixer.{name} is fixed when the Mixer is built; {FIXED[name]}")
            if name == "per_sample" and not value and isinstance(self._routes[0][1][0], Switch):
                raise ValueError("a Switch draws one lam per sample from each sample's adapter; per_sample stays True")
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ call
    def plan_for(
        self, inputs: Inputs, targets: torch.Tensor | None = None, *, lengths: torch.Tensor | None = None
    ) -> MixPlan:
        """Draw the next plan for ``inputs`` on the host and place it on their device: the first phase of a call.

        Runs every check on what it is given (inputs; targets and lengths too when given,
        values included where reading them costs nothing), draws every random decision
        from the generator (the partner map, lam, the adapter's region), then moves plan
        and region to the inputs' device in one copy. Bad input raises here, before
        anything is drawn. Call it outside a compiled step; :meth:`apply` goes inside.

        Example:
            >>> import torch, multimix
            >>> from multimix.image import CutMix
            >>> mixer = multimix.Mixer(CutMix(1.0), num_classes=10, seed=0)
            >>> images, labels = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
            >>> plan = mixer.plan_for(images)
            >>> step = torch.compile(mixer.apply, fullgraph=True, backend="eager")
            >>> out = step(images, labels, plan)
            >>> out.targets.shape, bool(torch.allclose(out.targets.sum(1), torch.ones(8)))
            (torch.Size([8, 10]), True)
        """
        fields_, _ = self._split(inputs, targets, lengths, need_targets=False)
        return self._plan(fields_)[0]

    def _plan(self, fields_: dict[str, torch.Tensor], extra: Any = None) -> tuple[MixPlan, Any]:
        """The placed plan, and ``extra`` (labels, lengths) moved to the inputs' device in the same copy."""
        first = next(iter(fields_.values()))
        plan = self.draw(first.shape[0])
        if self.fields is None:
            candidates = self._routes[0][1]
            region = candidates[min(plan.choice, len(candidates) - 1)].draw_region(first, plan, self.generator)
        else:  # one adapter object over fields of the same positions draws one region for them (RGB and depth)
            region, drawn = {}, {}
            for (name, candidates), x in zip(self._routes, fields_.values(), strict=True):
                key = _region_key(candidates[0], x)
                if key not in drawn:
                    drawn[key] = candidates[0].draw_region(x, plan, self.generator)
                region[name] = drawn[key]
        drawn_by = self._sources[min(plan.choice, len(self._sources) - 1)]
        return plan.with_region(region, sample_shape(fields_), drawn_by).to(first.device, extra)

    def apply(
        self, inputs: Inputs, targets: torch.Tensor | None, plan: MixPlan, *, lengths: torch.Tensor | None = None
    ) -> MixedBatch:
        """Mix ``inputs`` and their targets by a plan from :meth:`plan_for`: the second phase of a call.

        Tensor operations only, decided by the plan's host values: nothing is read back
        from the device and no shape depends on a value, so ``torch.compile(...,
        fullgraph=True)`` captures it and a CUDA graph can replay it. Shapes and dtypes
        are checked; values too in eager mode, as a Mixer call checks them (never while traced). In eager mode
        adapters write into ``inputs`` (their ``inplace`` default); under ``torch.compile``
        the writes are functionalised.
        """
        if not isinstance(plan, MixPlan):
            raise TypeError(f"plan must be the MixPlan that mixer.plan_for(inputs) returned, got {type(plan).__name__}")
        # eager calls check values as a Mixer call does (plan_for may not have seen the targets); traced ones cannot
        fields_, targets = self._split(inputs, targets, lengths, values=not torch.compiler.is_compiling())
        self._check_plan(plan, fields_)
        return self._apply(inputs, fields_, targets, plan, lengths)

    def _apply(
        self,
        inputs: Inputs,
        fields_: dict[str, torch.Tensor],
        targets: torch.Tensor,
        plan: MixPlan,
        lengths: torch.Tensor | None,
    ) -> MixedBatch:
        first = next(iter(fields_.values()))
        device = first.device
        if targets.device != device:
            targets = targets.to(device, non_blocking=True)
        validity = None
        if lengths is not None:
            validity = Validity.of(lengths.to(device, non_blocking=True), first.shape[-1], lengths.dtype)
        kind = target_kind(targets)
        mixed, label_lam, moved, shared = {}, None, None, {}
        for (name, candidates), x in zip(self._routes, fields_.values(), strict=True):
            region = plan.region if self.fields is None else plan.region[name]
            adapter = candidates[min(plan.choice, len(candidates) - 1)]
            if self.fields is not None:  # fields sharing a region take the first one's fitting (SaliencyMix's boxes)
                key = _region_key(adapter, x)  # as plan_for drew it (on a device, the regions are copies)
                if key not in shared:
                    shared[key] = adapter.prepare(x, plan, region)
                region = shared[key]
            maps = kind in ("map", "map_rows")
            if label_lam is None and (maps or validity is not None):  # before apply writes x: the region reads it
                # what labels and pixels both need, once (the lengths only to adapters that take them)
                region = adapter.prepare(x, plan, region) if validity is None else \
                    adapter.prepare(x, plan, region, validity)  # fmt: skip
                moved = adapter.mix_label_map(targets, x, plan, region) if maps else None
            mixed[name], lam = adapter.apply(x, plan, region, validity)
            label_lam = lam if label_lam is None else label_lam
        lam = label_lam.to(torch.float32)
        if moved is None:  # a blend: every position follows lam (a partner map only for maps)
            partner = targets.index_select(0, plan.index) if kind in ("map", "map_rows") else None
            moved = partner, (lam if kind == "index" else label_lam)  # index targets give float32 rows: lam as is
        partner, weight = moved
        mix = LabelMix(targets, partner, weight, plan.index, not plan.nothing_to_mix, kind, self.num_classes,
                       self.label_smoothing, self.label_mode, self.ignore_index)  # fmt: skip
        host = plan.on_host
        if self.fields is None:
            if validity is None:
                return MixedBatch(mixed["inputs"], None, lam, plan.index, host, host.region, labels=targets, mix=mix)
            # the region as the adapter fitted it to the lengths (on the device), and the lengths of the mix
            out_validity = validity if adapter.keeps_lengths else validity.union(plan)
            return MixedBatch(mixed["inputs"], None, lam, plan.index, host, region, out_validity.export(),
                              labels=targets, mix=mix)  # fmt: skip
        out_inputs = {k: v for k, v in inputs.items() if k != self.target_key}
        out_inputs.update(mixed)
        return MixedBatch(out_inputs, None, lam, plan.index, host, host.region, labels=targets, mix=mix)

    def __call__(
        self, inputs: Inputs, targets: torch.Tensor | None = None, *, lengths: torch.Tensor | None = None
    ) -> MixedBatch:
        """Mix one batch: ``mixer.apply(inputs, targets, mixer.plan_for(inputs, targets))``.

        Bad input raises before anything is written or drawn. The plan is drawn on the CPU
        and moved to the batch's device once, with the adapter's region; nothing is read
        back from the device, so the call never waits for it.

        Args:
            inputs: a tensor, or a dict batch for a dict-built mixer.
            targets: class indices ``(B,)`` or rows ``(B, C)``; label maps that follow the
                inputs' positions (integer ``(B, H, W)`` masks for images, ``(B, T, H, W)``
                for video, ``(B, T)`` frame labels or ``(B, T, C)`` frame rows for audio: see
                docs/targets.md); for dict batches, taken from ``inputs[target_key]`` when not given.
            lengths: for audio adapters, valid lengths ``(B,)`` or a padding mask
                ``(B, T)`` along the last axis; the mixed ones come back on the batch.
        """
        fields_, targets = self._split(inputs, targets, lengths)
        plan, (targets, lengths) = self._plan(fields_, (targets, lengths))  # one copy to the device for all three
        return self._apply(inputs, fields_, targets, plan, lengths)

    def draw(self, batch_size: int) -> MixPlan:
        """Draw the next plan from the generator; the identity plan while mixing is off or ``p == 0``."""
        if not (self.enabled and self.p > 0):
            return identity_plan(batch_size)
        check_positive_int(batch_size, "batch_size")
        candidates = self._routes[0][1]
        if isinstance(candidates[0], Switch):
            return _draw(batch_size, candidates[0].alphas, self.generator, self.weights, True, self.p, "sample")
        alphas = [adapter.alpha for adapter in candidates]  # each checked when it was set
        return _draw(batch_size, alphas, self.generator, self.weights, self.per_sample, self.p, "batch")

    def __repr__(self) -> str:
        adapters = dict(zip(self.fields, self.adapters, strict=True)) if self.fields else self.adapters
        return (
            f"Mixer({adapters!r}, num_classes={self.num_classes}, per_sample={self.per_sample}, p={self.p}, "
            + (f"switch={self.switch!r}, " if self.switch != "batch" else "")
            + f"label_smoothing={self.label_smoothing}, "
            + (f"label_mode={self.label_mode!r}, " if self.label_mode != "lerp" else "")
            + (f"ignore_index={self.ignore_index}, " if self.ignore_index != -100 else "")
            + f"multi_label={self.multi_label})"
        )


def _region_key(adapter: Adapter, x: torch.Tensor) -> tuple[int, Any]:
    """Fields of a dict batch with the same key share one region: one adapter object over the same positions."""
    return id(adapter), adapter.region_shape(x)
