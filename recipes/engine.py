"""The training loop every recipe shares: train, evaluate, checkpoint, resume, plot.

A recipe hands over a :class:`Task` (how to compute the training loss of a batch and
the logits of a test batch); the engine owns the rest: device and precision, the
per-epoch seeded shuffling, metrics (train loss, test accuracy, test loss, ECE, time,
throughput), checkpoints that resume exactly (model, optimizer, scheduler, mixer and
RNG states; written atomically, so an interrupted run leaves the last complete one),
and the plots.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from multimix_recipes import distributed, plots
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

import multimix

__all__ = ["Task", "mixer_for", "pick_device", "rng_state_on_cpu", "train"]


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


def rng_state_on_cpu(state: dict[str, Any]) -> dict[str, Any]:
    """RNG states as torch wants them back: CPU ``ByteTensor`` s, whatever device the checkpoint was mapped to."""
    as_bytes = lambda t: torch.as_tensor(t).to("cpu", torch.uint8)  # noqa: E731
    fixed = dict(state)
    fixed["torch"] = as_bytes(state["torch"])
    if "cuda" in state:
        fixed["cuda"] = [as_bytes(t) for t in state["cuda"]]
    return fixed


def mixer_for(
    config: dict[str, Any], num_classes: int, adapters: dict[str, Callable[[], Any]]
) -> multimix.Mixer | None:
    """The run's Mixer: ``adapters`` maps each mixing method to a factory of its adapter(s); ERM gets None."""
    if config["method"] not in adapters:
        return None
    return multimix.Mixer(adapters[config["method"]](), num_classes, per_sample=config["per_sample"],
                          label_smoothing=config["label_smoothing"], seed=config["seed"])  # fmt: skip


