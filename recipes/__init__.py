"""multimix recipes: train and evaluate a real model on real data with a mixing method, beside ERM.

Installed as the package ``multimix_recipes`` (the ``recipes`` extra); ``import multimix``
never imports it. ``multimix recipes`` lists the recipes, ``multimix run NAME`` runs one
(:mod:`multimix_recipes.runner`; ``--sweep`` and the choice on the validation split in
:mod:`multimix_recipes.sweep`). Each recipe is a folder ``<name>/`` holding ``train.py``
(a ``build(config) -> Task`` over the public multimix API) and ``defaults.yaml`` (every
key with its default); the engine, configuration, models and plots are shared.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

__all__ = ["HERE", "RECIPES", "data_file", "describe", "load"]

HERE = Path(__file__).resolve().parent

# name -> (default data, model, the methods train.py implements)
RECIPES = {
    "image": ("CIFAR-10 (embedded)", "PreAct ResNet-18 on GPU, small CNN on CPU",
              ("erm", "mixup", "cutmix", "mixup+cutmix", "regmixup", "resizemix", "fmix", "saliencymix", "manifold")),
    "speech": ("Free Spoken Digit Dataset (embedded)", "log-mel front end + CNN",
               ("erm", "mixup", "specmix", "wavemix", "regmixup")),
    "text": ("movie-review sentences MR (embedded)", "all-MiniLM-L6-v2 wrapped with multimix.wrap",
             ("erm", "hidden", "embedding", "regmixup")),
}  # fmt: skip


def _check_name(name: str) -> None:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")


def load(name: str) -> ModuleType:
    """The recipe script ``<name>/train.py``; an unknown name is an error that lists the valid ones."""
    _check_name(name)
    return importlib.import_module(f"multimix_recipes.{name}.train")


def data_file(name: str) -> Path:
    """A file of the embedded data (``data/<name>``), shipped with the package."""
    path = HERE / "data" / name
    if not path.is_file():
        raise ValueError(f"embedded data file {path} is missing; reinstall multimix with the recipes extra")
    return path


def describe() -> list[str]:
    """One line per recipe: task, default data, model, methods."""
    from multimix_recipes.config import load_defaults

    lines = []
    for name, (data, model, _) in RECIPES.items():
        defaults = load_defaults(name)
        methods = ", ".join(defaults["methods"])
        lines.append(f"{name:<7} {defaults['task']}: {data}; {model}; methods {methods} (default {defaults['method']})")
    return lines
