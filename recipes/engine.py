"""The training loop every recipe shares: train, evaluate, checkpoint, resume, plot.

A recipe hands over a :class:`Task` (how to compute the training loss of a batch and
the logits of a test batch); the engine owns the rest: device and precision, the
optimizer and schedule, the per-epoch seeded order, torch DDP on several devices,
metrics (train loss, test accuracy and error, NLL, ECE, Brier score, time, throughput;
the temperature fitted on the validation split and the test scores after it),
checkpoints that resume exactly (see :mod:`multimix_recipes.checkpoint`) and the plots.
The hot path reads nothing back from the device: the loss is summed there and read
once per epoch.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

import multimix
from multimix_recipes import checkpoint, distributed, optim, plots
from multimix_recipes.batchnorm import recompute_batchnorm
from multimix_recipes.checkpoint import rng_state_on_cpu
from multimix_recipes.data import TensorData, epoch_batches, fits_on
from multimix_recipes.step import SplitLoss, build_step, check_backend, compile_wanted

__all__ = ["DOMINANT", "Task", "calibrate", "device_line", "evaluate", "mixer_for", "pick_device", "predict",
           "rng_state_on_cpu", "scores", "split_method", "steps_per_epoch", "summary", "train"]  # fmt: skip


def pick_device(name: str, *, cuda_available: bool | None = None, local_rank: str | None = None) -> torch.device:
    """The run's device, always with an index for CUDA (``torch.cuda.set_device`` needs one).

    Args:
        name: ``auto`` (CUDA when there is a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        cuda_available: whether a GPU is usable (default: ask torch); tests pass it to resolve
            CUDA names on a machine without a GPU.
        local_rank: the launcher's ``LOCAL_RANK`` (default: the environment variable); with
            ``cuda`` it picks ``cuda:LOCAL_RANK``, one GPU per process.
    """
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    local_rank = os.environ.get("LOCAL_RANK") if local_rank is None else local_rank
    if name.startswith("cuda") and not available:
        raise ValueError(f"--device {name} was asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if available else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if ":" in name:
        return torch.device(name)
    if local_rank is None:
        return torch.device("cuda", 0)
    if not str(local_rank).isdigit():
        raise ValueError(f"LOCAL_RANK must be a non-negative integer (set by torchrun), got {local_rank!r}")
    return torch.device("cuda", int(local_rank))


DOMINANT = "-dominant"  # a method's suffix: its inputs mixed, the label of the larger share (label_mode="dominant")


def split_method(method: str) -> tuple[str, str]:
    """The mixing method and the Mixer's ``label_mode`` a method name asks for.

    ``mixup-dominant`` is ``mixup``'s inputs with the label of the larger share (lam >= 0.5
    keeps its own; MixupIO in torch-uncertainty; Wang et al., CVPR 2023, on mixup's
    calibration); any other name keeps mixup's interpolated labels (``lerp``).

    Example:
        >>> split_method("mixup-dominant"), split_method("cutmix")
        (('mixup', 'dominant'), ('cutmix', 'lerp'))
    """
    if method.endswith(DOMINANT):
        return method[: -len(DOMINANT)], "dominant"
    return method, "lerp"


def mixer_for(
    config: dict[str, Any], num_classes: int, adapters: dict[str, Callable[[], Any]]
) -> multimix.Mixer | None:
    """The run's Mixer: ``adapters`` maps each mixing method to a factory of its adapter(s); ERM gets None.

    A ``<method>-dominant`` name builds ``<method>``'s adapters with ``label_mode="dominant"``.
    """
    method, label_mode = split_method(config["method"])
    if method not in adapters:
        return None
    return multimix.Mixer(adapters[method](), num_classes, per_sample=config["per_sample"],
                          label_smoothing=config["label_smoothing"], label_mode=label_mode,
                          seed=config["seed"])  # fmt: skip


@dataclass
class Task:
    """What a recipe must provide to the engine.

    Attributes:
        model: the module whose parameters are trained (saved in checkpoints).
        train_set, test_set: a :class:`~multimix_recipes.data.TensorData` (kept on the device
            when it fits) or any dataset of samples for ``collate``.
        train_loss: ``(module, batch) -> loss`` for one training batch already on the device
            (mixing inside); ``module`` is ``model`` or its DDP / compiled wrapper. A
            :class:`~multimix_recipes.step.SplitLoss` (host draws, then tensor ops) is compiled
            whole with ``compile`` on.
        test_logits: ``(model, batch) -> (logits, labels)`` for one test batch on the device.
        mixer: the plan generator to checkpoint (None for ERM).
        collate, collate_eval: ``collate_fn`` for datasets that are not tensors.
        batches: ``(order, batch_size, generator) -> list of index tensors``: how an epoch's
            order becomes batches (default: consecutive chunks; text buckets by length).
        save: ``(folder) -> None`` writes the trained model in its own format (text: a Hugging
            Face directory) into ``out / "model"``.
        val_set: the validation split carved out of the training data (like ``test_set``):
            the temperature is fitted on it at each evaluation, never on the test set.
        stateful: other random state to checkpoint with the run, by name: objects with
            ``state_dict``/``load_state_dict`` (the speech recipe's SpecAugment generator),
            saved per rank like the mixer's, so a resumed run draws what it would have.
        network: the network whose weights checkpoints hold when ``model`` wraps it
            (``multimix.wrap`` for manifold mixup), so they load without multimix; None: ``model``.
    """

    model: nn.Module
    train_set: Dataset
    test_set: Dataset
    train_loss: Callable[[nn.Module, Any], torch.Tensor]
    test_logits: Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]
    mixer: multimix.Mixer | None = None
    collate: Callable | None = None
    collate_eval: Callable | None = None
    batches: Callable[[torch.Tensor, int, torch.Generator], list[torch.Tensor]] | None = None
    class_names: list[str] = field(default_factory=list)
    save: Callable[[Path], None] | None = None
    val_set: Dataset | None = None
    stateful: dict[str, Any] = field(default_factory=dict)
    network: nn.Module | None = None


def use_bf16(config: dict[str, Any], device: torch.device) -> bool:
    if config["precision"] == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return config["precision"] == "bf16"


def device_line(device: torch.device, world: distributed.World, bf16: bool) -> str:
    """The first line a run prints: where it trains (the GPU's name too), on how many processes, in what precision."""
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    return f"device {device}{gpu}, world size {world.size}, precision {'bf16 autocast' if bf16 else 'fp32'}"


def steps_per_epoch(train_size: int, config: dict[str, Any], world_size: int = 1) -> int:
    """Optimizer steps per epoch on each rank; an error when the train set cannot fill one."""
    micro = train_size // world_size // config["batch_size"]
    steps = micro // config["accumulate"]
    if steps < 1:
        need = config["batch_size"] * config["accumulate"] * world_size
        raise ValueError(
            f"the train set has {train_size} samples, fewer than one optimizer step needs ({need} = batch_size "
            f"{config['batch_size']} x accumulate {config['accumulate']} x {world_size} device(s)); "
            "lower batch_size or raise train_limit"
        )
    return steps


def epoch_order(size: int, epoch: int, config: dict[str, Any], world: distributed.World) -> torch.Tensor:
    """This rank's shard of the epoch's seeded permutation, cut to whole optimizer steps."""
    generator = torch.Generator().manual_seed((config["seed"] * 1000 + epoch) % 2**63)
    order = torch.randperm(size, generator=generator)[world.rank :: world.size]
    steps = steps_per_epoch(size, config, world.size)
    return order[: steps * config["accumulate"] * config["batch_size"]]


def _shard(n: int, world: distributed.World) -> torch.Tensor:
    return torch.arange(world.rank, n, world.size)


def predict(
    task: Task, data: Dataset, device: torch.device, bf16: bool, world: distributed.World, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits and labels of ``data`` on the CPU, in its order; each rank scores its shard, gathered."""
    task.model.eval()
    index = _shard(len(data), world)
    logits_all, labels_all = [], []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with torch.no_grad(), autocast:
        for batch in epoch_batches(data, list(index.split(batch_size)), device, task.collate_eval):
            logits, labels = task.test_logits(task.model, batch)
            logits_all.append(logits.float().cpu())
            labels_all.append(labels.cpu())
    gathered = distributed.gather((index, torch.cat(logits_all), torch.cat(labels_all)), world)
    order = torch.cat([g[0] for g in gathered]).argsort()
    return torch.cat([g[1] for g in gathered])[order], torch.cat([g[2] for g in gathered])[order]


def scores(logits: torch.Tensor, labels: torch.Tensor, prefix: str = "test", suffix: str = "") -> dict[str, float]:
    """Accuracy, NLL (the loss), ECE and Brier score of ``logits``, keyed ``{prefix}_{name}{suffix}``."""
    values = {"accuracy": multimix.accuracy(logits, labels), "loss": multimix.negative_log_likelihood(logits, labels),
              "ece": multimix.expected_calibration_error(logits, labels), "brier": multimix.brier_score(logits, labels)}
    return {f"{prefix}_{name}{suffix}": value for name, value in values.items()}  # fmt: skip


def calibrate(val: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Temperature scaling (Guo et al., 2017): T fitted on the validation logits, the test set scored with logits / T.

    Accuracy does not change; ``test_loss_calibrated``, ``test_ece_calibrated`` and
    ``test_brier_calibrated`` are the test scores of ``logits / T``.
    """
    temperature = multimix.fit_temperature(*val)
    calibrated = scores(test[0] / temperature, test[1], suffix="_calibrated")
    del calibrated["test_accuracy_calibrated"]
    return {"temperature": temperature, **calibrated}


def evaluate(task: Task, device: torch.device, bf16: bool, world: distributed.World, batch_size: int) -> dict:
    """Test scores on clean data; with a validation split, its scores, T fitted on it and the calibrated test scores."""
    logits, labels = predict(task, task.test_set, device, bf16, world, batch_size)
    result = {**scores(logits, labels), "_logits": logits, "_labels": labels, "temperature": 1.0}
    if task.val_set is not None:
        val = predict(task, task.val_set, device, bf16, world, batch_size)
        result.update(scores(*val, prefix="val"))
        result.update(calibrate(val, (logits, labels)))
    return result


def summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last epoch, the final test error, the median test error of the last 10 epochs (the mixup paper's), time."""
    if not history:
        return {}
    errors = [1 - h["test_accuracy"] for h in history[-10:]]
    return {**history[-1], "test_error": 1 - history[-1]["test_accuracy"],
            "test_error_median_last_10": statistics.median(errors),
            "train_seconds_total": sum(h.get("train_seconds", 0.0) for h in history)}  # fmt: skip


def train(
    task: Task, config: dict[str, Any], out: Path, *, state: dict[str, Any] | None = None, announce: bool = True
) -> dict[str, Any]:
    """Train ``task`` up to ``config['epochs']`` epochs (from ``state``, a read checkpoint, when resuming).

    ``announce`` prints :func:`device_line` first; the runner, which prints it once before all
    of its runs, passes False.
    """
    device = pick_device(config["device"])
    world = distributed.current(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    steps = steps_per_epoch(len(task.train_set), config, world.size)  # refused before any training
    backend = check_backend(config["compile_backend"])
    split = isinstance(task.train_loss, SplitLoss)
    compiled = compile_wanted(config["compile"], device, config["epochs"] * steps, split)
    out.mkdir(parents=True, exist_ok=True)
    model = task.model.to(device)
    weights = task.network if task.network is not None else model  # what checkpoints hold
    params = [p for p in model.parameters() if p.requires_grad]
    fused = compiled and device.type == "cuda"  # a compiled step launches few kernels: the optimizer's in one
    optimizer = optim.build_optimizer(params, config, fused=fused)
    scheduler = optim.build_scheduler(optimizer, config["epochs"] * steps, steps, config)
    bf16 = use_bf16(config, device)
    if world.is_main and announce:
        print(device_line(device, world, bf16), flush=True)
    if fits_on(task.train_set, device):
        task.train_set = task.train_set.to(device)
    if fits_on(task.test_set, device):
        task.test_set = task.test_set.to(device)
    if task.val_set is not None and fits_on(task.val_set, device):
        task.val_set = task.val_set.to(device)
    module: nn.Module = model
    if world.size > 1:
        module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    train_step, how = build_step(task.train_loss, module, device, bf16, compiled=compiled, backend=backend)
    if world.is_main and how:
        print(how + (", fused optimizer" if fused else ""), flush=True)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if state is not None:
        weights.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        optim.set_fused(optimizer, fused)  # compile may change on resume
        scheduler.load_state_dict(state["scheduler"])
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):  # the (longer) schedule
            group["lr"] = base * optim.lr_factor(scheduler.last_epoch, config["epochs"] * steps, steps, config)
        mixers = state.get("mixers") or []
        if task.mixer is not None and len(mixers) > world.rank and mixers[world.rank] is not None:
            task.mixer.load_state_dict(mixers[world.rank])
        stateful = state.get("stateful") or []
        for name, holder in task.stateful.items():
            if len(stateful) > world.rank and name in stateful[world.rank]:
                holder.load_state_dict(stateful[world.rank][name])
        checkpoint.set_rng_state(state["rng"])
        history, start_epoch = list(state["history"]), state["epoch"] + 1
    # the wall time of the epochs before a resume (a checkpoint without it: their training time)
    earlier = float(state.get("wall_seconds", sum(h["train_seconds"] for h in history))) if state else 0.0
    workers = min(4, (os.cpu_count() or 1) - 1) if device.type == "cuda" else 0
    wall_start = time.perf_counter()
    result: dict[str, Any] = {}
    for epoch in range(start_epoch, config["epochs"]):
        if task.mixer is not None:
            task.mixer.set_epoch(epoch)
        if world.size > 1:  # each rank: its own plans and augmentations, reproducible on resume
            torch.manual_seed(distributed.rank_seed(config["seed"], world.rank, epoch))
            if task.mixer is not None:
                task.mixer.generator.manual_seed(distributed.rank_seed(config["seed"] + 1, world.rank, epoch))
        order = epoch_order(len(task.train_set), epoch, config, world)
        generator = torch.Generator().manual_seed(distributed.rank_seed(config["seed"], world.rank, epoch))
        batches = (task.batches(order, config["batch_size"], generator) if task.batches
                   else list(order.view(-1, config["batch_size"])))  # fmt: skip
        if isinstance(task.train_set, TensorData) and task.train_set.device == device:
            batches = list(torch.stack(batches).to(device, non_blocking=True))
        model.train()
        started = time.perf_counter()
        total_loss, seen = torch.zeros((), device=device), 0
        progress = tqdm(epoch_batches(task.train_set, batches, device, task.collate, workers), total=len(batches),
                        desc=f"epoch {epoch + 1}/{config['epochs']}", leave=False,
                        disable=None if config["progress"] else True)  # fmt: skip
        for k, batch in enumerate(progress):
            last_micro = (k + 1) % config["accumulate"] == 0
            sync = module.no_sync() if world.size > 1 and not last_micro else nullcontext()
            with sync:
                loss = train_step(batch)  # under autocast with bf16
                (loss / config["accumulate"]).backward()
            total_loss += loss.detach().float()
            seen += config["batch_size"]
            if last_micro:
                if config["grad_clip"] > 0:
                    torch.nn.utils.clip_grad_norm_(params, config["grad_clip"])
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        train_loss = float(total_loss) / max(len(batches), 1)  # this rank's batches; one read per epoch
        if config["precise_bn"] > 0:
            recompute_batchnorm(task, device, bf16, config["batch_size"] * 2, config["precise_bn"],
                                seed=config["seed"])
        result = evaluate(task, device, bf16, world, config["batch_size"] * 2)
        mixer_states = distributed.gather(task.mixer.state_dict() if task.mixer else None, world)
        other_states = distributed.gather({name: h.state_dict() for name, h in task.stateful.items()}, world)
        if not world.is_main:
            continue
        history.append({
            "epoch": epoch + 1, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
            "test_error": 1 - result["test_accuracy"],
            **{k: v for k, v in result.items() if not k.startswith("_")},
            "train_seconds": seconds, "train_samples_per_second": seen * world.size / seconds,
        })  # fmt: skip
        last = history[-1]
        print(f"epoch {epoch + 1}: train loss {last['train_loss']:.4f}, test accuracy {last['test_accuracy']:.4f}, "
              f"test loss {last['test_loss']:.4f}, ECE {last['test_ece']:.4f}"
              + (f"; T {last['temperature']:.3f}: test loss {last['test_loss_calibrated']:.4f}, "
                 f"ECE {last['test_ece_calibrated']:.4f}" if "test_ece_calibrated" in last else ""),
              flush=True)  # fmt: skip
        checkpoint.write({
            "epoch": epoch, "model": weights.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "mixers": mixer_states, "stateful": other_states,
            "rng": checkpoint.rng_state(), "history": history, "config": config,
            "wall_seconds": earlier + time.perf_counter() - wall_start,
        }, out / "checkpoint.pt")  # fmt: skip
    wall_seconds = earlier + time.perf_counter() - wall_start
    if not result:  # resumed a finished run: evaluate the final model once for the plots (not the run's time)
        result, wall_seconds = evaluate(task, device, bf16, world, config["batch_size"] * 2), earlier
    if not world.is_main:
        return {}
    metrics = {
        "recipe": config["recipe"], "method": config["method"], "device": str(device), "world_size": world.size,
        "epochs": history, "final": summary(history), "wall_seconds": wall_seconds,
    }  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if task.save is not None:
        task.save(out / "model")
    plots.learning_curves({config["method"]: [history]}, out / "learning_curves.png")
    plots.reliability({config["method"]: (result["_logits"], result["_labels"], result["temperature"])},
                      out / "reliability.png", seed=config["seed"])  # fmt: skip
    metrics["_logits"], metrics["_labels"], metrics["_temperature"] = (result["_logits"], result["_labels"],
                                                                       result["temperature"])  # fmt: skip
    return metrics

