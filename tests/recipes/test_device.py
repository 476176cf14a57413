"""Device resolution and checkpoint RNG states, exercised on a CPU (no GPU needed)."""

import random

import pytest
import torch

from multimix_recipes.engine import pick_device, rng_state_on_cpu


@pytest.mark.parametrize(
    ("name", "available", "local_rank", "expected"),
    [
        ("cpu", True, None, torch.device("cpu")),
        ("cpu", False, "3", torch.device("cpu")),
        ("auto", False, None, torch.device("cpu")),
        ("auto", True, None, torch.device("cuda", 0)),
        ("cuda", True, None, torch.device("cuda", 0)),
        ("cuda", True, "1", torch.device("cuda", 1)),
        ("auto", True, "2", torch.device("cuda", 2)),
        ("cuda:3", True, "1", torch.device("cuda", 3)),  # an explicit index wins over LOCAL_RANK
    ],
)
def test_cuda_devices_always_carry_an_index(name, available, local_rank, expected):
    device = pick_device(name, cuda_available=available, local_rank=local_rank)
    assert device == expected
    assert device.type == "cpu" or device.index is not None  # what torch.cuda.set_device needs


def test_local_rank_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert pick_device("cuda", cuda_available=True) == torch.device("cuda", 5)
    monkeypatch.delenv("LOCAL_RANK")
    assert pick_device("cuda", cuda_available=True) == torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("name", "available", "local_rank", "match"),
    [
        ("gpu", True, None, r"device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ("cuda:x", True, None, r"device must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
        ("cuda", False, None, r"--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu"),
        ("cuda:1", False, None, r"--device cuda:1 was asked for"),
        ("cuda", True, "-1", r"LOCAL_RANK must be a non-negative integer .*got '-1'"),
    ],
)
def test_device_errors(name, available, local_rank, match):
    with pytest.raises(ValueError, match=match):
        pick_device(name, cuda_available=available, local_rank=local_rank)


def test_rng_states_are_restored_as_cpu_byte_tensors():
    saved = torch.get_rng_state()
    expected = torch.rand(4)
    # what map_location="cuda" or a dtype-changing round trip hands back: not a CPU ByteTensor
    state = {"torch": saved.to(torch.int64), "python": random.getstate(), "cuda": [saved.to(torch.int32)]}
    fixed = rng_state_on_cpu(state)
    for tensor in (fixed["torch"], *fixed["cuda"]):
        assert tensor.device.type == "cpu" and tensor.dtype == torch.uint8
        assert torch.equal(tensor, saved)
    torch.set_rng_state(fixed["torch"])  # accepted by torch, and restores the stream
    assert torch.equal(torch.rand(4), expected)
    assert state["torch"].dtype == torch.int64  # the input is left alone
