"""The hooks behind ``multimix.wrap`` for Hugging Face models: mix at one layer, unite the masks after it.

Hooks sit on the layer modules themselves (so a gradient-checkpointed layer re-runs
with the same inputs). They are registered once, when the model is wrapped, and
removed by ``multimix.unwrap``; each reads the step the wrapper set for one train
forward (:class:`Step`, in a :class:`Slot`) and does nothing without one, so eval
and the base model's own calls run unchanged. Registered once, the hooks are the
same objects at every step: ``torch.compile`` traces them into the model's graph
once and replays it, reading each step's plan as a graph input.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from multimix.adapter import Adapter
from multimix.plan import MixPlan, placed_on
from multimix.text import POOLED

__all__: list[str] = []  # used by multimix.hf.wrapper; not part of the public API

SUPPORTED = (
    "BERT, RoBERTa, XLM-RoBERTa, DistilBERT, DeBERTa-v2/v3, ELECTRA, ModernBERT, GPT-2, Llama, Qwen2 (any model "
    "whose layers sit in one nn.ModuleList of config.num_hidden_layers)"
)
# Heads that read a per-token (B, T, H) input and pool at the last non-padding token.
LAST_TOKEN_HEAD = "score"


def find_encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` holding the model's ``config.num_hidden_layers`` layers."""
    config = getattr(model, "config", None)
    depth = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    found = [m for m in model.modules() if isinstance(m, nn.ModuleList) and depth and len(m) == depth]
    if len(found) != 1:
        raise ValueError(
            f"cannot find the encoder layers of {type(model).__name__} (looked for one nn.ModuleList of "
            f"num_hidden_layers={depth} layers, found {len(found)}); HiddenMix supports {SUPPORTED}"
        )
    return found[0]


def union_mask(mask: torch.Tensor, plan: MixPlan) -> torch.Tensor:
    """Where a sample is mixed, attend wherever it or its partner may attend; elsewhere keep its own mask.

    Works for every mask form HF models pass their layers: bool (True = attend),
    additive float (0 = attend, very negative = masked) and 0/1 integers, since in
    each the "attend" value is the larger one; 4-D causal masks unite row by row.
    ``plan`` is placed on the mask's device.
    """
    plan, _ = plan.to(mask.device)
    if plan.nothing_to_mix:  # never while traced: one graph for every plan, whichever samples it mixes
        return mask
    partner = mask.index_select(0, plan.index)
    combined = mask | partner if mask.dtype == torch.bool else torch.maximum(mask, partner)
    if plan.nothing_to_keep:
        return combined
    return torch.where(plan.mixed.view(-1, *([1] * (mask.dim() - 1))), combined, mask)


def last_tokens(input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """``(B,)`` position of each row's last non-padding token, as HF's ``*ForSequenceClassification`` decoders pool.

    The rightmost token that is not ``pad_token_id`` (right or left padding alike),
    computed on the device without reading anything back.
    """
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device, dtype=torch.int32)
    return (positions * (input_ids != pad_token_id).to(torch.int32)).argmax(-1)


