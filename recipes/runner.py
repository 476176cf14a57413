"""``multimix run``: resolve the configuration, check the output folder and any checkpoint, train, report."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

import torch
from multimix_recipes import checkpoint, distributed, engine, load, plots
from multimix_recipes import config as configuration

__all__ = ["prepare_out", "run"]


def prepare_out(path: Path) -> Path:
    """Create the output folder ``path`` and check that it takes files.

    Raises:
        ValueError: ``path`` is a file, cannot be created, or is read-only.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder; pass a folder for the results")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"--out {path} is not a writable folder ({error.strerror or error}); pass another") from error
    return path


def _resume_state(config: dict[str, Any], out: Path) -> dict[str, Any]:
    """The checkpoint in ``out``, refused before any model is built if its configuration differs."""
    state = checkpoint.read(out / "checkpoint.pt")
    changed = configuration.differences(state["config"], config)
    if changed:
        raise ValueError(f"--resume: {out / 'checkpoint.pt'} was trained with another configuration "
                         f"({'; '.join(changed)}); only {sorted(configuration.RUN_ONLY)} may change "
                         "(--epochs N extends a run)")  # fmt: skip
    return state


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
    configs = [configuration.resolve(name, config_file, overrides if m is None else {**overrides, "method": m})
               for m in methods]  # fmt: skip
    device = engine.pick_device(configs[0]["device"])  # a bad --device fails here
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before NCCL starts, so each rank talks from its own GPU
    world = distributed.current(device.type)
    out = Path(configs[0]["out"])
    folders = [prepare_out(out / c["method"] if compare else out) for c in configs]
    states = [_resume_state(c, f) if resume else None for c, f in zip(configs, folders, strict=True)]
    results = {}
    for config, run_out, state in zip(configs, folders, states, strict=True):
        if world.is_main:
            configuration.save(config, run_out / "config.yaml")
            print(f"== {name}: {config['method']} (alpha {config['alpha']}) -> {run_out}")
        torch.manual_seed(config["seed"])  # model initialisation is part of the run
        random.seed(config["seed"])
        task = recipe.build(config)
        results[config["method"]] = engine.train(task, config, run_out, state=state)
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
        "| method | test accuracy | test error | median error, last 10 epochs | test loss | ECE | train samples/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, final in rows.items():
        lines.append(
            f"| {method} | {final['test_accuracy']:.4f} | {final['test_error']:.4f} "
            f"| {final['test_error_median_last_10']:.4f} | {final['test_loss']:.4f} "
            f"| {final['test_ece']:.4f} | {final['train_samples_per_second']:.0f} |"
        )
    table = "\n".join(lines)
    (out / "comparison.md").write_text(table + "\n")
    (out / "comparison.json").write_text(json.dumps(rows, indent=2))
    plots.learning_curves({m: r["epochs"] for m, r in results.items()}, out / "comparison_curves.png")
    plots.reliability_side_by_side({m: (r["_logits"], r["_labels"]) for m, r in results.items()},
                                   out / "comparison_reliability.png")  # fmt: skip
    print(table)
