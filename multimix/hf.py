"""Wrap an unmodified Hugging Face classifier so that it trains on mixed hidden states or inputs.

``wrap(model, HiddenMix(...))`` mixes inside the encoder in one forward pass: the
partner is another sample of the batch (the plan's ``index``), so after encoder
layer k, ``h <- lam * h + (1 - lam) * h[index]``, and the layers after k see the
union of the two attention masks. Hooks sit on the layer modules themselves (so a
gradient-checkpointed layer re-runs with the same inputs), are registered for one
call and removed in ``finally``. ``wrap(model, Mixup(...))`` or an audio adapter mixes
``pixel_values`` / ``input_values`` / ``input_features`` instead. In eval mode, or in
``with model.disable_mixing():``, the wrapper is exactly the base model.

The wrapper computes the loss itself from ``labels`` (indices or soft rows): float
labels handed to an HF head would silently switch it to multi-label BCE.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from multimix.adapter import Adapter
from multimix.losses import binary_cross_entropy, soft_cross_entropy
from multimix.mixer import Mixer
from multimix.plan import MixPlan
from multimix.targets import check_targets, mixed_targets
from multimix.text import POOLED, HiddenMix

__all__ = ["MixupModel", "find_encoder_layers", "union_mask", "unwrap", "wrap"]

SUPPORTED = "BERT, RoBERTa, XLM-RoBERTa, DistilBERT, DeBERTa-v2/v3, ELECTRA, ModernBERT (any encoder whose layers sit in one nn.ModuleList of config.num_hidden_layers)"  # noqa: E501


def find_encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` holding the encoder's ``config.num_hidden_layers`` layers."""
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

    Works for every mask form HF encoders pass their layers: bool (True = attend),
    additive float (0 = attend, very negative = masked) and 0/1 integers, since in
    each the "attend" value is the larger one. ``plan`` is placed on the mask's device.
    """
    plan, _ = plan.to(mask.device)
    if not plan.any_mixed:
        return mask
    partner = mask.index_select(0, plan.index)
    combined = mask | partner if mask.dtype == torch.bool else torch.maximum(mask, partner)
    if plan.all_mixed:
        return combined
    return torch.where(plan.mixed.view(-1, *([1] * (mask.dim() - 1))), combined, mask)


def _mask_arguments(module: nn.Module) -> tuple[tuple[str, int], ...]:
    """The mask parameters of ``module.forward`` and their positions (after ``self``), found once at wrap time."""
    parameters = list(inspect.signature(module.forward).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(
        (p.name, i if p.kind in positional else -1) for i, p in enumerate(parameters) if "mask" in p.name
    )


class _PlanHooks:
    """The hooks of one forward pass: mix at one point, then unite the masks of every later layer.

    The plan is placed on each device once, and each distinct mask tensor is united
    once (the encoder passes the same mask object to every layer).
    """

    def __init__(self, wrapper: MixupModel, plan: MixPlan, point: int | str, attention_mask: torch.Tensor | None):
        self.wrapper, self.plan, self.point, self.attention_mask = wrapper, plan, point, attention_mask
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

    def _unite_masks(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        args, kwargs = list(args), dict(kwargs)
        for name, position in self.wrapper._mask_arguments[id(module)]:
            if name in kwargs:
                kwargs[name] = self._unite(kwargs[name])
            elif 0 <= position < len(args):
                args[position] = self._unite(args[position])
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

    def _unite_pooling_mask(self, module: nn.Module, args: tuple, output: Any) -> None:
        # Heads that mean-pool with the 2-D mask (ModernBERT) read it after the encoder:
        # the copy the wrapper passed in becomes the union once the last layer has run.
        with torch.no_grad():
            self.attention_mask.copy_(union_mask(self.attention_mask, self.placed(self.attention_mask.device)))

    @contextmanager
    def registered(self) -> Iterator[None]:
        model = self.wrapper.base_model
        handles = []
        try:
            if self.point == POOLED:
                handles.append(model.classifier.register_forward_pre_hook(self._mix_input, with_kwargs=True))
            else:
                layers = self.wrapper.encoder_layers
                if self.point == 0:
                    handles.append(layers[0].register_forward_pre_hook(self._mix_input, with_kwargs=True))
                else:
                    handles.append(layers[self.point - 1].register_forward_hook(self._mix_output))
                for layer in list(layers)[self.point :]:
                    handles.append(layer.register_forward_pre_hook(self._unite_masks, with_kwargs=True))
                if self.attention_mask is not None and self.wrapper.pools_with_mask:
                    handles.append(layers[-1].register_forward_hook(self._unite_pooling_mask))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _adapters(adapter: Adapter | Sequence[Adapter]) -> list[Adapter]:
    """The adapter(s) given to :func:`wrap` as a list, checked."""
    adapters = list(adapter) if isinstance(adapter, (list, tuple)) else [adapter]
    if not adapters:
        raise ValueError("adapter is an empty list; pass an adapter such as HiddenMix(1.0) or Mixup(0.8)")
    for item in adapters:
        if not isinstance(item, Adapter):
            raise TypeError(f"adapter must be a multimix adapter such as HiddenMix(1.0), got {type(item).__name__}")
    hidden = [isinstance(item, HiddenMix) for item in adapters]
    if any(hidden) and len(adapters) > 1:
        raise ValueError("HiddenMix mixes inside the model and cannot be switched with input adapters; pass it alone")
    if not any(hidden):
        fields = {item.hf_inputs for item in adapters}
        if len(fields) != 1 or not next(iter(fields)):
            raise TypeError(
                f"wrap does not know where to apply {', '.join(type(a).__name__ for a in adapters)}: an adapter must "
                "declare the model inputs it mixes (Adapter.hf_inputs), and switched adapters must mix the same ones"
            )
    return adapters


def _out_of_place(adapter: Adapter) -> Adapter:
    """A copy that returns new tensors: the wrapper never writes into the caller's ``pixel_values``."""
    if not adapter.inplace:
        return adapter
    adapter = copy.copy(adapter)
    adapter.inplace = False
    return adapter


