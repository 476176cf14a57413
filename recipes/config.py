"""Recipe configuration: YAML defaults, then a user YAML, then command-line keys (timm's two stages).

Every recipe's ``<name>/defaults.yaml`` lists all of its keys with their defaults, so a
key that is not there is an error (no silent miswiring), and a value is converted to
the type of the default (``1e-3`` in YAML is a string to PyYAML, a float here). The
resolved configuration is saved next to the results and re-runs as ``--config``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from multimix_recipes import HERE, RECIPES
from multimix_recipes.validation import CHOICES, no_effect, suggest, validate  # noqa: F401 (CHOICES: kept here)

__all__ = ["QUICK", "RUN_ONLY", "coerce", "differences", "load_defaults", "parse_assignment", "resolve", "save"]

# --quick: fills only keys not given (512 training samples once the validation split is carved out)
QUICK = {"epochs": 1, "train_limit": 576, "val_size": 64, "test_limit": 256}
NULLABLE = {"train_limit", "test_limit"}  # null = all
# keys that may change when a run is resumed (the others must match the checkpoint's)
RUN_ONLY = {"epochs", "progress", "device", "out", "quick", "compile"}


def load_defaults(recipe: str) -> dict[str, Any]:
    """The recipe's YAML defaults (shipped inside the package), each value typed like itself.

    The mapping ``on_gpu`` (not a key) holds the defaults that change when the run's device is a GPU.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}")
    return yaml.safe_load((HERE / recipe / "defaults.yaml").read_text())


def _number(text: str, integer: bool = False) -> int | float | None:
    """``text`` as a number; an integer literal stays an exact ``int`` (never through a float) when ``integer``."""
    if integer:
        try:
            return int(text.strip())
        except ValueError:
            pass
    try:
        return float(text)
    except ValueError:
        return None


def coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """``value`` converted to the type of ``default``; strings (from YAML or ``--set``) are parsed.

    Raises:
        ValueError: a value that cannot be read as the default's type, naming ``source`` and ``key``.
    """
    if value is None:
        if default is None or key in NULLABLE:
            return None
        raise ValueError(f"{source}: {key} cannot be null; give a value like the default {default!r}")
    if default is None:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                return value
        if key in NULLABLE:  # an integer or null, whatever the default
            return coerce(key, value, 1, source) if value is not None else None
        return value
    expected = type(default).__name__
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        number = _number(value, isinstance(default, int)) if isinstance(value, str) else value
        integral = isinstance(number, int) or (isinstance(number, float) and number.is_integer())
        wrong = isinstance(number, bool) or not isinstance(number, (int, float))
        if wrong or (isinstance(default, int) and not integral):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"{source}: {key} must be {kind} like {default!r}, got {value!r}")
        return int(number) if isinstance(default, int) else float(number)
    if isinstance(default, str):
        if isinstance(value, (list, dict)):
            raise ValueError(f"{source}: {key} must be a string, got {value!r}")
        return str(value)
    if isinstance(default, list):
        if isinstance(value, str):  # YAML "[0, 1, 2]" or the shorthand "0,1,2"
            text = value.strip()
            value = yaml.safe_load(text) if text.startswith("[") else [yaml.safe_load(v) for v in text.split(",") if v]
        if not isinstance(value, list):
            raise ValueError(f"{source}: {key} must be a list like {default!r}, got {value!r}")
        return [coerce(f"{key}[{i}]", v, default[0], source) if default else v for i, v in enumerate(value)]
    raise ValueError(f"{source}: {key} must be a {expected}, got {value!r}")  # pragma: no cover


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from ``--set``: the value is read as YAML (``null``, ``[3, 4]``, ``1e-3``), typed later."""
    if not isinstance(text, str) or "=" not in text or not text.split("=", 1)[0].strip():
        raise ValueError(f"--set expects KEY=VALUE (e.g. --set lr=0.1), got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), raw if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"--config {path} does not exist; pass a YAML file of keys to override")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"--config {path} is not valid YAML ({error}); fix the file") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--config {path} cannot be read ({error})") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"--config {path} must hold a YAML mapping of keys, got {type(loaded).__name__}")
    return loaded


def _merge(config: dict[str, Any], updates: dict[str, Any], defaults: dict[str, Any], source: str) -> None:
    unknown = sorted(set(updates) - set(defaults))
    if unknown:
        hints = [(key, suggest(key, defaults)) for key in unknown]
        meant = ", ".join(f"{near!r}" + (f" for {key!r}" if len(unknown) > 1 else "") for key, near in hints if near)
        raise ValueError(f"{source}: unknown key(s) {unknown}; valid keys are {sorted(defaults)}"
                         + (f"; did you mean {meant}?" if meant else ""))  # fmt: skip
    for key, value in updates.items():
        config[key] = coerce(key, value, defaults[key], source)


def _on_gpu(device: str) -> bool:
    import torch

    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def resolve(
    recipe: str, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, then ``config_file``, then ``overrides`` (keys given on the command line).

    ``config_file`` is a path, or the name of a YAML shipped beside the recipe's defaults
    (``cifar10-paper`` for ``recipes/image/cifar10-paper.yaml``, so it works when installed).

    On a GPU (``device`` cuda, or auto with one), the YAML's ``on_gpu`` mapping fills the
    keys that neither the file nor the command line gives. With ``quick: true``,
    :data:`QUICK` then fills them (``--quick --epochs 3`` runs 3 epochs).

    Every key's range is checked here, before any data loads (:mod:`multimix_recipes.validation`),
    and a key set to something the other settings ignore (``milestones`` without
    ``schedule: step``) prints one ``multimix: warning:`` line on stderr.

    Raises:
        ValueError: unknown keys (with the nearest valid one), values of the wrong type, methods
            with no implementation, values out of range (``gamma: -1``, ``n_mels: 0``, seeds
            outside 0..2**63-1, ...), or a config file that does not exist, is not valid YAML
            or not a mapping.
    """
    defaults = load_defaults(recipe)
    on_gpu = defaults.pop("on_gpu", None) or {}
    config = dict(defaults)
    given: set[str] = set()
    if config_file is not None:
        path = Path(config_file)
        named = HERE / recipe / f"{config_file}.yaml"  # a named config shipped with the recipe
        if not path.is_file() and "/" not in str(config_file) and named.is_file():
            path = named
        loaded = _read_yaml(path)
        saved_recipe = loaded.pop("recipe", recipe)  # a saved config.yaml names its recipe
        if saved_recipe != recipe:
            raise ValueError(f"--config {path} is a configuration of recipe {saved_recipe!r}, not {recipe!r}")
        _merge(config, loaded, defaults, f"--config {path}")
        given |= set(loaded)
    overrides = dict(overrides or {})
    _merge(config, overrides, defaults, "command line")
    given |= set(overrides)
    if on_gpu and _on_gpu(config["device"]):  # e.g. text: all of MR and more epochs on a GPU
        config.update({k: coerce(k, v, defaults[k], "on_gpu") for k, v in on_gpu.items() if k not in given})
    if config["quick"]:
        config.update({k: v for k, v in QUICK.items() if k not in given})
    validate(recipe, config, defaults)
    changed = {key for key in given if config[key] != defaults[key]}  # a saved config.yaml gives every key
    for line in no_effect(config, changed):
        _warn(line)
    config["recipe"] = recipe
    return config


_WARNED: set[str] = set()


def _warn(line: str) -> None:
    """One ``multimix: warning:`` line on stderr per distinct message (a run resolves its configuration often)."""
    if line not in _WARNED:
        _WARNED.add(line)
        print(f"multimix: warning: {line}", file=sys.stderr, flush=True)


def differences(saved: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The keys (outside :data:`RUN_ONLY`) whose values differ, as ``key: saved -> now`` lines."""
    keys = sorted((set(saved) | set(config)) - RUN_ONLY)
    return [f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in keys if saved.get(k) != config.get(k)]


def save(config: dict[str, Any], path: Path) -> None:
    """Write the resolved configuration as YAML (it re-runs as ``--config``)."""
    path.write_text(yaml.safe_dump(config, sort_keys=True))
