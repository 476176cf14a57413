"""Optimizers and learning-rate schedules as configuration keys.

``optimizer``: ``sgd`` (``momentum``, ``nesterov``) or ``adamw``; ``weight_decay`` for both.
``schedule`` multiplies ``lr`` by :func:`lr_factor` of the optimizer step: ``constant``;
``step`` (times ``gamma`` at each of ``milestones``, in epochs: the mixup paper's lr / 10 at
epochs 100 and 150); ``cosine`` (to 0); ``onecycle`` (15% cosine warm-up from lr / 25,
then cosine down, as ``torch.optim.lr_scheduler.OneCycleLR`` for the learning rate).
``warmup_epochs`` adds a linear warm-up from lr / 100 before ``constant``, ``step`` or
``cosine``. Steps are counted per process, so every rank follows the whole schedule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["build_optimizer", "build_scheduler", "lr_factor", "set_fused"]

ONECYCLE_PCT, ONECYCLE_START, ONECYCLE_END = 0.15, 1 / 25, 1 / 25e4


def build_optimizer(
    params: Iterable[torch.nn.Parameter], config: dict[str, Any], *, fused: bool = False
) -> torch.optim.Optimizer:
    """SGD (with momentum, optionally Nesterov) or AdamW from the configuration.

    ``fused``: one kernel updates every parameter (``fused=True``), for a compiled step
    whose launches are otherwise few; else torch's default (``foreach`` on a GPU).
    """
    params = list(params)
    flags = {"fused": True} if fused else {}
    if config["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=config["lr"], momentum=config["momentum"], nesterov=config["nesterov"],
                               weight_decay=config["weight_decay"], **flags)  # fmt: skip
    if config["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=config["lr"], weight_decay=config["weight_decay"], **flags)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {config['optimizer']!r}")


def set_fused(optimizer: torch.optim.Optimizer, fused: bool) -> None:
    """Keep this run's ``fused`` choice after ``load_state_dict``, which brings back the saved groups' flags.

    ``compile`` may change on resume; a fused AdamW keeps its step counts on the parameters'
    device, an unfused one on the CPU, so they are moved to match.
    """
    for group in optimizer.param_groups:
        group["fused"] = True if fused else None
        if fused:
            group["foreach"] = None
        for param in group["params"]:
            step = optimizer.state.get(param, {}).get("step")
            if isinstance(step, torch.Tensor):
                optimizer.state[param]["step"] = step.to(param.device if fused else "cpu", torch.float32)


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, config: dict[str, Any]) -> float:
    """The multiplier of ``lr`` for optimizer step ``step`` (0-based) of ``total_steps``.

    >>> config = {"schedule": "step", "milestones": [100, 150], "gamma": 0.1, "warmup_epochs": 0}
    >>> [round(lr_factor(s, 200 * 390, 390, config), 4) for s in (0, 99 * 390, 100 * 390, 150 * 390)]
    [1.0, 1.0, 0.1, 0.01]
    """
    if steps_per_epoch < 1 or total_steps < 1 or step < 0:
        raise ValueError(f"need step >= 0 and steps >= 1, got {step=}, {total_steps=}, {steps_per_epoch=}")
    schedule = config["schedule"]
    if schedule == "onecycle":
        progress = min(step / total_steps, 1.0)
        if progress < ONECYCLE_PCT:
            t = progress / ONECYCLE_PCT
            return ONECYCLE_START + (1 - ONECYCLE_START) * (1 - math.cos(math.pi * t)) / 2
        t = (progress - ONECYCLE_PCT) / (1 - ONECYCLE_PCT)
        return ONECYCLE_END + (1 - ONECYCLE_END) * (1 + math.cos(math.pi * t)) / 2
    warmup = round(config["warmup_epochs"] * steps_per_epoch)
    if step < warmup:
        return 0.01 + 0.99 * step / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        epoch = step // steps_per_epoch
        return config["gamma"] ** sum(epoch >= m for m in config["milestones"])
    if schedule == "cosine":
        t = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        return (1 + math.cos(math.pi * t)) / 2
    raise ValueError(f"schedule must be constant, step, cosine or onecycle, got {schedule!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, config: dict[str, Any]
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :func:`lr_factor`: its state is the step count, so a run resumed with more
    ``epochs`` continues on the longer schedule."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, steps_per_epoch, config)
    )