class MixupModel(nn.Module):
    """A Hugging Face classifier that trains on mixed inputs or hidden states; see :func:`wrap`."""

    def __init__(
        self,
        model: nn.Module,
        adapter: Adapter | Sequence[Adapter],
        num_classes: int | None = None,
        **mixer_kwargs: Any,
    ) -> None:
        super().__init__()
        config = getattr(model, "config", None)
        num_labels = getattr(config, "num_labels", None)
        has_head = any(hasattr(model, name) for name in ("classifier", "score"))
        if config is None or not has_head or not isinstance(num_labels, int):
            raise ValueError(
                f"{type(model).__name__} has no classification head (.classifier); wrap a *ForSequenceClassification, "
                "*ForImageClassification or *ForAudioClassification model"
            )
        if num_labels < 2:
            raise ValueError(
                f"the model's head has num_labels={num_labels}; mixup needs a classifier with >= 2 classes"
            )
        if num_classes is not None and num_classes != num_labels:
            raise ValueError(
                f"num_classes={num_classes} disagrees with the head's config.num_labels={num_labels}; "
                "leave num_classes out or load the model with num_labels=num_classes"
            )
        adapters = _adapters(adapter)
        self.base_model = model
        self.adapter = adapters[0]
        self.multi_label = getattr(config, "problem_type", None) == "multi_label_classification"
        mixer_kwargs.setdefault("per_sample", True)
        self.accepts_loss_kwargs = False  # Trainer must divide the loss for gradient accumulation itself
        self._mixing = True
        if isinstance(self.adapter, HiddenMix):
            self.mixer = Mixer(self.adapter, num_labels, multi_label=self.multi_label, **mixer_kwargs)
            layers = find_encoder_layers(model)
            # A tuple, not a registered child: the layers stay in the state dict once, under the base model.
            self._encoder_layers = tuple(layers)
            self._mask_arguments = {id(layer): _mask_arguments(layer) for layer in layers}
            self.mix_points = self.adapter.resolve_layers(len(layers), type(model).__name__)
            if POOLED in self.mix_points and not isinstance(getattr(model, "classifier", None), nn.Module):
                raise ValueError(
                    f"{type(model).__name__} has no .classifier module to mix the pooled representation at"
                )
            self.pools_with_mask = getattr(config, "classifier_pooling", None) == "mean"
        else:
            mixing = [_out_of_place(item) for item in adapters]
            self.mixer = Mixer(mixing if len(mixing) > 1 else mixing[0], num_labels, multi_label=self.multi_label,
                               **mixer_kwargs)  # fmt: skip
            self.input_fields = self.adapter.hf_inputs

    @property
    def encoder_layers(self) -> tuple[nn.Module, ...]:
        """The encoder layers the hidden-state hooks sit on."""
        return self._encoder_layers

    def __getattr__(self, name: str) -> Any:
        """Forward unknown attributes to the base model (``config``, ``save_pretrained``, ...), as PEFT does."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    @contextmanager
    def disable_mixing(self) -> Iterator[MixupModel]:
        """Within the block, train steps run the plain base model (its own loss on integer labels)."""
        previous, self._mixing = self._mixing, False
        try:
            yield self
        finally:
            self._mixing = previous

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(logits.device)
        if self.multi_label:
            return binary_cross_entropy(logits, targets)
        return soft_cross_entropy(logits, targets)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        named = {
            "input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
            "inputs_embeds": inputs_embeds, "pixel_values": pixel_values, "input_values": input_values,
            "input_features": input_features,
        }  # fmt: skip
        inputs = {k: v for k, v in named.items() if v is not None}
        if return_dict is not None:
            kwargs["return_dict"] = return_dict
        if not (self.training and self._mixing):
            if labels is not None and labels.is_floating_point() and not self.multi_label:
                # soft rows handed to an HF head would switch config.problem_type to multi-label for good
                outputs = self.base_model(**inputs, **{**kwargs, "return_dict": True})
                return self._result(outputs, self._loss(outputs.logits, labels), return_dict)
            return self.base_model(**inputs, labels=labels, **kwargs)
        if labels is None:
            raise ValueError(
                "labels are required in train mode while mixing is on (the wrapper computes the mixed loss); "
                "pass labels=, call model.eval(), or use `with model.disable_mixing():`"
            )
        batch = next((v for k, v in inputs.items() if k != "attention_mask"), None)
        if batch is None:
            raise ValueError(
                "no inputs given: pass input_ids, inputs_embeds, pixel_values, input_values or input_features"
            )
        kwargs["return_dict"] = True
        if isinstance(self.adapter, HiddenMix):
            outputs, targets = self._forward_hidden(inputs, labels, batch.shape[0], kwargs)
        else:
            outputs, targets = self._forward_inputs(inputs, labels, kwargs)
        return self._result(outputs, self._loss(outputs.logits, targets), return_dict)

    @staticmethod
    def _result(outputs: Any, loss: torch.Tensor, return_dict: bool | None) -> Any:
        """The model's own output type with our loss; a tuple when the caller asked for ``return_dict=False``."""
        fields = {key: value for key, value in outputs.items() if key != "loss"}
        result = type(outputs)(loss=loss, **fields)
        return result.to_tuple() if return_dict is False else result

    def _forward_hidden(
        self, inputs: dict, labels: torch.Tensor, batch_size: int, kwargs: dict
    ) -> tuple[Any, torch.Tensor]:
        mixer = self.mixer
        check_targets(labels, mixer.num_classes, batch_size, multi_label=self.multi_label, validate=mixer.validate)
        plan = mixer.draw(batch_size)
        point = self.adapter.choose(self.mix_points, mixer.generator)
        mask = inputs.get("attention_mask")
        if mask is not None and self.pools_with_mask:
            mask = inputs["attention_mask"] = mask.clone()  # the hooks unite this copy, never the caller's
        hooks = _PlanHooks(self, plan, point, mask)
        with hooks.registered():
            outputs = self.base_model(**inputs, **kwargs)
        placed = hooks.placed(labels.device)
        return outputs, mixed_targets(labels, placed, placed.lam, mixer.num_classes, mixer.label_smoothing)

    def _forward_inputs(self, inputs: dict, labels: torch.Tensor, kwargs: dict) -> tuple[Any, torch.Tensor]:
        field = next((name for name in self.input_fields if name in inputs), None)
        if field is None:
            raise ValueError(
                f"{type(self.adapter).__name__} mixes {' or '.join(self.input_fields)}, "
                f"but the call gave {sorted(inputs)}"
            )
        x = inputs[field]
        lengths = inputs.get("attention_mask")
        takes_mask = self.adapter.takes_lengths and lengths is not None and lengths.shape == (x.shape[0], x.shape[-1])
        out = self.mixer(x, labels, lengths=lengths if takes_mask else None)
        inputs = {**inputs, field: out.inputs}
        if takes_mask:
            inputs["attention_mask"] = out.lengths
        return self.base_model(**inputs, **kwargs), out.targets


