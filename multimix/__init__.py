"""multimix: mixup-style training for images, audio and text behind one interface.

A :class:`Mixer` draws one plan per batch (partners, lam, region) and a modality
adapter (``multimix.image``, ...) applies it; targets become soft rows and
:func:`soft_cross_entropy` is the loss.
"""

from __future__ import annotations

import importlib
from typing import Any

from multimix.adapter import Adapter
from multimix.calibration import brier_score, fit_temperature, negative_log_likelihood
from multimix.criterion import mixed_loss
from multimix.losses import (
    BinaryCrossEntropy,
    SoftTargetCrossEntropy,
    binary_cross_entropy,
    regmixup_loss,
    soft_cross_entropy,
)
from multimix.metrics import accuracy, expected_calibration_error, mixed_accuracy, reliability_diagram
from multimix.mixer import MixedBatch, Mixer
from multimix.plan import MixPlan
from multimix.targets import mix_targets, soft_targets
from multimix.wrapping import unwrap, wrap

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - MixupModel loads lazily
    "Adapter",
    "MixupModel",
    "unwrap",
    "wrap",
    "BinaryCrossEntropy",
    "MixPlan",
    "MixedBatch",
    "Mixer",
    "SoftTargetCrossEntropy",
    "accuracy",
    "binary_cross_entropy",
    "brier_score",
    "expected_calibration_error",
    "fit_temperature",
    "mix_targets",
    "mixed_accuracy",
    "mixed_loss",
    "negative_log_likelihood",
    "regmixup_loss",
    "reliability_diagram",
    "soft_cross_entropy",
    "soft_targets",
]

_SUBMODULES = ("audio", "hf", "image", "lightning", "manifold", "ranks", "text", "timm")
_FROM_HF = ("MixupModel",)


def __getattr__(name: str) -> Any:
    """Import modality modules and the Hugging Face wrapper class on first use: ``import multimix`` needs no
    transformers."""
    if name in _SUBMODULES:
        return importlib.import_module(f"multimix.{name}")
    if name in _FROM_HF:
        return getattr(importlib.import_module("multimix.hf"), name)
    raise AttributeError(f"module 'multimix' has no attribute {name!r}")
