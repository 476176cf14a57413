"""Recipe configuration: YAML defaults, then a user YAML, then command-line flags (timm's two stages).

Every recipe's ``<name>.yaml`` lists all of its keys with their defaults, so a key
that is not there is an error (no silent miswiring), and a value must have the type
of the default. The resolved configuration is saved next to the results.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from multimix_recipes import HERE

__all__ = ["load_defaults", "resolve", "save"]

METHODS_KEY = "methods"  # each recipe's YAML lists the methods it knows


def load_defaults(recipe: str) -> dict[str, Any]:
    """The recipe's YAML defaults (shipped inside the package)."""
    text = (HERE / recipe / "defaults.yaml").read_text()
    return yaml.safe_load(text)


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Check ``value`` has the type of ``default`` (None means any), converting ints to floats."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{source}: {key} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{source}: {key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{source}: {key} must be a string, got {value!r}")
    if isinstance(default, list) and not isinstance(value, list):
        raise ValueError(f"{source}: {key} must be a list, got {value!r}")
    return value


def _merge(config: dict[str, Any], updates: dict[str, Any], defaults: dict[str, Any], source: str) -> None:
    unknown = sorted(set(updates) - set(defaults))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; valid keys are {sorted(defaults)}")
    for key, value in updates.items():
        config[key] = _coerce(key, value, defaults[key], source)


def resolve(recipe: str, config_file: str | Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then ``config_file``, then ``overrides`` (flags given on the command line).

    Raises:
        ValueError: unknown keys, wrong types, an unknown method, alpha <= 0, or a
            config file that does not exist or is not a YAML mapping.
    """
    defaults = load_defaults(recipe)
    config = dict(defaults)
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ValueError(f"--config {path} does not exist; pass a YAML file of keys to override")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"--config {path} must hold a YAML mapping of keys, got {type(loaded).__name__}")
        _merge(config, loaded, defaults, f"--config {path}")
    _merge(config, overrides, defaults, "command line")
    methods = config[METHODS_KEY]
    if config["method"] not in methods:
        raise ValueError(f"unknown method {config['method']!r} for recipe {recipe!r}; choose one of {methods}")
    alpha = config["alpha"]
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be finite and > 0 (lam ~ Beta(alpha, alpha)), got {alpha!r}")
    for key in ("epochs", "batch_size"):
        if config[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {config[key]!r}")
    config["recipe"] = recipe
    return config


def save(config: dict[str, Any], path: Path) -> None:
    """Write the resolved configuration as YAML."""
    path.write_text(yaml.safe_dump(config, sort_keys=True))
