"""Recipes really train: a few steps per recipe on CPU, resume, compare, and the CLI's errors."""

import json
import math
import urllib.error
import urllib.request

import pytest
import torch
from multimix_recipes import engine
from multimix_recipes.runner import run

from multimix.cli import main

TINY = {"train_limit": 128, "test_limit": 64, "batch_size": 32, "progress": False, "device": "cpu"}


def check_outputs(out, epochs=1):
    for name in ("config.yaml", "metrics.json", "checkpoint.pt", "learning_curves.png", "reliability.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == epochs
    for entry in metrics["epochs"]:
        for key in ("train_loss", "test_accuracy", "test_loss", "test_ece", "train_samples_per_second"):
            assert math.isfinite(entry[key]), key
        assert 0 <= entry["test_accuracy"] <= 1 and 0 <= entry["test_ece"] <= 1
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == epochs - 1 and state["model"]
    return metrics


@pytest.mark.parametrize(("recipe", "method"), [("image", "mixup+cutmix"), ("speech", "wavemix"), ("speech", "specmix"),
                                                ("text", "hidden")])  # fmt: skip
def test_each_recipe_trains_a_few_steps(tmp_path, recipe, method, capsys):
    assert main(["run", recipe, "--quick", "--method", method, "--out", str(tmp_path), "--device", "cpu"]) == 0
    assert f"results in {tmp_path.resolve()}" in capsys.readouterr().out
    metrics = check_outputs(tmp_path)
    assert metrics["method"] == method and metrics["device"] == "cpu"


def test_resume_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    overrides = {**TINY, "epochs": 2, "method": "mixup"}
    run("image", overrides={**overrides, "out": str(tmp_path / "straight")})
    real_save = engine._save_atomically

    def stop_after_first_epoch(payload, path):
        real_save(payload, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_save_atomically", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run("image", overrides={**overrides, "out": str(tmp_path / "resumed")})
    monkeypatch.undo()
    run("image", overrides={**overrides, "out": str(tmp_path / "resumed")}, resume=True)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert straight["history"][-1]["test_loss"] == resumed["history"][-1]["test_loss"]
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_an_interrupted_run_keeps_its_last_complete_checkpoint(tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def crash_on_second_save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as handle:
                handle.write(b"half a checkpoint")
            raise KeyboardInterrupt
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(engine.torch, "save", crash_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        run("image", overrides={**TINY, "epochs": 2, "method": "erm", "out": str(tmp_path)})
    monkeypatch.undo()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 0


def test_compare_writes_a_side_by_side_table(tmp_path):
    run("image", overrides={**TINY, "epochs": 1, "out": str(tmp_path)}, compare=["erm", "mixup"])
    table = (tmp_path / "comparison.md").read_text()
    assert "| erm |" in table and "| mixup |" in table
    assert set(json.loads((tmp_path / "comparison.json").read_text())) == {"erm", "mixup"}
    for name in ("comparison_curves.png", "comparison_reliability.png"):
        assert (tmp_path / name).stat().st_size > 1000
    check_outputs(tmp_path / "erm")
    check_outputs(tmp_path / "mixup")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["run", "audio"], r"unknown recipe 'audio'; choose one of \['image', 'speech', 'text'\]"),
        (["run", "image", "--method", "specmix"], r"unknown method 'specmix' for recipe 'image'"),
        (["run", "image", "--alpha", "0"], r"alpha must be finite and > 0"),
        (["run", "image", "--data", "/no/such/folder"], r"--data '/no/such/folder' is neither a dataset name"),
        (["run", "image", "--compare", "mixup"], r"--compare needs at least two methods"),
        (["run", "speech", "--config", "/no/such.yaml"], r"--config /no/such.yaml does not exist"),
        (["run", "text", "--resume", "--quick", "--out", "/tmp/multimix-never-run"], r"--resume: no checkpoint at"),
    ],
)
def test_cli_errors_before_training(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert pytest.importorskip("re").search(match, err), err
    assert "epoch 1" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_an_error(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["run", "image", "--device", "cuda", "--out", str(tmp_path)])
    assert "--device cuda was asked for, but torch sees no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()


def refuse_network(*args, **kwargs):
    raise urllib.error.URLError("network is unreachable (test)")


def test_image_download_path_up_to_the_network_edge(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", refuse_network)
    from multimix_recipes.config import resolve
    from multimix_recipes.image import train as image

    config = resolve("image", None, {"data": "cifar10", "data_root": str(tmp_path)})
    with pytest.raises(ValueError, match=r"could not download cifar10 into .*offline, use the embedded data"):
        image.load_data(config)


def test_speech_download_path_up_to_the_network_edge(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", refuse_network)
    from multimix_recipes.config import resolve
    from multimix_recipes.speech import train as speech

    config = resolve("speech", None, {"data": "speech_commands", "data_root": str(tmp_path)})
    with pytest.raises(ValueError, match=r"could not download speech_commands into .*offline"):
        speech.load_data(config)


def test_text_download_path_up_to_the_network_edge(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from multimix_recipes.config import resolve
    from multimix_recipes.text import train as text

    config = resolve("text", None, {"data": "sst2", "data_root": str(tmp_path)})
    with pytest.raises(ValueError, match=r"could not load sst2 from the Hugging Face hub .*offline, use the embedded"):
        text.load_data(config)


def test_torchrun_two_processes_on_cpu(tmp_path):
    """DDP as torchrun starts it (gloo on CPU): two ranks, averaged gradients, rank 0 writes the results."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "multimix", "run", "image", "--quick", "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = check_outputs(tmp_path)
    assert metrics["world_size"] == 2 and result.stdout.count("results in") == 1