def mask_arguments(module: nn.Module) -> tuple[tuple[str, int], ...]:
    """The mask parameters of ``module.forward`` and their positions (after ``self``), found once at wrap time."""
    parameters = list(inspect.signature(module.forward).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(
        (p.name, i if p.kind in positional else -1) for i, p in enumerate(parameters) if "mask" in p.name
    )


@dataclass(frozen=True)
class Site:
    """Where a wrapped model is mixed, found once at wrap time: what the hooks read instead of the wrapper's state.

    Attributes:
        adapter: the ``HiddenMix`` that mixes the hidden states.
        layers: the encoder (or decoder) layers, in order.
        mask_arguments: per layer, its mask parameters and their positions.
        classifier: the head mixed at ``"pooled"`` (None for last-token heads).
        last_token_head: a decoder's ``score`` head, which pools at each row's last token (else None).
        pad_token_id: the padding token those heads skip.
        pools_with_mask: the head mean-pools with the 2-D attention mask (ModernBERT).
    """

    adapter: Adapter
    layers: tuple[nn.Module, ...]
    mask_arguments: tuple[tuple[tuple[str, int], ...], ...]
    classifier: nn.Module | None
    last_token_head: nn.Module | None
    pad_token_id: int | None
    pools_with_mask: bool


@dataclass
class Step:
    """One train forward: the plan placed on the batch's device, the mixing point, the mask copy and the ids.

    ``point`` is None when the wrapper mixes an input (``pixel_values``) rather than hidden
    states; ``inputs`` are the call's inputs by name, as the forward will receive them.
    """

    plan: MixPlan
    point: int | str | None
    attention_mask: torch.Tensor | None = None
    input_ids: torch.Tensor | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    placed: dict[str, MixPlan] = field(default_factory=dict)
    united: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    lam: torch.Tensor | None = None  # the label lam the hidden-state blend applied (rounded to its dtype)

    def on(self, device: torch.device) -> MixPlan:
        """The plan on ``device``: the batch's own, or placed once for a layer on another device."""
        return placed_on(self.plan, self.placed, device)


class Slot:
    """The step of the train forward in progress, or None: shared by a wrapper and its hooks."""

    step: Step | None = None


class _Hooks:
    """The hooks of one wrapped model; each does nothing unless the slot holds a step."""

    def __init__(self, site: Site, slot: Slot) -> None:
        self.site, self.slot = site, slot

    def mix(self, h: torch.Tensor, step: Step) -> torch.Tensor:
        """Blend ``h`` by the step's plan and keep the lam it applied for the targets."""
        mixed, step.lam = self.site.adapter.apply(h, step.on(h.device), None)
        return mixed

    def _unite(self, value: Any, step: Step) -> Any:
        if not isinstance(value, torch.Tensor) or value.dim() < 1 or value.shape[0] != step.plan.batch_size:
            return value
        if torch.compiler.is_compiling():  # traced, a repeated union is one node the compiler shares
            return union_mask(value, step.on(value.device))
        cached = step.united.get(id(value))  # eager: the model passes one mask object to every layer
        if cached is None or cached[0] is not value:
            cached = (value, union_mask(value, step.on(value.device)))
            step.united[id(value)] = cached  # the key tensor is kept alive, so its id is not reused
        return cached[1]

    def before_layer(self, position: int, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        step = self.slot.step
        if step is None or not isinstance(step.point, int) or step.point > position:
            return None
        if position == 0 and step.point == 0:  # mixing the embeddings: the first layer's input
            if args:
                args = (self.mix(args[0], step), *args[1:])
            else:
                kwargs = {**kwargs, "hidden_states": self.mix(kwargs["hidden_states"], step)}
        args, kwargs = list(args), dict(kwargs)
        for name, at in self.site.mask_arguments[position]:
            if name in kwargs:
                kwargs[name] = self._unite(kwargs[name], step)
            elif 0 <= at < len(args):
                args[at] = self._unite(args[at], step)
        return tuple(args), kwargs

    def after_layer(self, position: int, module: nn.Module, args: tuple, output: Any) -> Any:
        step = self.slot.step
        if step is None or not isinstance(step.point, int):
            return None
        if step.point == position + 1:
            output = (self.mix(output[0], step), *output[1:]) if isinstance(output, tuple) else self.mix(output, step)
        if position == len(self.site.layers) - 1 and self.site.pools_with_mask and step.attention_mask is not None:
            # Heads that mean-pool with the 2-D mask (ModernBERT) read it after the encoder:
            # the copy the wrapper passed in becomes the union once the last layer has run.
            with torch.no_grad():
                step.attention_mask.copy_(union_mask(step.attention_mask, step.on(step.attention_mask.device)))
        return output

    def before_classifier(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        step = self.slot.step
        if step is None or step.point != POOLED:
            return None
        if args:
            return (self.mix(args[0], step), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": self.mix(kwargs["hidden_states"], step)}

    def before_last_token_head(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        """The head pools each row at its own last non-padding token (from ``input_ids``, as HF does).

        A mixed row is the union of two sequences, whose last token is the later of the
        two: that token's hidden state goes where the head will look. At the pooled
        mixing point the pooled vectors themselves are mixed and put there instead.
        """
        step = self.slot.step
        if step is None or step.input_ids is None:
            return None
        h = args[0] if args else kwargs["hidden_states"]
        plan = step.on(h.device)
        rows = torch.arange(h.shape[0], device=h.device)
        own = last_tokens(step.input_ids.to(h.device), self.site.pad_token_id)
        if step.point == POOLED:
            pooled = self.mix(h[rows, own], step)
        else:
            union = torch.where(plan.mixed, torch.maximum(own, own.index_select(0, plan.index)), own)
            pooled = h[rows, union]
        h = h.index_put((rows, own), pooled)
        return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})


def register(site: Site, slot: Slot) -> list[RemovableHandle]:
    """Put a wrapped model's hooks on its layers and heads, for as long as it is wrapped (:func:`unregister`)."""
    hooks, handles = _Hooks(site, slot), []
    for position, layer in enumerate(site.layers):
        before = partial(hooks.before_layer, position)
        after = partial(hooks.after_layer, position)
        handles.append(layer.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(layer.register_forward_hook(after))
    if site.last_token_head is not None:
        handles.append(site.last_token_head.register_forward_pre_hook(hooks.before_last_token_head, with_kwargs=True))
    elif site.classifier is not None:
        handles.append(site.classifier.register_forward_pre_hook(hooks.before_classifier, with_kwargs=True))
    return handles


def unregister(site: Site, slot: Slot) -> None:
    """Remove the hooks that :func:`register` put on ``site`` for ``slot`` (found by owner: copies keep theirs)."""
    modules = [*site.layers, *(m for m in (site.classifier, site.last_token_head) if m is not None)]
    for module in modules:
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            for key, hook in list(hooks.items()):
                owner = getattr(getattr(hook, "func", hook), "__self__", None)
                if isinstance(owner, _Hooks) and owner.slot is slot:
                    del hooks[key]
                    for extra in (module._forward_pre_hooks_with_kwargs, module._forward_hooks_with_kwargs,
                                  module._forward_hooks_always_called):  # fmt: skip
                        extra.pop(key, None)
