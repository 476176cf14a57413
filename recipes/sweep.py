"""``multimix run NAME --sweep KEY=V1,V2,...``: one run per value of a key, the value chosen on the validation split.

Each value is read and typed exactly as ``--set KEY=VALUE`` reads and types it
(:func:`multimix_recipes.config.parse_assignment`, :func:`~multimix_recipes.config.coerce`).
The choice, per method, reads validation metrics only: the highest mean ``val_accuracy``
over the seeds, ties broken by the lower mean ``val_loss``. The chosen value's test
metrics are the ones to report; choosing on the test set would make them optimistic.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multimix_recipes import config as configuration
from multimix_recipes.validation import suggest

__all__ = ["COLUMNS", "REFUSED", "RULE", "check", "choose", "folder_name", "label", "parse", "select",
           "selection_table", "split_values", "write"]  # fmt: skip

# keys that other flags cover, or whose values would each be chosen on another validation split
REFUSED = {
    "method": "use --compare to run several methods (e.g. --compare erm,mixup)",
    "methods": "it lists the methods the recipe may run; use --compare to run several",
    "seed": "use --seeds to run every value on several seeds (e.g. --seeds 0,1,2)",
    "seeds": "use --seeds to run every value on several seeds (e.g. --seeds 0,1,2)",
    "out": "each value already gets its own folder under --out",
    "val_size": "each value would be chosen on a different validation split; set val_size once",
    "train_limit": "the validation split is carved out of the training data, so each value would be chosen on "
    "another split; set train_limit once",
    "data": "each value would be chosen on another dataset's validation split; run one sweep per dataset",
    "quick": "--quick changes the data sizes (and so the validation split); give --quick to the whole sweep",
    "split": "each value would hold out other samples for validation and test; run one sweep per split",
    "held_out_speakers": "each value would hold out other speakers; run one sweep per value",
    "device": "the device is chosen once per run of multimix run (and a GPU changes the defaults); "
    "run one sweep per device",
}
RULE = "highest mean val_accuracy over the seeds, ties broken by the lower mean val_loss (test metrics are not read)"
# the selection table: (key, header, digits)
COLUMNS = (("val_accuracy", "val accuracy", 4), ("val_loss", "val NLL", 4), ("test_accuracy", "test accuracy", 4),
           ("test_loss", "test NLL", 4), ("test_ece", "test ECE", 4),
           ("test_ece_calibrated", "ECE after T", 4))  # fmt: skip


def split_values(text: str) -> list[str]:
    """The comma-separated pieces of ``text``; commas inside brackets stay (``[100,150],[150,225]`` is two lists)."""
    pieces, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


def parse(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` from ``--sweep``: each value read as ``--set KEY=V`` reads it (typed by :func:`check`)."""
    if not isinstance(text, str) or "=" not in text or not text.split("=", 1)[0].strip():
        raise ValueError(f"--sweep expects KEY=V1,V2,... (e.g. --sweep alpha=0.1,0.2,0.4), got {text!r}")
    key, raw = (part.strip() for part in text.split("=", 1))
    return key, [configuration.parse_assignment(f"{key}={piece}")[1] for piece in split_values(raw)]


def check(recipe: str, key: str, values: Sequence[Any], overrides: dict[str, Any]) -> list[Any]:
    """``values`` typed like ``key``'s default (as ``--set`` types them), refused before anything trains.

    Raises:
        ValueError: ``key`` is not a key of the recipe or is in :data:`REFUSED`, is also set by
            ``--set``/a flag, fewer than two values, a value of the wrong type, or two values alike.
    """
    defaults = configuration.load_defaults(recipe)
    defaults.pop("on_gpu", None)
    if key in REFUSED:
        raise ValueError(f"--sweep {key} is not possible: {REFUSED[key]}")
    if key not in defaults:
        near = suggest(key, defaults)
        raise ValueError(f"--sweep: unknown key {key!r} for recipe {recipe!r}; valid keys are {sorted(defaults)}"
                         + (f"; did you mean {near!r}?" if near else ""))  # fmt: skip
    if key in overrides:
        raise ValueError(f"--sweep {key} and --set {key} (or a flag) both give {key}; keep only the --sweep")
    if len(values) < 2:
        raise ValueError(f"--sweep needs at least two values separated by commas (e.g. --sweep {key}=A,B), "
                         f"got {list(values)!r}")  # fmt: skip
    typed = [configuration.coerce(key, value, defaults[key], f"--sweep {key}") for value in values]
    folders = [folder_name(key, value) for value in typed]
    if len(set(folders)) < len(folders):
        raise ValueError(f"--sweep {key}: the values must differ (and differ in their folder names "
                         f"{folders!r}), got {typed!r}")  # fmt: skip
    return typed


