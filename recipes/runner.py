"""``multimix run``: resolve the configuration, check the output folders and any checkpoint, train each method on
each swept value and each seed, one after the other or side by side (:mod:`multimix_recipes.parallel`), report
(mean and sample std over seeds; the value chosen on the validation split, :mod:`multimix_recipes.sweep`)."""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from multimix_recipes import checkpoint, data, distributed, embedded, engine, load, plots
from multimix_recipes import config as configuration
from multimix_recipes import parallel as side_by_side
from multimix_recipes import sweep as sweeping

__all__ = ["aggregate", "comparison_table", "prepare_out", "resume_state", "run", "train_one"]


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


def resume_state(config: dict[str, Any], out: Path) -> dict[str, Any]:
    """The checkpoint in ``out``, refused before any model is built if its configuration differs or it holds more
    epochs than ``config`` asks for (a run cannot shrink: config.yaml would disagree with its metrics)."""
    path = out / "checkpoint.pt"
    state = checkpoint.read(path)
    # a run depends on its own seed, not on the list of seeds beside it: --seeds may grow on --resume
    changed = configuration.differences({**state["config"], "seeds": config["seeds"]}, config)
    if changed:
        raise ValueError(f"--resume: {path} was trained with another configuration "
                         f"({'; '.join(changed)}); only {sorted(configuration.RUN_ONLY)} may change "
                         "(--epochs N extends a run)")  # fmt: skip
    done = state["epoch"] + 1
    if config["epochs"] < done:
        raise ValueError(f"--resume: {path} already holds {done} epochs, more than epochs {config['epochs']}; a run "
                         f"cannot be shortened: resume with --epochs {done} or more, or start anew in another --out")
    return state


def _check_runs(folders: list[Path], configs: list[dict[str, Any]], resume: bool, overwrite: bool) -> list[Any]:
    """Per run, the checkpoint to resume from or None to start it; refused before anything is written.

    With ``resume``, a run whose folder holds a checkpoint continues (a finished one is only evaluated again) and
    the others start, so an interrupted ``--compare``/``--seeds``/``--sweep`` loses nothing, even one stopped before
    its first checkpoint; ``--resume`` where no run wrote its configuration is refused. Without it, a folder that
    holds a checkpoint is refused unless ``overwrite``.
    """
    found = [f / "checkpoint.pt" for f in folders if (f / "checkpoint.pt").is_file()]
    if resume:
        started = [f for f in folders if (f / "config.yaml").is_file() or (f / "config.resolved.yaml").is_file()]
        if not found and not started:  # no run began there (each writes its configuration first): a mistyped --out?
            where = folders[0] / "checkpoint.pt" if len(folders) == 1 else f"any of the {len(folders)} run folders"
            top = Path(configs[0]["out"])
            if top not in folders and (top / "checkpoint.pt").is_file():  # one run there; these go to folders under it
                raise ValueError(f"--resume: {top} holds one run, and these {len(folders)} runs go to folders under "
                                 f"it (e.g. {folders[0]}), none begun; resume that run as it was started, or start "
                                 "these without --resume in another --out")  # fmt: skip
            raise ValueError(f"--resume: no checkpoint at {where}; run without --resume first")
        return [resume_state(c, f) if (f / "checkpoint.pt").is_file() else None
                for c, f in zip(configs, folders, strict=True)]  # fmt: skip
    if found and not overwrite:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise ValueError(f"--out {configs[0]['out']} already holds a run ({found[0]}{more}); pass --resume to "
                         "continue it, --overwrite to replace it, or another --out")  # fmt: skip
    return [None] * len(folders)


def _config_target(folder: Path, config_file: str | None) -> Path:
    """Where the resolved configuration goes: ``config.yaml``, unless that file is the ``--config`` being read (the
    user's file and its comments stay as they are; the resolved one goes to ``config.resolved.yaml``)."""
    target = folder / "config.yaml"
    given = Path(config_file) if config_file is not None else None
    if given is not None and given.is_file() and target.is_file() and os.path.samefile(given, target):
        return folder / "config.resolved.yaml"
    return target


def _check_compare(compare: list[str] | None) -> None:
    repeated = sorted({m for m in compare or [] if compare.count(m) > 1})
    if repeated:
        raise ValueError(f"--compare lists {', '.join(repeated)} more than once ({','.join(compare)}); give each "
                         "method once (--seeds runs each method on several seeds)")  # fmt: skip


def _sweep_values(
    name: str, sweep_arg: str | tuple[str, Sequence[Any]] | None, overrides: dict[str, Any]
) -> tuple[str | None, list[Any]]:
    """The swept key and its typed values (``None, [None]`` without a sweep), refused before anything trains."""
    if sweep_arg is None:
        return None, [None]
    if isinstance(sweep_arg, str):
        key, values = sweeping.parse(sweep_arg)
    elif isinstance(sweep_arg, tuple) and len(sweep_arg) == 2 and isinstance(sweep_arg[1], (list, tuple)):
        key, values = sweep_arg
    else:
        raise TypeError(f"sweep must be 'KEY=V1,V2,...' or (key, [values]), got {sweep_arg!r}")
    return key, sweeping.check(name, key, values, overrides)


