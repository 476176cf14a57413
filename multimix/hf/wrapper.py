"""Make an unmodified Hugging Face classifier train on mixed hidden states or inputs.

``wrap(model, HiddenMix(...))`` mixes inside the encoder (or decoder) in one forward
pass: the partner is another sample of the batch (the plan's ``index``), so after
layer k, ``h <- lam * h + (1 - lam) * h[index]``, and the layers after k see the union
of the two attention masks. Hooks sit on the layer modules themselves (so a
gradient-checkpointed layer re-runs with the same inputs) while the model is wrapped,
and act only in a train step, whose plan the call draws on the host before the forward
(so ``torch.compile`` captures the forward whole). ``wrap(model, Mixup(...))`` or an audio adapter mixes
``pixel_values`` / ``input_values`` / ``input_features`` instead. In eval mode, or in
``with model.disable_mixing():``, the wrapped model is exactly the base model.

The wrapped model *is* a model of the base class (a view onto the same modules, of a
subclass made once per base class), so the ``Trainer`` saves it with the base's own
``save_pretrained``: the same weight names, ``config.json``, loadable without multimix.

The wrapper computes the loss itself from ``labels`` (indices or soft rows): float
labels handed to an HF head would silently switch it to multi-label BCE.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

try:
    import transformers  # noqa: F401 - the wrapper builds on its PreTrainedModel classes
except ImportError as error:  # pragma: no cover - exercised only without transformers
    raise ImportError('multimix.hf needs transformers: pip install "transformers>=4.40" (or multimix[hf])') from error

from multimix.adapter import Adapter
from multimix.hf.adapters import checked_adapters, for_model, head_labels
from multimix.hf.hidden import HiddenStateSite
from multimix.hf.hooks import LAST_TOKEN_HEAD, Site, Slot, Step
from multimix.hf.view import model_view
from multimix.losses import binary_cross_entropy, mixed_token_cross_entropy, soft_cross_entropy
from multimix.mixer import Mixer
from multimix.targets import mixed_targets
from multimix.text import HiddenMix

__all__ = ["MixupModel", "wrap_model"]

# Inputs that carry the batch; the first one given sets the batch size.
_BATCH_INPUTS = ("input_ids", "inputs_embeds", "pixel_values", "input_values", "input_features")


class MixupModel(HiddenStateSite, nn.Module):
    """A Hugging Face classifier that trains on mixed inputs or hidden states; made by :func:`wrap`.

    The object returned by :func:`wrap` is an instance of a subclass of both this class
    and the base model's class, sharing the base model's modules.
    """

    _multimix_positional: tuple[str, ...] = ()

    def _setup(self, adapter: Adapter | Sequence[Adapter], num_classes: int | None, **mixer_kwargs: Any) -> None:
        num_labels = head_labels(self, num_classes)
        config = self.config
        name = type(self._multimix_base).__name__
        adapters = checked_adapters(adapter)
        self.adapter = adapters[0]
        self.multi_label = getattr(config, "problem_type", None) == "multi_label_classification"
        if mixer_kwargs.pop("multi_label", self.multi_label) != self.multi_label:
            raise ValueError(
                f"multi_label disagrees with {name}'s config.problem_type={config.problem_type!r}: the head and the "
                "wrapper's loss follow the config; set config.problem_type='multi_label_classification' for multi-hot "
                "labels (and leave multi_label out)"
            )
        mixer_kwargs.setdefault("per_sample", True)
        self.accepts_loss_kwargs = False  # Trainer must divide the loss for gradient accumulation itself
        self._mixing = True
        self._multimix_slot = Slot()
        self._multimix_site: Site | None = None
        self.token_labels = _base_class_name(self._multimix_base).endswith("ForTokenClassification")
        # Decoder sequence classifiers score every token and pool at the last non-padding one; a decoder
        # token classifier's head (also named .score) labels every token and pools nothing.
        self.pools_last_token = not self.token_labels and (
            isinstance(getattr(self, LAST_TOKEN_HEAD, None), nn.Module)
            and getattr(config, "pad_token_id", None) is not None
        )
        if self.token_labels and not isinstance(self.adapter, HiddenMix):
            raise TypeError(
                f"{name} labels every token: mix its hidden states with HiddenMix(1.0), not "
                f"{type(self.adapter).__name__}"
            )
        if isinstance(self.adapter, HiddenMix):
            self._setup_hidden(num_labels, name, mixer_kwargs)
        else:
            mixing = [for_model(item, self) for item in adapters]
            self.mixer = Mixer(mixing if len(mixing) > 1 else mixing[0], num_labels, multi_label=self.multi_label,
                               **mixer_kwargs)  # fmt: skip
            self.adapter = mixing[0]
            self.input_fields = self.adapter.hf_inputs

    @contextmanager
    def disable_mixing(self) -> Iterator[MixupModel]:
        """Within the block, train steps run the plain base model (its own loss on integer labels)."""
        previous, self._mixing = self._mixing, False
        try:
            yield self
        finally:
            self._mixing = previous

    def save_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        """The base model's ``save_pretrained``: its class name, config and weights, loadable without multimix."""
        return self._multimix_base.save_pretrained(*args, **kwargs)

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickle and deep-copy as the base model plus the wrapper's own attributes (the class is made at run time)."""
        base = self._multimix_base
        own = {k: v for k, v in self.__dict__.items() if k not in base.__dict__ or base.__dict__[k] is not v}
        own.pop("_multimix_base")
        return (_restore, (base, own))

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(logits.device)
        if self.multi_label:
            return binary_cross_entropy(logits, targets)
        return soft_cross_entropy(logits, targets)

    def _named(self, args: tuple, inputs: dict[str, Any]) -> dict[str, Any]:
        """The call's inputs by name: positional ones named by the base forward's signature (read once per class)."""
        if not args:
            return inputs
        names = self._multimix_positional
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}.forward takes {len(names)} positional inputs, got {len(args)}")
        return {**inputs, **dict(zip(names, args, strict=False))}

    def _host_call(self, *args: Any, **inputs: Any) -> Any:
        """The module call in train mode: draw the step on the host, then run the forward (tensor ops) with it.

        ``torch.compile`` skips this frame and compiles the forward it calls, so the
        plan's draws (host work) never split the model's graph.
        """
        if not (self.training and self._mixing) or self._multimix_slot.step is not None:
            return nn.Module.__call__(self, *args, **inputs)
        step = self._draw_step(self._named(args, inputs))
        self._multimix_slot.step = step
        try:
            return nn.Module.__call__(self, **step.inputs)
        finally:
            self._multimix_slot.step = None

    def _draw_step(self, inputs: dict[str, Any]) -> Step:
        """Check the call, draw its plan (and mixing point) and place them on the batch's device."""
        labels = inputs.get("labels")
        if labels is None:
            raise ValueError(
                "labels are required in train mode while mixing is on (the wrapper computes the mixed loss); "
                "pass labels=, call model.eval(), or use `with model.disable_mixing():`. Under the transformers "
                "Trainer, TrainingArguments(label_smoothing_factor=...) withholds the labels: set it to 0 and "
                "pass wrap(..., label_smoothing=...) instead"
            )
        batch = next((inputs[k] for k in _BATCH_INPUTS if inputs.get(k) is not None), None)
        if batch is None:
            raise ValueError(
                "no inputs given: pass input_ids, inputs_embeds, pixel_values, input_values or input_features"
            )
        mixer = self.mixer
        if not isinstance(self.adapter, HiddenMix):
            _, x, lengths = self._mixed_field(inputs)
            plan = mixer.plan_for(x, labels, lengths=lengths)
            return Step(plan, None, inputs=inputs)
        return self._draw_hidden_step(inputs, labels, batch)

    def _mixed_field(self, inputs: dict[str, Any]) -> tuple[str, torch.Tensor, torch.Tensor | None]:
        """The input the adapter mixes, and the padding mask that goes with it when the adapter takes lengths."""
        field = next((name for name in self.input_fields if inputs.get(name) is not None), None)
        if field is None:
            raise ValueError(
                f"{type(self.adapter).__name__} mixes {' or '.join(self.input_fields)}, "
                f"but the call gave {sorted(k for k, v in inputs.items() if v is not None)}"
            )
        x = inputs[field]
        lengths = inputs.get("attention_mask")
        takes_mask = self.adapter.takes_lengths and lengths is not None and lengths.shape == (x.shape[0], x.shape[-1])
        return field, x, lengths if takes_mask else None

    def forward(self, *args: Any, labels: torch.Tensor | None = None, **inputs: Any) -> Any:
        """The base model's forward; in train mode with mixing on, on a mixed batch with the mixed loss."""
        inputs = self._named(args, inputs)
        if "labels" in inputs:
            labels = inputs.pop("labels")
        return_dict = inputs.get("return_dict")
        base_forward = super().forward
        if not (self.training and self._mixing):
            if labels is not None and labels.is_floating_point() and not self.multi_label:
                # soft rows handed to an HF head would switch config.problem_type to multi-label for good
                outputs = base_forward(**{**inputs, "return_dict": True})
                return self._result(outputs, self._loss(outputs.logits, labels), return_dict)
            return base_forward(**inputs, labels=labels)
        step = self._multimix_slot.step
        if step is None:  # forward called directly, not through the module call: draw here
            return self._host_call(**inputs, labels=labels)
        inputs["return_dict"] = True
        if isinstance(self.adapter, HiddenMix):
            outputs = base_forward(**inputs)
            if step.lam is None:  # no hook mixed: the labels must not be mixed either
                raise RuntimeError(
                    f"the mixing hooks on {type(self._multimix_base).__name__}'s layers did not run in this forward "
                    "(removed by other code?); after multimix.unwrap(model) the next train step hooks them again"
                )
            plan = step.on(labels.device)
            lam = step.lam.to(labels.device)  # the weight the blend applied (rounded to the hidden state's dtype)
            if self.token_labels:
                loss = mixed_token_cross_entropy(outputs.logits, labels.to(outputs.logits.device), plan.index,
                                                 lam, label_mode=self.mixer.label_mode,
                                                 ignore_index=self.mixer.ignore_index,
                                                 label_smoothing=self.mixer.label_smoothing)  # fmt: skip
                return self._result(outputs, loss, return_dict)
            targets = mixed_targets(labels, plan, lam, self.mixer.num_classes, self.mixer.label_smoothing,
                                    label_mode=self.mixer.label_mode)  # fmt: skip
        else:
            field, x, lengths = self._mixed_field(inputs)
            out = self.mixer.apply(x, labels, step.plan, lengths=lengths)
            inputs = {**inputs, field: out.inputs}
            if lengths is not None:
                inputs["attention_mask"] = out.lengths
            outputs, targets = base_forward(**inputs), out.targets
        return self._result(outputs, self._loss(outputs.logits, targets), return_dict)

    @staticmethod
    def _result(outputs: Any, loss: torch.Tensor, return_dict: bool | None) -> Any:
        """The model's own output type with our loss; a tuple when the caller asked for ``return_dict=False``."""
        fields = {key: value for key, value in outputs.items() if key != "loss"}
        result = type(outputs)(loss=loss, **fields)
        return result.to_tuple() if return_dict is False else result


