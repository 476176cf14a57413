"""``multimix run``: resolve the configuration, train one method or several side by side, report."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from multimix_recipes import config as configuration
from multimix_recipes import distributed, engine, load, plots

__all__ = ["run"]

QUICK = {"epochs": 1, "train_limit": 512, "test_limit": 256}


def _resolved(name: str, config_file: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    config = configuration.resolve(name, config_file, overrides)
    if config["quick"]:
        config.update(QUICK)
    return config


def run(
    name: str,
    *,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    compare: list[str] | None = None,
    resume: bool = False,
) -> Path:
    """Run recipe ``name``; with ``compare``, train each method on the same data and seed. Returns the output folder."""
    recipe = load(name)
    overrides = dict(overrides or {})
    methods = compare or [None]
    configs = [_resolved(name, config_file, overrides if m is None else {**overrides, "method": m}) for m in methods]
    world = distributed.current(engine.pick_device(configs[0]["device"]).type)  # a bad --device fails here
    out = Path(configs[0]["out"])
    results = {}
    for config in configs:
        run_out = out / config["method"] if compare else out
        run_out.mkdir(parents=True, exist_ok=True)
        if world.is_main:
            configuration.save(config, run_out / "config.yaml")
            print(f"== {name}: {config['method']} (alpha {config['alpha']}) -> {run_out}")
        torch.manual_seed(config["seed"])  # model initialisation is part of the run
        random.seed(config["seed"])
        task = recipe.build(config)
        results[config["method"]] = engine.train(task, config, run_out, resume=resume)
    if world.size > 1:
        torch.distributed.destroy_process_group()
    if not world.is_main:
        return out
    if compare:
        _write_comparison(results, out)
    print(f"results in {out.resolve()}")
    return out


def _write_comparison(results: dict[str, dict[str, Any]], out: Path) -> None:
    """A side-by-side table (Markdown and JSON) and both methods on one figure."""
    rows = {method: r["final"] for method, r in results.items()}
    lines = [
        "| method | test accuracy | test error | test loss | ECE | train samples/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, final in rows.items():
        lines.append(
            f"| {method} | {final['test_accuracy']:.4f} | {1 - final['test_accuracy']:.4f} | {final['test_loss']:.4f} "
            f"| {final['test_ece']:.4f} | {final['train_samples_per_second']:.0f} |"
        )
    table = "\n".join(lines)
    (out / "comparison.md").write_text(table + "\n")
    (out / "comparison.json").write_text(json.dumps(rows, indent=2))
    plots.learning_curves({m: r["epochs"] for m, r in results.items()}, out / "comparison_curves.png")
    plots.reliability_side_by_side({m: (r["_logits"], r["_labels"]) for m, r in results.items()},
                                   out / "comparison_reliability.png")  # fmt: skip
    print(table)
