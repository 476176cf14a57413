"""Checkpoints are read with ``torch.load(weights_only=True)``: a crafted file in a results folder runs no code, and
everything the recipes write (model, optimizer, schedule, mixer and SpecAugment states, RNG states, history,
configuration) loads that way."""

import random

import pytest
import torch

import multimix
from multimix.audio.specaugment import SpecAugment
from multimix.cli import main
from multimix_recipes import checkpoint, optim
from multimix_recipes.config import resolve


class RunsCode:
    """What an attacker would pickle: unpickling it calls ``open(marker, "w")``, creating the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted(path, marker):
    payload = {key: None for key in checkpoint.KEYS}
    payload["epoch"] = RunsCode(marker)
    torch.save(payload, path)


def test_resume_from_a_crafted_checkpoint_runs_no_code(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    crafted(tmp_path / "checkpoint.pt", marker)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "image", "--resume", "--quick", "--device", "cpu", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "checkpoint.pt holds objects other than tensors and plain data, which could run code when loaded, so it " \
           "was not loaded" in err  # fmt: skip
    assert not marker.exists()


def test_read_refuses_a_crafted_file_and_names_it(tmp_path):
    crafted(tmp_path / "evil.pt", tmp_path / "code-ran")
    with pytest.raises(ValueError, match=r"--resume: .*evil.pt holds objects other than tensors and plain data"):
        checkpoint.read(tmp_path / "evil.pt")
    assert not (tmp_path / "code-ran").exists()


def test_a_checkpoint_as_the_engine_writes_it_loads_with_weights_only(tmp_path):
    """Every kind of state the engine saves, each round-tripped exactly through ``read``."""
    config = resolve("speech", None, {"spec_augment": True, "schedule": "onecycle"})
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = optim.build_optimizer(list(model.parameters()), config)
    scheduler = optim.build_scheduler(optimizer, 20, 4, config)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    optimizer.step()
    scheduler.step()
    mixer = multimix.Mixer(multimix.audio.SpecMixup(alpha=0.2), 10, seed=3)
    augment = SpecAugment(2, 10, 2, 6, seed=1)
    random.random()
    payload = {"epoch": 3, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "scheduler": scheduler.state_dict(), "mixers": [mixer.state_dict()],
               "stateful": [{"spec_augment": augment.state_dict()}], "rng": checkpoint.rng_state(),
               "history": [{"epoch": 1, "test_accuracy": 0.5, "lr": 1e-3}], "config": config}  # fmt: skip
    checkpoint.write(payload, tmp_path / "checkpoint.pt")
    state = checkpoint.read(tmp_path / "checkpoint.pt")
    assert state["config"] == config and state["history"] == payload["history"] and state["epoch"] == 3
    assert state["rng"]["python"] == random.getstate()
    assert torch.equal(state["rng"]["torch"], torch.get_rng_state())
    assert torch.equal(state["mixers"][0]["generator"], mixer.generator.get_state())
    assert torch.equal(state["stateful"][0]["spec_augment"]["generator"], augment.generator.get_state())
    assert state["scheduler"]["last_epoch"] == 1
    for key, value in model.state_dict().items():
        assert torch.equal(state["model"][key], value), key
    mixer.load_state_dict(state["mixers"][0])  # and each part goes back where it came from
    augment.load_state_dict(state["stateful"][0]["spec_augment"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    checkpoint.set_rng_state(state["rng"])
