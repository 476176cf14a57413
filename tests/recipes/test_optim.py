"""Optimizers and schedules as configuration keys: exact learning-rate factors."""

import math

import pytest
import torch

from multimix_recipes.config import resolve
from multimix_recipes.optim import build_optimizer, build_scheduler, lr_factor


def config(**keys):
    return resolve("image", None, keys)


def test_step_schedule_is_the_mixup_papers():
    c = config(schedule="step", milestones=[100, 150], epochs=200)
    spe = 391
    factors = [lr_factor(epoch * spe, 200 * spe, spe, c) for epoch in (0, 99, 100, 149, 150, 199)]
    assert factors == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(100 * spe - 1, 200 * spe, spe, c) == 1.0  # the last step of epoch 100 (1-based)


def test_cosine_with_linear_warmup():
    c = config(schedule="cosine", warmup_epochs=1.0, epochs=6)
    assert lr_factor(0, 60, 10, c) == pytest.approx(0.01)
    assert lr_factor(5, 60, 10, c) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(10, 60, 10, c) == pytest.approx(1.0)
    assert lr_factor(35, 60, 10, c) == pytest.approx(0.5)
    assert lr_factor(60, 60, 10, c) == pytest.approx(0.0, abs=1e-12)


def test_onecycle_peaks_at_15_percent_and_ends_near_zero():
    c = config(schedule="onecycle")
    assert lr_factor(0, 100, 10, c) == pytest.approx(1 / 25)
    assert lr_factor(15, 100, 10, c) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, c) == pytest.approx(1 / 25e4)
    assert lr_factor(0, 100, 10, config(schedule="constant")) == 1.0


def test_scheduler_follows_lr_factor_and_sgd_takes_its_keys():
    c = config(optimizer="sgd", lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-4, schedule="step",
               milestones=[1], epochs=2)  # fmt: skip
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = build_optimizer([param], c)
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.1, 0.8, True, 1e-4)
    scheduler = build_scheduler(optimizer, 4, 2, c)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert isinstance(build_optimizer([param], config(optimizer="adamw")), torch.optim.AdamW)


def test_lr_factor_errors():
    with pytest.raises(ValueError, match=r"need step >= 0 and steps >= 1, got step=-1"):
        lr_factor(-1, 10, 1, config())
    assert math.isfinite(lr_factor(10**6, 10, 1, config(schedule="cosine")))