@dataclass
class Task:
    """What a recipe must provide to the engine.

    Attributes:
        model: the module whose parameters are trained (saved in checkpoints).
        train_set, test_set: datasets of ``(input, label)`` pairs.
        train_loss: ``(batch, device) -> loss`` for one training batch (mixing inside).
        test_logits: ``(batch, device) -> (logits, labels)`` for one test batch.
        mixer: the plan generator to checkpoint (None for ERM).
        collate: the training DataLoader's ``collate_fn`` (default collate if None).
        collate_eval: the test DataLoader's ``collate_fn`` (default collate if None).
    """

    model: nn.Module
    train_set: Dataset
    test_set: Dataset
    train_loss: Callable[[Any, torch.device], torch.Tensor]
    test_logits: Callable[[Any, torch.device], tuple[torch.Tensor, torch.Tensor]]
    mixer: multimix.Mixer | None = None
    collate: Callable | None = None
    collate_eval: Callable | None = None
    class_names: list[str] = field(default_factory=list)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    state = rng_state_on_cpu(state)
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_atomically(payload: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def evaluate(task: Task, loader: Iterable, device: torch.device, autocast: Any) -> dict[str, float]:
    """Test accuracy, loss and ECE on clean (unmixed) data."""
    task.model.eval()
    logits_all, labels_all = [], []
    with torch.no_grad(), autocast():
        for batch in loader:
            logits, labels = task.test_logits(batch, device)
            logits_all.append(logits.float().cpu())
            labels_all.append(labels.cpu())
    logits, labels = torch.cat(logits_all), torch.cat(labels_all)
    return {
        "test_accuracy": multimix.accuracy(logits, labels),
        "test_loss": float(multimix.soft_cross_entropy(logits, labels)),
        "test_ece": multimix.expected_calibration_error(logits, labels),
        "_logits": logits,
        "_labels": labels,
    }


def train(task: Task, config: dict[str, Any], out: Path, *, resume: bool = False) -> dict[str, Any]:
    """Train ``task`` for ``config['epochs']`` epochs, writing metrics, checkpoints and plots to ``out``."""
    device = pick_device(config["device"])
    world = distributed.current(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config["seed"])
    random.seed(config["seed"])
    model = task.model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config["lr"], weight_decay=config["weight_decay"])
    steps_per_epoch = max(1, len(task.train_set) // config["batch_size"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config["lr"], total_steps=config["epochs"] * steps_per_epoch, pct_start=0.15
    )
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()

    history: list[dict[str, Any]] = []
    start_epoch = 0
    checkpoint_path = out / "checkpoint.pt"
    if resume:
        if not checkpoint_path.is_file():
            raise ValueError(f"--resume: no checkpoint at {checkpoint_path}; run without --resume first")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)  # RNG states must stay on the CPU
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if task.mixer is not None:
            task.mixer.load_state_dict(state["mixer"])
        _set_rng_state(state["rng"])
        history, start_epoch = state["history"], state["epoch"] + 1
    test_loader = DataLoader(task.test_set, batch_size=config["batch_size"] * 2, collate_fn=task.collate_eval)
    wall_start = time.perf_counter()
    result: dict[str, Any] = {}
    for epoch in range(start_epoch, config["epochs"]):
        if task.mixer is not None:
            task.mixer.set_epoch(epoch)
        order = torch.Generator().manual_seed(config["seed"] * 1000 + epoch)
        sampler = None
        if world.size > 1:  # each rank: its shard of the epoch, its own plans and augmentations
            sampler = DistributedSampler(task.train_set, world.size, world.rank, seed=config["seed"], drop_last=True)
            sampler.set_epoch(epoch)
            torch.manual_seed(distributed.rank_seed(config["seed"], world.rank, epoch))
            if task.mixer is not None:
                task.mixer.generator.manual_seed(distributed.rank_seed(config["seed"] + 1, world.rank, epoch))
        loader = DataLoader(task.train_set, batch_size=config["batch_size"], shuffle=sampler is None, drop_last=True,
                            generator=order, sampler=sampler, collate_fn=task.collate)  # fmt: skip
        model.train()
        started, seen, total_loss = time.perf_counter(), 0, 0.0
        progress = tqdm(loader, desc=f"epoch {epoch + 1}/{config['epochs']}", leave=False,
                        disable=None if config["progress"] else True)  # fmt: skip
        for batch in progress:
            with autocast():
                loss = task.train_loss(batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world.size > 1:
                distributed.average_gradients(params, world)
            optimizer.step()
            scheduler.step()
            size = len(batch[1]) if isinstance(batch, (list, tuple)) else config["batch_size"]
            seen += size
            total_loss += float(loss.detach()) * size
            progress.set_postfix(loss=f"{float(loss.detach()):.3f}")
        seconds = time.perf_counter() - started
        if not world.is_main:
            continue
        result = evaluate(task, test_loader, device, autocast)
        history.append({
            "epoch": epoch + 1, "train_loss": total_loss / max(seen, 1),  # this rank's batches
            "test_accuracy": result["test_accuracy"], "test_loss": result["test_loss"], "test_ece": result["test_ece"],
            "train_seconds": seconds, "train_samples_per_second": seen * world.size / seconds,
        })  # fmt: skip
        last = history[-1]
        print(f"epoch {epoch + 1}: train loss {last['train_loss']:.4f}, test accuracy {last['test_accuracy']:.4f}, "
              f"test loss {last['test_loss']:.4f}, ECE {last['test_ece']:.4f}")  # fmt: skip
        _save_atomically({
            "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "mixer": task.mixer.state_dict() if task.mixer else None,
            "rng": _rng_state(), "history": history, "config": config,
        }, checkpoint_path)  # fmt: skip
    if not world.is_main:
        return {}
    if not result:  # resumed a finished run: evaluate the final model once for the plots
        result = evaluate(task, test_loader, device, autocast)
    metrics = {
        "recipe": config["recipe"], "method": config["method"], "device": str(device),
        "epochs": history, "final": history[-1] if history else {}, "world_size": world.size,
        "wall_seconds": time.perf_counter() - wall_start,
    }  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plots.learning_curves({config["method"]: history}, out / "learning_curves.png")
    plots.reliability(result["_logits"], result["_labels"], out / "reliability.png", config["method"])
    metrics["_logits"], metrics["_labels"] = result["_logits"], result["_labels"]
    return metrics
