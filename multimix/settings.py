"""The Mixer's settings, each checked whenever it is set: by the constructor and by a later ``mixer.p = 0.5``.

A setting the Mixer reads at each call (``p``, ``label_smoothing``, ...) may change
between calls, and gets the constructor's check; one that shaped the Mixer when it
was built (its adapters, ``switch``, ``seed``) cannot, and says how to get the change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from multimix._checks import check_flag, check_generator, check_positive_int, check_probability
from multimix.targets import check_label_mode

__all__: list[str] = []


def _check_ignore_index(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int (torch's default is -100), got {value!r}")
    return value


def _check_target_key(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    return value


# what a Mixer checks each setting with, on every assignment
CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "num_classes": check_positive_int,
    "per_sample": check_flag,
    "multi_label": check_flag,
    "validate": check_flag,
    "p": check_probability,
    "label_smoothing": check_probability,
    "label_mode": lambda value, name: check_label_mode(value),
    "ignore_index": _check_ignore_index,
    "target_key": _check_target_key,
    "generator": lambda value, name: check_generator(value),
}

# settings that shaped the Mixer when it was built, and what to do instead of assigning them
FIXED = {
    "adapters": "build a new Mixer with the adapters",
    "fields": "build a new Mixer with the dict of adapters",
    "switch": "build a new Mixer with switch=",
    "weights": "build a new Mixer with switch_prob=",
    "seed": "reseed the plans with mixer.generator.manual_seed(seed)",
}


def check_off_epoch(value: object) -> int | None:
    """Return ``off_epoch`` after checking it is an epoch (int >= 0) or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"off_epoch must be an int >= 0 or None, got {value!r}")
    return value


def check_alpha_schedule(value: object) -> Callable[[int], float] | None:
    """Return ``alpha_schedule`` after checking it is a callable ``epoch -> factor`` or None."""
    if value is not None and not callable(value):
        raise TypeError(f"alpha_schedule must be a callable epoch -> factor, got {type(value).__name__}")
    return value
