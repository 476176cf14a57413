"""What a wrapped Hugging Face model mixes and is given: its head, its adapters checked and fitted to it, and token
labels.

The wrapper never writes into the caller's inputs, so input adapters are copied with
``inplace=False``; spectrogram adapters take the time axis of the audio models wrap knows.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from multimix.adapter import Adapter
from multimix.hf.hooks import LAST_TOKEN_HEAD
from multimix.switch import Switch
from multimix.text import HiddenMix

__all__: list[str] = []


def head_labels(model: nn.Module, num_classes: int | None) -> int:
    """The number of classes of ``model``'s classification head, checked against ``num_classes`` when given."""
    config = getattr(model, "config", None)
    num_labels = getattr(config, "num_labels", None)
    name = type(getattr(model, "_multimix_base", model)).__name__
    has_head = any(hasattr(model, head) for head in ("classifier", LAST_TOKEN_HEAD))
    if config is None or not has_head or not isinstance(num_labels, int):
        raise ValueError(
            f"{name} has no classification head (.classifier or .score); wrap a *ForSequenceClassification, "
            "*ForImageClassification or *ForAudioClassification model"
        )
    if num_labels < 2:
        raise ValueError(f"the model's head has num_labels={num_labels}; mixup needs a classifier with >= 2 classes")
    if num_classes is not None and num_classes != num_labels:
        raise ValueError(
            f"num_classes={num_classes} disagrees with the head's config.num_labels={num_labels}; "
            "leave num_classes out or load the model with num_labels=num_classes"
        )
    return num_labels


def checked_adapters(adapter: Adapter | Sequence[Adapter]) -> list[Adapter]:
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


# Where time runs in the spectrogram inputs of the audio models wrap knows (config.model_type -> time_axis):
# AST's input_values are (B, T, F); Whisper's input_features (B, F, T); Speech2Text's (B, T, F).
SPECTROGRAM_TIME_AXIS = {"audio-spectrogram-transformer": -2, "whisper": -1, "speech_to_text": -2}


def for_model(adapter: Adapter, model: nn.Module) -> Adapter:
    """A copy that returns new tensors (the wrapper never writes into the caller's ``pixel_values``), with the
    spectrogram time axis of a model wrap knows when the adapter leaves ``time_axis`` None. A ``Switch`` is
    rebuilt from its members' copies."""
    if isinstance(adapter, Switch):
        return Switch([for_model(member, model) for member in adapter.adapters])
    adapter = copy.copy(adapter)
    adapter.inplace = False
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if getattr(adapter, "time_axis", -1) is None and model_type in SPECTROGRAM_TIME_AXIS:
        adapter.time_axis = SPECTROGRAM_TIME_AXIS[model_type]
    return adapter


def check_token_labels(labels: object, batch: torch.Tensor, num_classes: int, ignore_index: int,
                        validate: bool) -> None:  # fmt: skip
    """Token labels ``(B, T)``: integers in ``[0, num_classes)`` or ``ignore_index``, one per position of the batch."""
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(
            f"token labels must be an integer tensor (B, T), got {getattr(labels, 'dtype', type(labels).__name__)}"
        )
    if labels.shape != batch.shape[:2]:
        raise ValueError(
            f"token labels must have one label per token, shape {tuple(batch.shape[:2])}, got {tuple(labels.shape)}"
        )
    if labels.device.type == "cpu" or validate:
        bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
        if bool(bad.any()):
            value = int(labels[bad][0])
            raise ValueError(
                f"token labels hold {value}, outside [0, num_classes={num_classes}) and not ignore_index={ignore_index}"
            )
