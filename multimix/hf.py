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

import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from multimix.adapter import Adapter
from multimix.audio import SpecMix, SpecMixup, WaveMix
from multimix.image import CutMix, Mixup
from multimix.losses import binary_cross_entropy, soft_cross_entropy
from multimix.mixer import Mixer
from multimix.plan import MixPlan
from multimix.targets import check_targets, mix_targets, smoothed_rows
from multimix.text import POOLED, HiddenMix

__all__ = ["MixupModel", "find_encoder_layers", "union_mask", "unwrap", "wrap"]

SUPPORTED = "BERT, RoBERTa, XLM-RoBERTa, DistilBERT, DeBERTa-v2/v3, ELECTRA, ModernBERT (any encoder whose layers sit in one nn.ModuleList of config.num_hidden_layers)"  # noqa: E501
_INPUT_FIELDS = {"image": ("pixel_values",), "audio": ("input_values", "input_features")}


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
    each the "attend" value is the larger one.
    """
    index, mixed = plan.index.to(mask.device), plan.mixed.to(mask.device)
    partner = mask[index]
    combined = mask | partner if mask.dtype == torch.bool else torch.maximum(mask, partner)
    return torch.where(mixed.view(-1, *([1] * (mask.dim() - 1))), combined, mask)


def _mask_names(module: nn.Module) -> list[str]:
    return [name for name in inspect.signature(module.forward).parameters if "mask" in name]


class _PlanHooks:
    """The hooks of one forward pass: mix at one point, then unite the masks of every later layer."""

    def __init__(self, wrapper: MixupModel, plan: MixPlan, point: int | str, attention_mask: torch.Tensor | None):
        self.wrapper, self.plan, self.point, self.attention_mask = wrapper, plan, point, attention_mask

    def _unite_masks(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        bound = inspect.signature(module.forward).bind_partial(*args, **kwargs)
        batch = self.plan.batch_size
        for name in _mask_names(module):
            value = bound.arguments.get(name)
            if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == batch:
                bound.arguments[name] = union_mask(value, self.plan)
        return bound.args, bound.kwargs

    def _mix_input(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            args = (self.wrapper.adapter.apply(args[0], self.plan)[0], *args[1:])
        else:
            kwargs = {**kwargs, "hidden_states": self.wrapper.adapter.apply(kwargs["hidden_states"], self.plan)[0]}
        return args, kwargs

    def _mix_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):
            return (self.wrapper.adapter.apply(output[0], self.plan)[0], *output[1:])
        return self.wrapper.adapter.apply(output, self.plan)[0]

    def _unite_pooling_mask(self, module: nn.Module, args: tuple, output: Any) -> None:
        # Heads that mean-pool with the 2-D mask (ModernBERT) read it after the encoder:
        # the copy the wrapper passed in becomes the union once the last layer has run.
        with torch.no_grad():
            self.attention_mask.copy_(union_mask(self.attention_mask, self.plan))

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


class MixupModel(nn.Module):
    """A Hugging Face classifier that trains on mixed inputs or hidden states; see :func:`wrap`."""

    def __init__(self, model: nn.Module, adapter: Adapter, num_classes: int | None = None, **mixer_kwargs: Any) -> None:
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
        if not isinstance(adapter, Adapter):
            raise TypeError(f"adapter must be a multimix adapter such as HiddenMix(1.0), got {type(adapter).__name__}")
        self.base_model = model
        self.adapter = adapter
        self.multi_label = getattr(config, "problem_type", None) == "multi_label_classification"
        mixer_kwargs.setdefault("per_sample", True)
        self.mixer = Mixer(adapter, num_labels, multi_label=self.multi_label, **mixer_kwargs)
        self.accepts_loss_kwargs = False  # Trainer must divide the loss for gradient accumulation itself
        self._mixing = True
        if isinstance(adapter, HiddenMix):
            self.encoder_layers = find_encoder_layers(model)
            depth = len(self.encoder_layers)
            self.mix_points = adapter.resolve_layers(depth, type(model).__name__)
            if POOLED in self.mix_points and not isinstance(getattr(model, "classifier", None), nn.Module):
                raise ValueError(
                    f"{type(model).__name__} has no .classifier module to mix the pooled representation at"
                )
            self.pools_with_mask = getattr(config, "classifier_pooling", None) == "mean"
        elif isinstance(adapter, (Mixup, CutMix)):
            self.input_fields = _INPUT_FIELDS["image"]
        elif isinstance(adapter, (SpecMixup, SpecMix, WaveMix)):
            self.input_fields = _INPUT_FIELDS["audio"]
        else:
            raise TypeError(
                f"wrap does not know where to apply {type(adapter).__name__}; use HiddenMix or an image/audio adapter"
            )

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

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        named = {
            "input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
            "pixel_values": pixel_values, "input_values": input_values, "input_features": input_features,
        }  # fmt: skip
        inputs = {k: v for k, v in named.items() if v is not None}
        if not (self.training and self._mixing):
            return self.base_model(**inputs, labels=labels, **kwargs)
        if labels is None:
            raise ValueError(
                "labels are required in train mode while mixing is on (the wrapper computes the mixed loss); "
                "pass labels=, call model.eval(), or use `with model.disable_mixing():`"
            )
        if not inputs:
            raise ValueError("no inputs given: pass input_ids, pixel_values, input_values or input_features")
        batch_size = next(iter(inputs.values())).shape[0]
        check_targets(labels, self.mixer.num_classes, batch_size, multi_label=self.multi_label)
        if isinstance(self.adapter, HiddenMix):
            outputs, targets = self._forward_hidden(inputs, labels, kwargs)
        else:
            outputs, targets = self._forward_inputs(inputs, labels, kwargs)
        logits = outputs.logits
        if self.multi_label:
            loss = binary_cross_entropy(logits, targets.to(logits.device))
        else:
            loss = soft_cross_entropy(logits, targets.to(logits.device))
        fields = {key: value for key, value in outputs.items() if key != "loss"}
        return type(outputs)(loss=loss, **fields)

    def _forward_hidden(self, inputs: dict, labels: torch.Tensor, kwargs: dict) -> tuple[Any, torch.Tensor]:
        plan = self.mixer.draw(labels.shape[0])
        point = self.adapter.choose(self.mix_points, self.mixer.generator)
        mask = inputs.get("attention_mask")
        if mask is not None and self.pools_with_mask:
            mask = inputs["attention_mask"] = mask.clone()  # the hooks unite this copy, never the caller's
        with _PlanHooks(self, plan, point, mask).registered():
            outputs = self.base_model(**inputs, **kwargs)
        rows = smoothed_rows(labels, self.mixer.num_classes, self.mixer.label_smoothing)  # checked in forward
        return outputs, mix_targets(rows, plan.index, plan.lam)

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
        inputs[field] = out.inputs
        if takes_mask:
            inputs["attention_mask"] = out.lengths
        return self.base_model(**inputs, **kwargs), out.targets


def wrap(model: nn.Module, adapter: Adapter, num_classes: int | None = None, **mixer_kwargs: Any) -> MixupModel:
    """Make an unmodified Hugging Face classifier train on mixed hidden states or inputs.

    Args:
        model: a ``*ForSequenceClassification`` (text), ``*ForImageClassification``
            or ``*ForAudioClassification`` model.
        adapter: ``multimix.text.HiddenMix`` for hidden states; an image adapter mixes
            ``pixel_values``; an audio adapter ``input_values`` / ``input_features``.
        num_classes: checked against the head's ``config.num_labels`` (taken from it if None).
        **mixer_kwargs: :class:`multimix.Mixer` options (``per_sample`` defaults to True,
            ``p``, ``label_smoothing``, ``seed``, ``generator``, ``off_epoch``, ...).

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