def wrap(
    model: nn.Module, adapter: Adapter | Sequence[Adapter], num_classes: int | None = None, **mixer_kwargs: Any
) -> MixupModel:
    """Make an unmodified Hugging Face classifier train on mixed hidden states or inputs.

    Args:
        model: a ``*ForSequenceClassification`` (text), ``*ForImageClassification``
            or ``*ForAudioClassification`` model.
        adapter: ``multimix.text.HiddenMix`` for hidden states; an adapter that declares
            ``hf_inputs`` (image adapters: ``pixel_values``; audio adapters:
            ``input_values`` / ``input_features``) mixes that input, out of place; or a
            list of such adapters, one chosen per step (``switch_prob`` as in the Mixer).
        num_classes: checked against the head's ``config.num_labels`` (taken from it if None).
        **mixer_kwargs: :class:`multimix.Mixer` options (``per_sample`` defaults to True,
            ``p``, ``switch_prob``, ``label_smoothing``, ``seed``, ``generator``,
            ``off_epoch``, ``validate``, ...).

    Returns:
        A module that forwards attributes to ``model``; train mode mixes and returns the
        model's usual output with ``loss`` and ``logits``; eval mode is exactly ``model``.
    """
    if isinstance(model, MixupModel):
        warnings.warn(
            "model is already wrapped by multimix; wrapping its base model instead of stacking two wrappers",
            UserWarning,
            stacklevel=2,
        )
        model = model.base_model
    return MixupModel(model, adapter, num_classes, **mixer_kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The base model that :func:`wrap` was given (no hooks remain on it)."""
    if not isinstance(model, MixupModel):
        raise TypeError(f"unwrap expects a model returned by multimix.wrap, got {type(model).__name__}")
    return model.base_model
