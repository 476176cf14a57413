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
import re
from pathlib import Path
from types import ModuleType

__all__ = ["HERE", "RECIPES", "data_file", "describe", "key_docs", "load"]

HERE = Path(__file__).resolve().parent

# name -> (default data, model, the methods train.py implements)
RECIPES = {
    "image": ("CIFAR-10 (embedded)", "PreAct ResNet-18 on GPU, small CNN on CPU",
              ("erm", "mixup", "cutmix", "mixup+cutmix", "regmixup", "resizemix", "fmix", "saliencymix", "manifold",
               "mixup-dominant")),
    "speech": ("Free Spoken Digit Dataset (embedded)", "log-mel front end + CNN",
               ("erm", "mixup", "specmix", "wavemix", "regmixup", "mixup-dominant")),
    "text": ("movie-review sentences MR (embedded)", "all-MiniLM-L6-v2 wrapped with multimix.wrap",
             ("erm", "hidden", "embedding", "regmixup", "hidden-dominant")),
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


# a top-level key line of defaults.yaml: ``key: value   # meaning`` (values never hold " #")
_KEY_LINE = re.compile(r"^([A-Za-z_]\w*):(.*?)(?:\s#\s?(.*))?$")


def _type_name(key: str, value: object) -> str:
    from multimix_recipes.config import NULLABLE

    if isinstance(value, list):
        kinds = sorted({type(v).__name__ for v in value})
        return f"list[{' | '.join(kinds)}]" if kinds else "list"
    name = "any" if value is None else type(value).__name__
    return f"{'int' if value is None else name} or null" if key in NULLABLE else name


def key_docs(name: str) -> list[tuple[str, str, object, str]]:
    """``(key, type, default, meaning)`` for every key of the recipe's ``defaults.yaml``, in its order.

    The meaning is the key's own comment on its line of the YAML, so ``multimix run NAME --help``
    is generated from the file it describes and cannot drift from it.
    """
    from multimix_recipes.config import load_defaults

    _check_name(name)
    defaults = load_defaults(name)
    comments = {}
    for line in (HERE / name / "defaults.yaml").read_text().splitlines():
        match = _KEY_LINE.match(line)
        if match:
            comments[match.group(1)] = (match.group(3) or "").strip()
    return [(key, _type_name(key, value), value, comments.get(key, ""))
            for key, value in defaults.items() if key != "on_gpu"]  # fmt: skip
