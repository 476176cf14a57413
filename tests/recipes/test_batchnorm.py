"""Precise BatchNorm statistics: recomputed on clean training batches, as a hand-written average gives."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from multimix_recipes.batchnorm import batchnorm_layers, precise_batches, recompute_batchnorm
from multimix_recipes.config import resolve
from multimix_recipes.data import TensorData
from multimix_recipes.engine import Task, train

CPU = torch.device("cpu")


def bn_task(shift: float = 0.0) -> Task:
    """BatchNorm on 4 features, trained on ``x * 3 + shift`` (a stand-in for mixed batches), tested on clean ``x``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g) * torch.tensor([1.0, 2.0, 0.5, 3.0]) + torch.tensor([1.0, -2.0, 0.0, 4.0])
    y = torch.randint(0, 3, (96,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 3))
    return Task(model, TensorData((x, y)), TensorData((x[:32], y[:32])),
                train_loss=lambda m, b: F.cross_entropy(m(b[0] * 3 + shift), b[1]),
                test_logits=lambda m, b: (m(b[0]), b[1]))  # fmt: skip


def test_running_statistics_are_the_average_over_clean_batches():
    task = bn_task()
    bn = task.model[0]
    bn.running_mean.fill_(100.0)
    bn.running_var.fill_(100.0)
    rng = torch.get_rng_state()
    used = recompute_batchnorm(task, CPU, False, batch_size=32, batches=2)  # 64 rows of a seeded shuffle
    first, second = (task.train_set.tensors[0][index] for index in precise_batches(96, 32, 2))
    assert used == 2
    torch.testing.assert_close(bn.running_mean, (first.mean(0) + second.mean(0)) / 2)
    torch.testing.assert_close(bn.running_var, (first.var(0) + second.var(0)) / 2)  # unbiased, as BatchNorm keeps
    assert bn.momentum == 0.1 and not task.model.training
    assert torch.equal(torch.get_rng_state(), rng)  # dropout stayed off: no random numbers drawn


def test_batches_come_from_a_seeded_shuffle_of_every_class():
    """A class-sorted training set (an image folder, CIFAR-10's archive): two batches see all ten classes,
    not the first rows' two or three, and the same seed draws the same rows."""
    x, y = torch.randn(1000, 4), torch.arange(10).repeat_interleave(100)  # sorted by class
    seen: list[torch.Tensor] = []

    def test_logits(model, batch):
        seen.append(batch[1])
        return model(batch[0]), batch[1]

    task = Task(nn.Sequential(nn.BatchNorm1d(4)), TensorData((x, y)), TensorData((x, y)),
                train_loss=lambda m, b: m(b[0]).sum(), test_logits=test_logits)  # fmt: skip
    assert recompute_batchnorm(task, CPU, False, batch_size=64, batches=2, seed=3) == 2
    labels = torch.cat(seen)
    assert len(labels) == 128 and set(labels.tolist()) == set(range(10))
    assert all(len(set(batch.tolist())) >= 5 for batch in seen)  # each batch mixes the classes
    again = precise_batches(1000, 64, 2, seed=3)
    assert torch.equal(torch.cat(again), torch.cat(precise_batches(1000, 64, 2, seed=3)))
    assert not torch.equal(torch.cat(again), torch.cat(precise_batches(1000, 64, 2, seed=4)))
    assert sorted(torch.cat(precise_batches(1000, 64, 100)).tolist()) == list(range(1000))  # every row once


def test_more_batches_than_data_use_every_sample_once():
    task = bn_task()
    assert recompute_batchnorm(task, CPU, False, batch_size=32, batches=100) == 3
    x = task.train_set.tensors[0]
    torch.testing.assert_close(task.model[0].running_mean, x.view(3, 32, 4).mean(1).mean(0))


def test_models_without_batchnorm_and_bad_counts():
    task = bn_task()
    task.model = nn.Linear(4, 3)
    assert batchnorm_layers(task.model) == [] and recompute_batchnorm(task, CPU, False, 32, 1) == 0
    with pytest.raises(ValueError, match=r"batches must be >= 1, got 0"):
        recompute_batchnorm(bn_task(), CPU, False, 32, 0)
    with pytest.raises(ValueError, match=r"precise_bn must be >= 0 .* got -1"):
        resolve("speech", None, {"precise_bn": -1})


def config(**keys):
    base = {"method": "erm", "device": "cpu", "progress": False, "optimizer": "sgd", "lr": 0.1, "epochs": 2,
            "schedule": "constant", "batch_size": 32, "val_size": 8}  # fmt: skip
    return resolve("image", None, {**base, **keys})


@pytest.mark.parametrize("precise_bn", [0, 3])
def test_the_engine_evaluates_with_clean_statistics(tmp_path, precise_bn):
    """Trained on shifted batches: without precise_bn the running mean is the shifted one, with it the clean one."""
    task = bn_task(shift=5.0)
    train(task, config(precise_bn=precise_bn, epochs=25), tmp_path)  # 75 steps: the running average has settled
    x = task.train_set.tensors[0]
    first, second = (x[index] for index in precise_batches(96, 64, 3))  # 64 and 32 rows: 2 x batch_size, the rest
    clean = (first.mean(0) + second.mean(0)) / 2  # two clean batches, averaged
    shifted = x.mean(0) * 3 + 5.0
    running = task.model[0].running_mean
    if precise_bn:
        torch.testing.assert_close(running, clean)
    else:
        assert (running - shifted).abs().max() < (running - clean).abs().max()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]["0.running_mean"]
    torch.testing.assert_close(saved, running)  # the checkpoint holds what was evaluated


def test_the_engine_draws_the_precise_batches_with_the_runs_seed(tmp_path):
    """Each seed of a --seeds run recomputes BatchNorm on its own seeded shuffle, not on seed 0's."""
    task = bn_task()
    train(task, config(precise_bn=1, epochs=1, seed=7), tmp_path)
    x = task.train_set.tensors[0]
    (rows,) = precise_batches(96, 64, 1, seed=7)  # one batch of 2 x batch_size rows
    torch.testing.assert_close(task.model[0].running_mean, x[rows].mean(0))
    (other,) = precise_batches(96, 64, 1, seed=0)
    assert (x[other].mean(0) - x[rows].mean(0)).abs().max() > 1e-2  # seed 0's batch would not meet it