def label(key: str, value: Any) -> str:
    """``KEY=VALUE`` as the tables print it: ``alpha=0.2``, ``milestones=[100,150]``, ``train_limit=null``."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return f"{key}={text}"


def folder_name(key: str, value: Any) -> str:
    """:func:`label` without path separators: one folder per value, even for ``data=/some/path``."""
    return label(key, value).replace("/", "_").replace("\\", "_")


def choose(rows: Sequence[dict[str, dict[str, Any]]]) -> int:
    """Index of the chosen value's row (:func:`multimix_recipes.runner.aggregate` stats of its seeds) by :data:`RULE`.

    Only ``val_accuracy`` and ``val_loss`` are read, so the test set plays no part; among
    rows equal on both, the first (the order of the values given) wins.

    Raises:
        ValueError: a row without validation metrics (no validation split).
    """
    for row in rows:
        if "val_accuracy" not in row or "val_loss" not in row:
            raise ValueError("--sweep chooses on the validation split, but a run has no val_accuracy/val_loss; "
                             "set val_size >= 1")  # fmt: skip

    def order(i: int) -> tuple[float, float, int]:  # a NaN mean ranks last, never by accident of order
        accuracy, loss = rows[i]["val_accuracy"]["mean"], rows[i]["val_loss"]["mean"]
        return (-accuracy if math.isfinite(accuracy) else math.inf, loss if not math.isnan(loss) else math.inf, i)

    return min(range(len(rows)), key=order)


def select(key: str, values: Sequence[Any], stats: dict[str, list[dict[str, dict[str, Any]]]]) -> dict[str, Any]:
    """The selection (what ``selection.json`` holds): per method, one row per value and the value chosen.

    Args:
        key: the swept key.
        values: its values, in the order given.
        stats: per method, one :func:`~multimix_recipes.runner.aggregate` result per value (same order).
    """
    methods = {}
    for method, rows in stats.items():
        best = choose(rows)
        table = [{"value": value, "label": label(key, value), "chosen": i == best,
                  **{k: rows[i][k] for k, _, _ in COLUMNS if k in rows[i]}}
                 for i, value in enumerate(values)]  # fmt: skip
        reported = {k: v for k, v in rows[best].items() if k.startswith("test_") or k == "temperature"}
        methods[method] = {"chosen": values[best], "chosen_label": label(key, values[best]),
                           "reported": reported, "rows": table}  # fmt: skip
    return {"key": key, "values": list(values), "rule": RULE, "methods": methods}


def _cell(stat: dict[str, Any] | None, digits: int) -> str:
    if stat is None:
        return ""
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}" if stat["n"] > 1 else f"{stat['mean']:.{digits}f}"


def selection_table(selection: dict[str, Any]) -> str:
    """Markdown: a row per method and value (``mean ± std`` over the seeds), the chosen value marked and reported."""
    key = selection["key"]
    n = max(row["val_accuracy"]["n"] for m in selection["methods"].values() for row in m["rows"])
    note = f"mean ± sample std (ddof=1) over {n} seeds" if n > 1 else "one seed"
    lines = [f"| method | {key} ({note}) | " + " | ".join(h for _, h, _ in COLUMNS) + " | chosen on val |",
             "|---|---|" + "---:|" * len(COLUMNS) + "---|"]  # fmt: skip
    for method, chosen in selection["methods"].items():
        for row in chosen["rows"]:
            cells = [_cell(row.get(k), digits) for k, _, digits in COLUMNS]
            value = row["label"].split("=", 1)[1]
            mark = "**chosen**" if row["chosen"] else ""
            lines.append(f"| {method} | {value} | " + " | ".join(cells) + f" | {mark} |")
    lines.append("")
    for method, chosen in selection["methods"].items():
        accuracy = _cell(chosen["reported"].get("test_accuracy"), 4)
        lines.append(f"{method}: {chosen['chosen_label']} chosen on the validation split; report its test accuracy "
                     f"{accuracy}")  # fmt: skip
    return "\n".join(lines)


def write(selection: dict[str, Any], out: Path) -> str:
    """``selection.md`` and ``selection.json`` in ``out``; returns the Markdown table."""
    table = selection_table(selection)
    (out / "selection.md").write_text(f"Value of {selection['key']} chosen per method: {selection['rule']}.\n\n"
                                      f"{table}\n")  # fmt: skip
    (out / "selection.json").write_text(json.dumps(selection, indent=2))
    return table
