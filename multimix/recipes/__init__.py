"""Recipes: train and evaluate a real model on real data with a mixing method, beside ERM.

``multimix recipes`` lists them; ``multimix run NAME`` runs one (see :mod:`multimix.recipes.runner`).
Each recipe is a module with a ``build(config) -> Task`` and a YAML of defaults.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["RECIPES", "describe", "load"]

RECIPES = {
    "image": ("CIFAR-10 subset (embedded)", "PreAct ResNet-18 on GPU, small CNN on CPU"),
    "speech": ("Free Spoken Digit Dataset (embedded)", "log-mel front end + CNN"),
    "text": ("movie-review sentences MR (embedded)", "all-MiniLM-L6-v2 wrapped with multimix.wrap"),
}


def load(name: str) -> ModuleType:
    """The recipe module ``name``; an unknown name is an error that lists the valid ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return importlib.import_module(f"multimix.recipes.{name}")


def describe() -> list[str]:
    """One line per recipe: task, default data, model, methods."""
    from multimix.recipes.config import load_defaults

    lines = []
    for name, (data, model) in RECIPES.items():
        defaults = load_defaults(name)
        methods = ", ".join(defaults["methods"])
        lines.append(f"{name:<7} {defaults['task']}: {data}; {model}; methods {methods} (default {defaults['method']})")
    return lines