def _run_folder(out: Path, config: dict[str, Any], compare: bool, key: str | None, several_seeds: bool) -> Path:
    """``out/<method>/<KEY>=<value>/seed<k>/``, each level only when it has more than one entry (not created)."""
    method = config["method"] if compare else ""
    value = sweeping.folder_name(key, config[key]) if key else ""
    return out / method / value / (f"seed{config['seed']}" if several_seeds else "")


def run(
    name: str,
    *,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    compare: list[str] | None = None,
    sweep: str | tuple[str, Sequence[Any]] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    parallel: int = 1,
) -> Path:
    """Run recipe ``name``; with ``compare``, each method on the same data and seed; with the ``seeds`` key
    (``--set seeds=0,1,2``), every method once per seed; with ``sweep`` (``"alpha=0.1,0.2"`` or
    ``("alpha", [0.1, 0.2])``), every method once per value of the key and per seed. Returns the output folder.

    Folders: ``out/<method>/`` with ``compare``, then ``<KEY>=<value>/`` with a sweep, then ``seed<k>/``
    with several seeds; a comparison (``comparison.md``/``.json``, mean and sample std over the seeds)
    when any is given, and with a sweep ``selection.md``/``.json``: per method, the value chosen on the
    validation split (:data:`multimix_recipes.sweep.RULE`) and its test metrics.

    ``resume`` continues every run that has a checkpoint and starts the others; without it, an output folder
    that holds a checkpoint is refused unless ``overwrite`` (which deletes the old checkpoints first).

    ``parallel`` > 1 trains up to that many runs at once, one process each (:mod:`multimix_recipes.parallel`):
    the same folders, seeds, checkpoints and table as one after the other.
    """
    load(name)
    if resume and overwrite:  # before the console's first line: nothing printed, nothing written
        raise ValueError("--resume continues the runs in --out and --overwrite replaces them; pass one of the two")
    _check_compare(compare)
    _check_parallel(parallel)
    overrides = dict(overrides or {})
    key, values = _sweep_values(name, sweep, overrides)
    swept = {key: values[0]} if key else {}
    seeds = configuration.resolve(name, config_file, {**overrides, **swept})["seeds"] or [None]
    runs = [(m, value, seed) for m in (compare or [None]) for value in values for seed in seeds]
    configs = [configuration.resolve(name, config_file, {**overrides, **({"method": m} if m else {}),
                                                         **({key: value} if key else {}),
                                                         **({"seed": seed} if seed is not None else {})})
               for m, value, seed in runs]  # fmt: skip
    downloads = [embedded.embedded_or_download(name, c) for c in configs]  # a wheel has no recipes/data/
    configs = [c for c, _ in downloads]
    recipe = load(name)
    for c in configs:  # a --data that names nothing is refused before a header is printed or a file written
        data.check_source(c["data"], recipe.NAMED, getattr(recipe, "LOCAL_DATA", "folder"))
    device = engine.pick_device(configs[0]["device"])  # a bad --device fails here
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before NCCL starts, so each rank talks from its own GPU
    world = distributed.current(device.type)
    out = Path(configs[0]["out"])
    if parallel > 1 and (world.size > 1 or len(configs) < 2):
        raise ValueError(f"--parallel {parallel} runs several runs side by side, one process each; "
                         + ("it cannot run under a multi-process launch (torchrun): drop one of the two"
                            if world.size > 1 else "give it --compare, --seeds or --sweep (this is one run)"))
    if world.is_main:  # the console's first line: where everything trains
        print(engine.device_line(device, world, engine.use_bf16(configs[0], device)), flush=True)
        if downloads[0][1]:
            print(downloads[0][1])
    folders = [_run_folder(out, c, bool(compare), key, len(seeds) > 1) for c in configs]
    states = _check_runs(folders, configs, resume, overwrite)
    targets = [_config_target(f, config_file) for f in folders]
    for folder in folders:
        prepare_out(folder)
        if overwrite and world.is_main:  # an interrupted replacement must not leave the old run to resume
            for stale in ("checkpoint.pt", "metrics.json"):
                (folder / stale).unlink(missing_ok=True)
    rows = [c["method"] + (f" {sweeping.label(key, c[key])}" if key else "") for c in configs]

    def start(k: int) -> None:  # the run's header
        if not world.is_main:
            return
        config, state = configs[k], states[k]
        alpha = config["regmixup_alpha"] if config["method"] == "regmixup" else config["alpha"]
        print(f"== {name}: {rows[k]} (alpha {alpha}, seed {config['seed']}) -> {folders[k]}{_status(state, config)}")
        if targets[k].name != "config.yaml":
            print(f"--config {config_file} is this run's config.yaml: it is left as it is; the resolved "
                  f"configuration is in {targets[k]}")  # fmt: skip

    def save_config(k: int) -> None:  # the run's resolved config.yaml, once its data and model are built
        if world.is_main:
            # a run folder's config.yaml reruns (or resumes) that one run, in that folder: its own seed, not the
            # list beside it, and its own folder, not the comparison's
            own = {"seeds": []} if len(seeds) > 1 else {}
            configuration.save({**configs[k], **own, "out": str(folders[k])}, targets[k])

    if parallel > 1:  # each child reads its own checkpoint
        jobs = [side_by_side.Job(name, c, f, s is not None, str(f.relative_to(out)))
                for c, f, s in zip(configs, folders, states, strict=True)]  # fmt: skip
        finished = side_by_side.run_all(jobs, parallel, on_start=lambda k: (start(k), save_config(k)))
    else:
        finished = []
        for k in range(len(configs)):
            start(k)
            finished.append(train_one(name, configs[k], folders[k], states[k], built=lambda k=k: save_config(k)))
            states[k] = None  # the checkpoint's tensors are no longer needed
    results: dict[str, list[dict[str, Any]]] = {}
    for row, result in zip(rows, finished, strict=True):
        results.setdefault(row, []).append(result)
    if world.size > 1:
        torch.distributed.destroy_process_group()
    if not world.is_main:
        return out
    stats = _write_comparison(results, out) if compare or len(seeds) > 1 or key else {}
    if key:
        methods = dict.fromkeys(c["method"] for c in configs)
        by_method = {m: [stats[f"{m} {sweeping.label(key, value)}"] for value in values] for m in methods}
        print(sweeping.write(sweeping.select(key, values, by_method), out))
    print(f"results in {out.resolve()}")
    return out


