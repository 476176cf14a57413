"""Recipes really train: a few steps per recipe on CPU, resume, compare, and the CLI's errors."""

import json
import math
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import yaml

from multimix.cli import main
from multimix_recipes import checkpoint
from multimix_recipes.runner import run

TINY = {"train_limit": 160, "val_size": 32, "test_limit": 64, "batch_size": 32, "progress": False, "device": "cpu"}


def check_outputs(out, epochs=1):
    for name in ("config.yaml", "metrics.json", "checkpoint.pt", "learning_curves.png", "reliability.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == epochs
    for entry in metrics["epochs"]:
        for key in ("train_loss", "test_accuracy", "test_loss", "test_ece", "train_samples_per_second",
                    "temperature", "test_loss_calibrated", "test_ece_calibrated", "test_brier"):  # fmt: skip
            assert math.isfinite(entry[key]), key
        assert 0 <= entry["test_accuracy"] <= 1 and 0 <= entry["test_ece"] <= 1 and entry["temperature"] > 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == epochs - 1 and state["model"]
    return metrics


@pytest.mark.parametrize(("recipe", "method", "extra"), [
    ("image", "mixup+cutmix", []), ("image", "regmixup", []), ("image", "fmix", []), ("image", "manifold", []),
    ("image", "resizemix", []), ("image", "saliencymix", []), ("speech", "wavemix", ["spec_augment=true"]),
    ("speech", "specmix", []), ("speech", "regmixup", ["split=speakers"]), ("speech", "erm", ["spec_augment=true"]),
    ("text", "hidden", []), pytest.param("text", "regmixup", [], marks=pytest.mark.slow),  # two passes: the longest
])  # fmt: skip
def test_each_recipe_trains_a_few_steps(tmp_path, recipe, method, extra, capsys):
    small = ["--set", "train_limit=160", "--set", "val_size=32", "--set", "test_limit=64", "--batch-size", "32"]
    small += [arg for key in extra for arg in ("--set", key)]
    assert main(["run", recipe, "--quick", "--method", method, "--out", str(tmp_path), "--device", "cpu", *small]) == 0
    assert f"results in {tmp_path.resolve()}" in capsys.readouterr().out
    metrics = check_outputs(tmp_path)
    assert metrics["method"] == method and metrics["device"] == "cpu"
    if recipe == "image":  # the trained network's weights, for every method (manifold's wrapper adds no prefix)
        from multimix_recipes import models

        config = yaml.safe_load((tmp_path / "config.yaml").read_text())
        network = models.build(config["model"], 3, 10, torch.device("cpu"))
        network.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"])
    if recipe == "text":  # a Hugging Face directory beside metrics.json, with the trained weights
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
        trained = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
        name = next(k for k in trained if k.endswith("classifier.weight"))
        assert torch.equal(model.classifier.weight, trained[name]) and model.config.num_labels == 2
        assert AutoTokenizer.from_pretrained(tmp_path / "model")("a fine film")["input_ids"][0] == 101


@pytest.mark.parametrize(("recipe", "keys"), [
    ("image", {}), ("image", {"method": "manifold"}), ("speech", {"spec_augment": True}),
])  # fmt: skip
def test_resume_gives_the_uninterrupted_result(tmp_path, monkeypatch, recipe, keys):
    """Model, mixer and augmentation state (SpecAugment's mask generator) all continue where they stopped."""
    overrides = {**TINY, "epochs": 2, "method": "mixup", **keys}
    run(recipe, overrides={**overrides, "out": str(tmp_path / "straight")})
    real_write = checkpoint.write

    def stop_after_first_epoch(payload, path):
        real_write(payload, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "write", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(recipe, overrides={**overrides, "out": str(tmp_path / "resumed")})
    monkeypatch.undo()
    run(recipe, overrides={**overrides, "out": str(tmp_path / "resumed")}, resume=True)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
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

    monkeypatch.setattr(checkpoint.torch, "save", crash_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        run("image", overrides={**TINY, "epochs": 2, "method": "erm", "out": str(tmp_path)})
    monkeypatch.undo()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.glob("checkpoint*")) == ["checkpoint.pt"]  # the partial file is gone


def test_compare_writes_a_side_by_side_table(tmp_path):
    run("image", overrides={**TINY, "epochs": 1, "out": str(tmp_path)}, compare=["erm", "mixup"])
    table = (tmp_path / "comparison.md").read_text()
    assert "| erm |" in table and "| mixup |" in table
    assert set(json.loads((tmp_path / "comparison.json").read_text())) == {"erm", "mixup"}
    assert "| method (one seed) | test accuracy | NLL | NLL after T | ECE | ECE after T | T |" in table
    for name in ("comparison_curves.png", "comparison_reliability.png", "comparison_spread.png"):
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


LAUNCHERS = {
    "torchrun": ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    # accelerate's multi-process launcher (torchrun underneath); the recipe's --device cpu makes it gloo
    "accelerate": ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_on_cpu(tmp_path, launcher):
    """torch DDP as torchrun or accelerate launch starts it (gloo on CPU): two ranks, one schedule each, rank 0
    writes the results."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", *LAUNCHERS[launcher],
               "-m", "multimix", "run", "image", "--quick", "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = check_outputs(tmp_path)
    assert metrics["world_size"] == 2 and result.stdout.count("results in") == 1
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    # 512 images / 2 ranks / batch 128: each rank takes 2 steps, and its schedule has 2 steps (ends at ~0 lr)
    assert state["scheduler"]["last_epoch"] == 2 and metrics["epochs"][0]["lr"] < 1e-6
    first, second = state["mixers"]  # every rank's plan generator
    assert not torch.equal(first["generator"], second["generator"])


def test_set_print_config_and_help(capsys):
    argv = ["run", "image", "--print-config", "--set", "lr=1e-3", "--set", "milestones=[3, 5]", "--set",
            "train_limit=null", "--quick", "--epochs", "3"]  # fmt: skip
    assert main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["lr"] == 0.001 and isinstance(printed["lr"], float) and printed["milestones"] == [3, 5]
    assert printed["epochs"] == 3 and printed["train_limit"] is None and printed["test_limit"] == 256  # quick fills
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "image", "--set", "learning_rate=0.1", "--print-config"])
    assert exit_info.value.code == 2
    assert re.search(r"unknown key\(s\) \['learning_rate'\]; valid keys are \[.*'lr'", capsys.readouterr().err)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "image", "--set", "lr", "--print-config"])
    assert "--set expects KEY=VALUE (e.g. --set lr=0.1), got 'lr'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "speech", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "keys of speech" in out and "  n_mels (int, default 40): mel bins of the log-mel spectrogram" in out
    assert "  sample_rate (int, default 8000): Hz every clip is resampled to" in out


def test_a_saved_config_reruns_as_config(tmp_path, capsys):
    assert main(["run", "image", "--print-config", "--set", "lr=3e-3", "--quick"]) == 0
    saved = tmp_path / "config.yaml"
    saved.write_text(capsys.readouterr().out)
    assert main(["run", "image", "--print-config", "--config", str(saved)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == yaml.safe_load(saved.read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(SystemExit):
        main(["run", "image", "--config", str(bad)])
    assert re.search(r"--config .*bad.yaml is not valid YAML", capsys.readouterr().err)


def test_resume_extends_a_finished_run_and_refuses_another_config(tmp_path, capsys, monkeypatch):
    base = {**TINY, "epochs": 1, "method": "erm", "out": str(tmp_path), "schedule": "cosine"}
    run("image", overrides=base)
    first = json.loads((tmp_path / "metrics.json").read_text())["wall_seconds"]
    run("image", overrides={**base, "epochs": 2}, resume=True)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert state["scheduler"]["last_epoch"] == 8  # 4 steps per epoch, counted on
    # the run's wall time counts the epochs before the resume (it counted the last process's alone)
    second = json.loads((tmp_path / "metrics.json").read_text())["wall_seconds"]
    assert second >= first + state["history"][1]["train_seconds"]
    run("image", overrides={**base, "epochs": 2}, resume=True)  # finished: evaluated again, its time unchanged
    assert json.loads((tmp_path / "metrics.json").read_text())["wall_seconds"] == state["wall_seconds"]
    from multimix_recipes.image import train as image

    built = []
    monkeypatch.setattr(image, "build", lambda config: built.append(config))
    with pytest.raises(ValueError, match=r"--resume: .*checkpoint.pt was trained with another configuration "
                                         r"\(alpha: 0.2 -> 0.5; method: 'erm' -> 'mixup'\)"):  # fmt: skip
        run("image", overrides={**base, "method": "mixup", "alpha": 0.5}, resume=True)
    assert built == []  # refused before any model was built


def test_cli_refuses_bad_runs_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint.pt").write_bytes(b"\x00garbage")
    cases = [
        (["--out", str(tmp_path / "file")], r"--out .*file is a file, not a folder"),
        (["--resume", "--out", str(tmp_path / "ckpt")], r"--resume: .*ckpt/checkpoint.pt is unreadable or corrupt"),
        (["--set", "train_limit=16", "--set", "val_size=4", "--batch-size", "32", "--out", str(tmp_path / "small")],
         r"train_limit 16 less val_size 4 leaves 12 training samples, fewer than one optimizer step needs \(32"),
        (["--set", "train_limit=16", "--set", "val_size=16"],
         r"val_size must be >= 1 and below the 16 training samples \(train_limit\), got 16; lower val_size or raise "
         r"train_limit"),
        (["--set", "train_limit=0"], r"train_limit must be >= 1 or null"),
        (["--seed", "-3"], r"seed must be in 0..2\*\*63-1"),
        (["--set", "methods=[erm, bogus]", "--method", "bogus"], r"methods \['bogus'\] have no implementation"),
    ]  # fmt: skip
    for extra, match in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["run", "image", "--quick", "--device", "cpu", "--set", "progress=false",
                  "--out", str(tmp_path / "default"), *extra])  # a case's own --out comes last and wins  # fmt: skip
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and re.search(match, err), (extra, err)
    assert not (tmp_path / "small").exists()  # refused before anything was written


def test_corrupt_image_in_data_is_named(tmp_path):
    from PIL import Image

    for label in ("cats", "dogs"):
        (tmp_path / "train" / label).mkdir(parents=True)
        (tmp_path / "val" / label).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (20, 24), (k * 40, 9, 0)).save(tmp_path / "train" / label / f"{k}.png")
        Image.new("RGB", (20, 24)).save(tmp_path / "val" / label / "0.png")
    from multimix_recipes.config import resolve
    from multimix_recipes.image import train as image

    config = resolve("image", None, {"data": str(tmp_path), "image_size": 16, "val_size": 1})
    train, val, test, classes = image.load_data(config)
    assert classes == ["cats", "dogs"] and len(train) == 5 and len(val) == 1 and len(test) == 2
    assert train.tensors[0].shape == (5, 3, 16, 16)
    (tmp_path / "train" / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match=r"--data: cannot decode the image .*dogs/broken.jpg"):
        image.load_data(resolve("image", None, {"data": str(tmp_path)}))


def test_data_that_cannot_load_leaves_no_config_of_a_run_that_began(tmp_path, capsys):
    """A --data folder of one class is refused once loaded; the run's config.yaml, which marks a run that began
    (--resume starts it), is written only after its data and model are built."""
    from PIL import Image

    from multimix.cli import main

    (tmp_path / "data" / "cats").mkdir(parents=True)
    for k in range(4):
        Image.new("RGB", (8, 8), (k * 40, 9, 0)).save(tmp_path / "data" / "cats" / f"{k}.png")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "image", "--data", str(tmp_path / "data"), "--set", "val_size=1", "--set", "batch_size=2",
              "--set", "progress=false", "--out", str(out)])  # fmt: skip
    assert exit_info.value.code == 2 and "1 class" in capsys.readouterr().err
    assert not (out / "config.yaml").exists()


def test_the_device_line_comes_first_and_the_comparison_figure_names_its_seed(tmp_path, monkeypatch, capsys):
    from multimix_recipes import engine, plots
    from multimix_recipes.image import train as image

    def fake_train(task, config, out, *, state=None, announce=True):
        print("training", config["method"])
        final = {"test_accuracy": 0.5, "test_loss": 0.7}
        return {"final": final, "epochs": [final], "wall_seconds": 0.0, "_logits": torch.eye(2),
                "_labels": torch.arange(2), "_temperature": 1.0}  # fmt: skip

    seeds = []
    monkeypatch.setattr(image, "build", lambda config: None)
    monkeypatch.setattr(engine, "train", fake_train)
    monkeypatch.setattr(plots, "reliability", lambda results, path, *, seed=None: seeds.append((path.name, seed)))
    run("image", overrides={**TINY, "out": str(tmp_path), "seeds": [7, 3]}, compare=["erm", "mixup"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "device cpu, world size 1, precision fp32"
    assert lines[1].startswith("== image: erm (alpha 0.2, seed 7) -> ") and lines[2] == "training erm"
    assert seeds == [("comparison_reliability.png", 7)]  # each method's first run is on the first seed
    # a seed folder's config.yaml reruns that run alone (docs/recipes.md: "it runs again with --config")
    from multimix_recipes.config import resolve

    saved = tmp_path / "mixup" / "seed3" / "config.yaml"
    again = resolve("image", str(saved), {})
    assert again["seed"] == 3 and again["seeds"] == [] and again["method"] == "mixup"
    assert Path(again["out"]) == saved.parent  # not the comparison's folder, which a rerun would fill
