"""Manifold mixup in any ``nn.Module``: mix hidden states at a submodule named by its path.

Verma et al., "Manifold Mixup: Better Representations by Interpolating Hidden States",
ICML 2019: each step, draw a layer k from a set, run the network to k, replace its
output h by ``lam * h + (1 - lam) * h[index]`` and train the rest of the network on
the mixed targets. ``wrap_module(model, HiddenMix(alpha, layers=["layer2", "layer3"]))``
does that for an unmodified model (a torchvision ResNet's stages, a timm ViT's
``blocks.3``, a plain CNN's ``features.3``; 0 mixes the input): the plan and the layer
come from the Mixer's generator, a forward hook on the chosen submodule is registered
for one call and removed in ``finally``. The Hugging Face wrapper (:mod:`multimix.hf`)
does the same for encoders by layer number.

Gradient checkpointing works when the chosen submodule ends a checkpointed region
(timm's ``set_grad_checkpointing()`` checkpoints each block; HF checkpoints ``forward``),
with non-reentrant checkpointing: the mixing keeps its own saved tensors, outside the
region's recomputation. Reentrant checkpointing runs the region without autograd and
would drop the mixing from the backward pass, so it is refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from multimix.losses import binary_cross_entropy, soft_cross_entropy
from multimix.mixer import Mixer
from multimix.plan import MixPlan, placed_on
from multimix.target_checks import check_targets
from multimix.targets import mixed_targets, smoothed_rows
from multimix.text import HiddenMix

__all__ = ["ManifoldModel", "ManifoldOutput", "wrap_module"]

INPUT = 0  # the mixing point "before the first layer": the model's input


@dataclass
class ManifoldOutput:
    """A train step of :class:`ManifoldModel`: logits of the mixed batch, its soft targets and loss.

    ``lam`` and ``index`` are the plan on the targets' device; ``layer`` is where it mixed.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    loss: torch.Tensor
    lam: torch.Tensor | None = None
    index: torch.Tensor | None = None
    layer: str | int | None = None