# torch.compile skips the call's own frame and compiles the frames it calls (the forward), except the draw,
# which runs eagerly as a whole: the host work stays out of the model's graph and never splits it.
MixupModel.__call__ = torch.compiler.disable(MixupModel._host_call, recursive=False)
MixupModel._draw_step = torch.compiler.disable(MixupModel._draw_step)


def _base_class_name(model: nn.Module) -> str:
    """The class name of the model under any PEFT wrapping (``*ForTokenClassification``, ...)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(inner).__name__


def _restore(base: nn.Module, own: dict[str, Any]) -> MixupModel:
    view = model_view(base, MixupModel)
    view.__dict__.update(own)
    return view


def wrap_model(
    model: nn.Module, adapter: Adapter | Sequence[Adapter], num_classes: int | None = None, **mixer_kwargs: Any
) -> MixupModel:
    """:func:`multimix.wrap` for a Hugging Face classifier: train on mixed hidden states or inputs.

    Args:
        model: a ``*ForSequenceClassification`` (encoder, or decoder with
            ``config.pad_token_id`` set), ``*ForImageClassification`` or
            ``*ForAudioClassification`` model; a PEFT model of one works too.
        adapter: ``multimix.text.HiddenMix`` for hidden states; an adapter that declares
            ``hf_inputs`` (image adapters: ``pixel_values``; audio adapters:
            ``input_values`` / ``input_features``) mixes that input, out of place; or a
            list of such adapters, one chosen per step (``switch_prob`` as in the Mixer).
        num_classes: checked against the head's ``config.num_labels`` (taken from it if None).
        **mixer_kwargs: :class:`multimix.Mixer` options (``per_sample`` defaults to True,
            ``p``, ``switch_prob``, ``label_smoothing``, ``seed``, ``generator``,
            ``off_epoch``, ``validate``, ...).

    Returns:
        A model of ``model``'s class (a subclass named ``Mixup<Class>``) sharing its
        modules and weights: ``save_pretrained``, ``state_dict`` and the ``Trainer``'s
        checkpoints are the base model's own. Train mode mixes and returns the model's
        usual output with ``loss`` and ``logits``; eval mode is exactly ``model``.
    """
    if isinstance(model, MixupModel):
        warnings.warn(
            "model is already wrapped by multimix; wrapping its base model instead of stacking two wrappers",
            UserWarning,
            stacklevel=2,
        )
        model = model.release()  # its hooks off the base model (it hooks again if it trains again)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a Hugging Face classifier (an nn.Module), got {type(model).__name__}")
    view = model_view(model, MixupModel)
    view._setup(adapter, num_classes, **mixer_kwargs)
    return view