def train_one(
    name: str,
    config: dict[str, Any],
    folder: Path,
    state: dict[str, Any] | None,
    built: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """One run: seed, build the recipe's task, call ``built()`` (data that cannot load leaves no config.yaml of a run
    that began), train (from ``state`` when resuming); the engine's metrics and the run's seed (``_seed``, for the
    comparison's reliability figure). The device line is :func:`run`'s, printed once."""
    torch.manual_seed(config["seed"])  # model initialisation is part of the run
    random.seed(config["seed"])
    task = load(name).build(config)
    if built is not None:
        built()
    return {**engine.train(task, config, folder, state=state, announce=False), "_seed": config["seed"]}


def _check_parallel(parallel: int) -> None:
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"--parallel must be a whole number >= 1 (runs at once), got {parallel!r}; e.g. 3")


def _status(state: dict[str, Any] | None, config: dict[str, Any]) -> str:
    if state is None:
        return ""
    done = state["epoch"] + 1
    if done >= config["epochs"]:
        return f" (finished: {done} epochs, evaluated again)"
    return f" (resumed after epoch {done} of {config['epochs']})"


# final metrics in the table: (key, header, digits)
COLUMNS = (("test_accuracy", "test accuracy", 4), ("test_loss", "NLL", 4), ("test_loss_calibrated", "NLL after T", 4),
           ("test_ece", "ECE", 4), ("test_ece_calibrated", "ECE after T", 4), ("temperature", "T", 3),
           ("test_brier", "Brier", 4), ("test_brier_calibrated", "Brier after T", 4),
           ("train_seconds_total", "train time (s)", 0))  # fmt: skip


def aggregate(finals: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per numeric key common to all ``finals`` (one per seed): mean, sample std (ddof=1; 0 for one run), values."""
    keys = [k for k, v in finals[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and all(k in f for f in finals)]  # fmt: skip
    stats = {}
    for key in keys:
        values = [float(f[key]) for f in finals]
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        stats[key] = {"mean": mean, "std": std, "n": len(values), "values": values}
    return stats


def comparison_table(stats: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown: one row per method, each column ``mean ± std`` (sample std, ddof=1) over the seeds."""
    n = max(s["test_accuracy"]["n"] for s in stats.values())
    note = f"mean ± sample std (ddof=1) over {n} seeds" if n > 1 else "one seed"
    lines = [f"| method ({note}) | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]  # fmt: skip
    for method, by_key in stats.items():
        cells = []
        for key, _, digits in COLUMNS:
            if key not in by_key:
                cells.append("")
                continue
            mean, std = by_key[key]["mean"], by_key[key]["std"]
            cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}" if by_key[key]["n"] > 1 else f"{mean:.{digits}f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_comparison(results: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The table (Markdown and JSON: mean, sample std and per-seed values of every final metric) and the figures;
    returns the statistics per row (method, with a sweep ``method KEY=value``)."""
    finals = {m: [{**r["final"], "wall_seconds": r["wall_seconds"]} for r in runs] for m, runs in results.items()}
    stats = {method: aggregate(rows) for method, rows in finals.items()}
    table = comparison_table(stats)
    (out / "comparison.md").write_text(table + "\n")
    (out / "comparison.json").write_text(json.dumps(stats, indent=2))
    histories = {m: [r["epochs"] for r in runs] for m, runs in results.items()}
    plots.learning_curves(histories, out / "comparison_curves.png")
    seed = next(iter(results.values()))[0].get("_seed")  # every row's first run is on the first seed
    plots.reliability({m: (runs[0]["_logits"], runs[0]["_labels"], runs[0]["_temperature"])
                       for m, runs in results.items()}, out / "comparison_reliability.png", seed=seed)  # fmt: skip
    plots.final_spread(finals, out / "comparison_spread.png")
    print(table)
    return stats
