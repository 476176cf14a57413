"""``multimix.wrap`` and ``multimix.unwrap``: one entry point for every model.

A Hugging Face model (a ``transformers.PreTrainedModel``, or a PEFT model of one) is
wrapped by :mod:`multimix.hf`, which is the only module that imports transformers;
any other ``nn.Module`` gets manifold mixup at the submodules ``HiddenMix(layers=...)``
names (:mod:`multimix.manifold`), with torch alone.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from torch import nn

from multimix.adapter import Adapter
from multimix.manifold import ManifoldModel, wrap_module

__all__ = ["unwrap", "wrap"]


def wrap(
    model: nn.Module, adapter: Adapter | Sequence[Adapter], num_classes: int | None = None, **mixer_kwargs: Any
) -> nn.Module:
    """Make an unmodified classifier train on mixed inputs or hidden states; eval mode is exactly ``model``.

    Args:
        model: a Hugging Face ``*ForSequenceClassification`` (encoder, or decoder with
            ``config.pad_token_id`` set), ``*ForImageClassification`` or
            ``*ForAudioClassification`` model, a PEFT model of one, or any ``nn.Module``
            mapping a batch to logits ``(B, C)`` (manifold mixup at named submodules).
        adapter: ``multimix.text.HiddenMix`` for hidden states (for a plain module, with
            ``layers=[...]`` naming submodules by path); for a Hugging Face model, an adapter
            that declares ``hf_inputs`` (image adapters mix ``pixel_values``, audio adapters
            ``input_values`` / ``input_features``), or a list of them, one chosen per step.
        num_classes: for Hugging Face models, checked against the head's ``config.num_labels``
            (taken from it if None); for other modules, the width C of their logits (required).
        **mixer_kwargs: :class:`multimix.Mixer` options (``per_sample`` defaults to True, ``p``,
            ``switch_prob``, ``label_smoothing``, ``seed``, ``generator``, ``off_epoch``, ...).

    Returns:
        For a Hugging Face model, a model of its class sharing its modules and weights
        (``save_pretrained`` and the ``Trainer``'s checkpoints are the base model's own);
        otherwise a :class:`~multimix.manifold.ManifoldModel`. In train mode with labels the
        step is mixed and returns the loss; ``torch.compile`` of the wrapped model adds no
        graph break to the model's own (the plan is drawn on the host, outside the graph).

    Example:
        >>> import torch, multimix
        >>> from multimix.text import HiddenMix
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> model = multimix.wrap(net, HiddenMix(1.0, layers=["1"]), num_classes=3, seed=0).train()
        >>> model(torch.randn(5, 4), labels=torch.tensor([0, 1, 2, 0, 1])).loss.shape
        torch.Size([])
        >>> multimix.unwrap(model) is net
        True
    """
    if not (_is_hf_model(model) or _is_hf_wrapper(model)):
        if num_classes is None:
            raise ValueError(
                f"num_classes is required to wrap {type(model).__name__} (it has no config.num_labels to read it "
                "from); pass the width of its logits, e.g. wrap(model, HiddenMix(1.0, layers=['layer3']), 10)"
            )
        return wrap_module(model, adapter, num_classes, **mixer_kwargs)
    from multimix.hf.wrapper import wrap_model

    return wrap_model(model, adapter, num_classes, **mixer_kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The model :func:`wrap` was given, with the wrapper's hooks taken off it."""
    if isinstance(model, ManifoldModel):
        return model.release()
    if _is_hf_wrapper(model):
        return model.release()
    raise TypeError(f"unwrap expects a model returned by multimix.wrap, got {type(model).__name__}")


def _is_hf_model(model: object) -> bool:
    """Whether ``model`` is a Hugging Face model, or a PEFT model of one (a module with a ``config`` may be neither:
    nanoGPT-style modules keep theirs)."""
    transformers = sys.modules.get("transformers")  # not loaded: no model can be one of its classes
    if transformers is None:
        return False
    inner = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    return isinstance(inner, transformers.PreTrainedModel) or isinstance(
        getattr(model, "config", None), transformers.PretrainedConfig
    )


def _is_hf_wrapper(model: object) -> bool:
    """Whether ``model`` is a wrapped Hugging Face model (without importing transformers if it is not loaded)."""
    hf = sys.modules.get("multimix.hf")
    return hf is not None and isinstance(model, hf.MixupModel)