def _keep(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass
class _Step:
    """One train forward of a :class:`ManifoldModel`: the plan on the batch's device and the mixing point."""

    plan: MixPlan
    point: str | int
    grad: bool
    placed: dict[str, MixPlan] = field(default_factory=dict)
    lam: torch.Tensor | None = None  # the label lam the blend applied (rounded to the hidden state's dtype)

    def on(self, device: torch.device) -> MixPlan:
        return placed_on(self.plan, self.placed, device)


class _Slot:
    """The step of the train forward in progress, or None: shared by the wrapper and its hooks."""

    step: _Step | None = None


class _MixHook:
    """The forward hook on one mixing point: mixes the submodule's output when the step chose it, else nothing.

    Registered once per point when the model is wrapped (and removed by ``multimix.unwrap``),
    so ``torch.compile`` sees the same hook at every step.
    """

    def __init__(self, adapter: HiddenMix, slot: _Slot, layer: str) -> None:
        self.adapter, self.slot, self.layer = adapter, slot, layer

    def mix(self, h: Any, step: _Step) -> torch.Tensor:
        if not isinstance(h, torch.Tensor) or not h.is_floating_point() or h.dim() < 2:
            raise TypeError(
                f"layers={self.layer!r} returns {type(h).__name__} {getattr(h, 'dtype', '')}, not a float tensor "
                "(B, ...) to mix; name a submodule whose output is the hidden state"
            )
        if h.shape[0] != step.plan.batch_size:
            raise ValueError(
                f"layers={self.layer!r} returns shape {tuple(h.shape)}, whose first axis is not the batch "
                f"({step.plan.batch_size}); name a submodule that keeps the batch first"
            )
        if step.grad and not torch.is_grad_enabled():
            raise ValueError(
                f"layers={self.layer!r} runs without autograd inside the model (reentrant gradient checkpointing?), "
                "so the mixing would be missing from the backward pass; use use_reentrant=False"
            )
        if torch.compiler.is_compiling():
            mixed, step.lam = self.adapter.apply(h, step.on(h.device), None)
            return mixed
        # The mixing saves its own tensors (not the checkpoint's): a checkpointed region that
        # ends here recomputes exactly what it saved in the forward pass.
        with torch.autograd.graph.saved_tensors_hooks(_keep, _keep):
            mixed, step.lam = self.adapter.apply(h, step.on(h.device), None)
        return mixed

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> Any:
        step = self.slot.step
        if step is None or step.point != self.layer:
            return None
        if step.lam is not None:  # mixed already in this forward: a second mix would blend three samples
            raise ValueError(
                f"layers={self.layer!r} ran twice in one forward (a module the forward reuses, like a shared "
                "activation), so its output would be mixed twice while the labels mix two samples; name a submodule "
                "the forward calls once"
            )
        if isinstance(output, (tuple, list)) and output:
            return type(output)((self.mix(output[0], step), *output[1:]))
        return self.mix(output, step)


class ManifoldModel(nn.Module):
    """Any classifier ``model(x) -> (B, C)`` trained with manifold mixup; see :func:`wrap_module`."""

    def __init__(self, model: nn.Module, adapter: HiddenMix, num_classes: int, **mixer_kwargs: Any) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(adapter, HiddenMix):
            raise TypeError(
                f"adapter must be HiddenMix(alpha, layers=[...]) naming submodules, got {type(adapter).__name__}; "
                "input adapters (Mixup, CutMix) go through a Mixer on the batch"
            )
        if adapter.layers is None:
            raise ValueError(
                f"HiddenMix(layers=None) picks HF encoder layers; for {type(model).__name__} name submodules by "
                "path, e.g. layers=['layer2', 'layer3'] (see model.named_modules())"
            )
        mixer_kwargs.setdefault("per_sample", True)
        self.mixer = Mixer(adapter, num_classes, **mixer_kwargs)
        self.base_model = model
        self.adapter = adapter
        self.mix_points = tuple(_check_point(model, layer) for layer in adapter.layers)
        self._mixing = True
        self._slot = _Slot()
        self._hooks = [_MixHook(adapter, self._slot, point) for point in self.mix_points if point != INPUT]
        self._hook()
        self.training = model.training  # the wrapper starts in the model's mode (a module starts in train mode)

    def _hook(self) -> None:
        """Put the mixing hooks on their submodules (at wrap time, and again if :meth:`release` took them off)."""
        self._handles = [self.base_model.get_submodule(hook.layer).register_forward_hook(hook) for hook in self._hooks]

    def release(self) -> nn.Module:
        """Take the hooks off the base model and return it (``multimix.unwrap``); a later train step hooks again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return self.base_model

    def __getattr__(self, name: str) -> Any:
        """Forward unknown attributes to the base model, as PEFT does."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    @contextmanager
    def disable_mixing(self) -> Iterator[ManifoldModel]:
        """Within the block, train steps run the plain model (with a plain loss when given labels)."""
        previous, self._mixing = self._mixing, False
        try:
            yield self
        finally:
            self._mixing = previous

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = binary_cross_entropy if self.mixer.multi_label else soft_cross_entropy
        return loss(logits, targets.to(logits.device))

    def _host_call(self, x: Any, *args: Any, labels: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """The module call: in a train step, draw the plan and the point on the host, then run the forward.

        ``torch.compile`` skips this frame and compiles the forward it calls, so the draws
        never split the model's graph.
        """
        if not (self.training and self._mixing and labels is not None) or self._slot.step is not None:
            return nn.Module.__call__(self, x, *args, labels=labels, **kwargs)
        self._slot.step = self._draw_step(x, labels)
        try:
            return nn.Module.__call__(self, x, *args, labels=labels, **kwargs)
        finally:
            self._slot.step = None

    @torch.compiler.disable
    def _draw_step(self, x: Any, labels: torch.Tensor) -> _Step:
        """Check the batch and labels, draw the plan and the mixing point, place the plan on the batch's device."""
        mixer = self.mixer
        if not isinstance(x, torch.Tensor) or x.dim() < 1:
            raise TypeError(f"x must be a batch tensor (B, ...), got {type(x).__name__}")
        check_targets(labels, mixer.num_classes, x.shape[0], multi_label=mixer.multi_label, validate=mixer.validate)
        if len(self._handles) != len(self._hooks):
            self._hook()
        plan = mixer.draw(x.shape[0])
        point = self.adapter.choose(self.mix_points, mixer.generator)
        return _Step(plan.to(x.device)[0], point, torch.is_grad_enabled())

    def forward(self, x: torch.Tensor, *args: Any, labels: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """Train mode with labels: a mixed step as :class:`ManifoldOutput`. Otherwise exactly ``model(x)``.

        In eval mode (or within :meth:`disable_mixing`) labels, if given, only add the plain loss.
        """
        mixer = self.mixer
        if not (self.training and self._mixing):
            logits = self.base_model(x, *args, **kwargs)
            if labels is None:
                return logits
            check_targets(labels, mixer.num_classes, x.shape[0], multi_label=mixer.multi_label, validate=mixer.validate)
            targets = smoothed_rows(labels.to(logits.device), mixer.num_classes, 0.0)
            return ManifoldOutput(logits, targets, self._loss(logits, targets))
        if labels is None:
            raise ValueError(
                "labels are required in train mode (the wrapper computes the mixed loss); pass labels=, "
                "call model.eval(), or use `with model.disable_mixing():`"
            )
        step = self._slot.step
        if step is None:  # forward called directly, not through the module call: draw here
            return self._host_call(x, *args, labels=labels, **kwargs)
        if step.point == INPUT:
            x = _MixHook(self.adapter, self._slot, INPUT).mix(x, step)
        logits = self.base_model(x, *args, **kwargs)
        if step.lam is None:  # the hook that mixes never ran: the labels must not be mixed either
            raise ValueError(
                f"layers holds {step.point!r}, a submodule {type(self.base_model).__name__}.forward did not run, so "
                "nothing was mixed; name submodules the forward calls (see model.named_modules())"
            )
        plan = step.on(labels.device)
        lam = step.lam.to(labels.device)  # the weight the blend applied (rounded to the hidden state's dtype)
        targets = mixed_targets(labels, plan, lam, mixer.num_classes, mixer.label_smoothing,
                                label_mode=mixer.label_mode)  # fmt: skip
        return ManifoldOutput(logits, targets, self._loss(logits, targets), lam, plan.index, step.point)


# torch.compile skips the call's own frame and compiles the forward it calls; the draw runs eagerly as a whole.
ManifoldModel.__call__ = torch.compiler.disable(ManifoldModel._host_call, recursive=False)


def _check_point(model: nn.Module, layer: object) -> str | int:
    """A mixing point of ``model``: 0 (its input) or the path of one of its submodules."""
    if layer == INPUT and not isinstance(layer, bool):
        return INPUT
    if isinstance(layer, str):
        try:
            model.get_submodule(layer)
            return layer
        except AttributeError:
            pass
    names = [name for name, _ in model.named_children()]
    raise ValueError(
        f"layers holds {layer!r}, which is not a submodule of {type(model).__name__}; name submodules by their "
        f"path in model.named_modules() (its children: {names[:8]}), or 0 for the input"
    )


def wrap_module(model: nn.Module, adapter: HiddenMix, num_classes: int, **mixer_kwargs: Any) -> ManifoldModel:
    """Train any classifier with manifold mixup at the submodules that ``adapter.layers`` names.

    Args:
        model: any ``nn.Module`` mapping a batch ``(B, ...)`` to logits ``(B, C)``.
        adapter: ``HiddenMix(alpha, layers=[...])`` with submodule paths (``"layer2"``,
            ``"blocks.3"``) or 0 for the input; one is drawn per step.
        num_classes: C, the width of the logits and targets.
        **mixer_kwargs: :class:`~multimix.Mixer` options (``per_sample`` defaults to True,
            as in :func:`multimix.wrap`; ``multi_label=True`` trains with BCE).

    Returns:
        A module forwarding attributes to ``model``: in train mode ``wrapped(x, labels=y)``
        returns a :class:`ManifoldOutput` (``.logits``, ``.targets``, ``.loss``); in eval
        mode ``wrapped(x)`` is exactly ``model(x)``. ``wrapped.base_model`` is ``model``:
        its ``state_dict()`` is the network's checkpoint (the wrapper's own keys carry
        the ``base_model.`` prefix of a PEFT model's).

    Example:
        >>> from multimix.text import HiddenMix
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> wrapped = wrap_module(net, HiddenMix(1.0, layers=["1"]), num_classes=3, seed=0).train()
        >>> out = wrapped(torch.randn(5, 4), labels=torch.tensor([0, 1, 2, 0, 1]))
        >>> out.logits.shape, out.targets.shape, out.loss.shape
        (torch.Size([5, 3]), torch.Size([5, 3]), torch.Size([]))
    """
    if isinstance(model, ManifoldModel):
        warnings.warn(
            "model is already wrapped by multimix; wrapping its base model instead of stacking two wrappers",
            UserWarning,
            stacklevel=2,
        )
        model = model.release()  # its hooks off the base model (it hooks again if it trains again)
    return ManifoldModel(model, adapter, num_classes, **mixer_kwargs)
