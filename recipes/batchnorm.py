"""Precise BatchNorm statistics: running mean and variance recomputed on clean training batches.

BatchNorm's running statistics are an exponential average over the last training
batches. Under mixup those batches are mixed (louder spectrograms in the power domain,
blended images), and with few training groups (the speech recipe's four training
speakers) the average of the last few batches can sit far from the data's. Before each
evaluation the engine can recompute them as a plain average over a fixed set of clean
training batches (PreciseBN: Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021;
detectron2's ``hooks.PreciseBN``). Only the BatchNorm layers run in training mode, so
dropout adds no noise and consumes no random numbers.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from multimix_recipes.data import epoch_batches

__all__ = ["batchnorm_layers", "precise_batches", "recompute_batchnorm"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def precise_batches(size: int, batch_size: int, batches: int, seed: int = 0) -> list[torch.Tensor]:
    """Row indices of ``batches`` batches of ``batch_size`` from a seeded shuffle of ``range(size)``.

    A training set is often sorted by class (an image folder, CIFAR-10's archive), so its first
    rows would hold a few classes only; a shuffle gives every batch all of them. The same
    ``seed`` draws the same batches on every rank and at every evaluation.
    """
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return list(order[: min(size, batches * batch_size)].split(batch_size))


def recompute_batchnorm(
    task: Any, device: torch.device, bf16: bool, batch_size: int, batches: int, seed: int = 0
) -> int:
    """Replace every BatchNorm layer's running statistics by their average over clean training batches.

    Uses ``batches`` batches of ``batch_size`` training samples drawn by :func:`precise_batches`
    (a seeded shuffle of the whole training set, the same on every rank, so all ranks end with
    the same statistics), forwarded as at test time (``task.test_logits``: no mixing, no
    augmentation). Returns how many batches were used (0 when the model has no BatchNorm layer).
    """
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches!r}")
    layers = batchnorm_layers(task.model)
    if not layers:
        return 0
    index = precise_batches(len(task.train_set), batch_size, batches, seed)
    momenta = [layer.momentum for layer in layers]
    task.model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average: every batch counts the same
        layer.train()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    try:
        with torch.no_grad(), autocast:
            for batch in epoch_batches(task.train_set, index, device, task.collate_eval):
                task.test_logits(task.model, batch)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        task.model.eval()
    return len(index)
