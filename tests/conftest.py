"""Shared helpers: fixed plans, so tests can assert exact numbers."""

from __future__ import annotations

import os

import pytest
import torch

from multimix.plan import MixPlan

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every ``gpu``-marked test where CUDA is not available: the one place that decides it."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def fixed_plan(index, lam, *, per_sample: bool = True) -> MixPlan:
    """A plan with the given partners and lam (scalar lam is broadcast)."""
    index = torch.as_tensor(index, dtype=torch.long)
    lam = torch.as_tensor(lam, dtype=torch.float64).expand(index.shape[0]).clone()
    return MixPlan(index=index, lam=lam, per_sample=per_sample)


def with_plan(model, plan: MixPlan):
    """Make a wrapped model's mixer draw ``plan`` at every step (its hooks and targets follow it)."""
    model.mixer.draw = lambda batch_size: plan
    return model


def flip_index(batch_size: int) -> torch.Tensor:
    """timm's pairing: sample i is mixed with B - 1 - i."""
    return torch.arange(batch_size - 1, -1, -1)


def roll_index(batch_size: int) -> torch.Tensor:
    """torchvision's pairing (``roll(1, 0)``): sample i is mixed with i - 1."""
    return (torch.arange(batch_size) - 1) % batch_size


def looped(adapter):
    """Force the per-sample (in-place schedule) path whatever the sample size."""
    adapter.loop_min_numel = 0
    return adapter


def vectorised(adapter):
    """Force the vectorised (accelerator) path."""
    adapter.loop_min_numel = 1 << 40
    return adapter


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(6, 3, 10, 12, generator=torch.Generator().manual_seed(1))
