"""The per-call hooks behind ``multimix.wrap`` for Hugging Face models: mix at one layer, unite the masks after it.

Hooks sit on the layer modules themselves (so a gradient-checkpointed layer re-runs
with the same inputs), are registered for one forward pass and removed in ``finally``.
The plan is placed on each device once per step, each distinct mask tensor is united
once, and the mask arguments of each layer were found once, at wrap time.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from multimix.plan import MixPlan
from multimix.text import POOLED

if TYPE_CHECKING:
    from multimix.hf import MixupModel

__all__ = ["PlanHooks", "find_encoder_layers", "last_tokens", "mask_arguments", "union_mask"]

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
    if not plan.any_mixed:
        return mask
    partner = mask.index_select(0, plan.index)
    combined = mask | partner if mask.dtype == torch.bool else torch.maximum(mask, partner)
    if plan.all_mixed:
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


class PlanHooks:
    """The hooks of one forward pass: mix at one point, then unite the masks of every later layer.

    The plan is placed on each device once, and each distinct mask tensor is united
    once (the model passes the same mask object to every layer).
    """

    def __init__(
        self, wrapper: MixupModel, plan: MixPlan, point: int | str, attention_mask: torch.Tensor | None,
        input_ids: torch.Tensor | None = None,
    ) -> None:  # fmt: skip
        self.wrapper, self.plan, self.point, self.attention_mask = wrapper, plan, point, attention_mask
        self.input_ids = input_ids
        self._placed: dict[torch.device, MixPlan] = {}
        self._united: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def placed(self, device: torch.device) -> MixPlan:
        if device not in self._placed:
            self._placed[device] = self.plan.to(device)[0]
        return self._placed[device]

    def _unite(self, value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or value.dim() < 1 or value.shape[0] != self.plan.batch_size:
            return value
        cached = self._united.get(id(value))
        if cached is None or cached[0] is not value:
            cached = (value, union_mask(value, self.placed(value.device)))
            self._united[id(value)] = cached  # the key tensor is kept alive, so its id is not reused
        return cached[1]

    def _unite_masks(self, position: int, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        args, kwargs = list(args), dict(kwargs)
        for name, at in self.wrapper._mask_arguments[position]:
            if name in kwargs:
                kwargs[name] = self._unite(kwargs[name])
            elif 0 <= at < len(args):
                args[at] = self._unite(args[at])
        return tuple(args), kwargs

    def _mix(self, h: torch.Tensor) -> torch.Tensor:
        plan = self.placed(h.device)
        return self.wrapper.adapter.apply(h, plan, None)[0]

    def _mix_input(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            args = (self._mix(args[0]), *args[1:])
        else:
            kwargs = {**kwargs, "hidden_states": self._mix(kwargs["hidden_states"])}
        return args, kwargs

    def _mix_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):
            return (self._mix(output[0]), *output[1:])
        return self._mix(output)

    def _last_token_input(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The head pools each row at its own last non-padding token (from ``input_ids``, as HF does).

        A mixed row is the union of two sequences, whose last token is the later of the
        two: that token's hidden state goes where the head will look. At the pooled
        mixing point the pooled vectors themselves are mixed and put there instead.
        """
        h = args[0] if args else kwargs["hidden_states"]
        plan = self.placed(h.device)
        rows = torch.arange(h.shape[0], device=h.device)
        own = last_tokens(self.input_ids.to(h.device), self.wrapper.config.pad_token_id)
        if self.point == POOLED:
            pooled = self._mix(h[rows, own])
        else:
            union = torch.where(plan.mixed, torch.maximum(own, own.index_select(0, plan.index)), own)
            pooled = h[rows, union]
        h = h.index_put((rows, own), pooled)
        return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    def _unite_pooling_mask(self, module: nn.Module, args: tuple, output: Any) -> None:
        # Heads that mean-pool with the 2-D mask (ModernBERT) read it after the encoder:
        # the copy the wrapper passed in becomes the union once the last layer has run.
        with torch.no_grad():
            self.attention_mask.copy_(union_mask(self.attention_mask, self.placed(self.attention_mask.device)))

    @contextmanager
    def registered(self) -> Iterator[None]:
        model, handles = self.wrapper, []
        last_token = self.wrapper.pools_last_token and self.input_ids is not None
        try:
            if last_token:
                head = getattr(model, LAST_TOKEN_HEAD)
                handles.append(head.register_forward_pre_hook(self._last_token_input, with_kwargs=True))
            if self.point == POOLED:
                if not last_token:
                    handles.append(model.classifier.register_forward_pre_hook(self._mix_input, with_kwargs=True))
            else:
                layers = self.wrapper.encoder_layers
                if self.point == 0:
                    handles.append(layers[0].register_forward_pre_hook(self._mix_input, with_kwargs=True))
                else:
                    handles.append(layers[self.point - 1].register_forward_hook(self._mix_output))
                for position in range(self.point, len(layers)):
                    hook = partial(self._unite_masks, position)
                    handles.append(layers[position].register_forward_pre_hook(hook, with_kwargs=True))
                if self.attention_mask is not None and self.wrapper.pools_with_mask:
                    handles.append(layers[-1].register_forward_hook(self._unite_pooling_mask))
            yield
        finally:
            for handle in handles:
                handle.remove()
