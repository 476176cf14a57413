"""What ``multimix run`` does with an output folder that already holds runs: ``--resume`` of an interrupted
``--compare``/``--seeds``/``--sweep`` (finished runs kept, the interrupted one continued, the rest started), no run
shortened, no run replaced without ``--overwrite``, a ``--config`` file in the folder kept, repeated methods refused."""

import json

import pytest
import torch
import yaml

from multimix.cli import main
from multimix_recipes import checkpoint, engine
from multimix_recipes.config import resolve
from multimix_recipes.runner import run

TINY = {"train_limit": 160, "val_size": 32, "test_limit": 64, "batch_size": 32, "progress": False, "device": "cpu"}
CLI_TINY = ["--device", "cpu", "--set", "progress=false", "--set", "train_limit=160", "--set", "val_size=32",
            "--set", "test_limit=64", "--batch-size", "32"]  # fmt: skip


class Stopped(Exception):
    """An interruption (KeyboardInterrupt in real life; an Exception here, so old code fails one test, not all)."""


class FakeTraining:
    """``engine.train`` without training: records each call and writes a checkpoint per epoch, as the engine does;
    ``stop(config, epoch)`` true raises :class:`Stopped` before that epoch's checkpoint."""

    def __init__(self, stop=None) -> None:
        self.calls: list[tuple[str, int | None]] = []
        self.stop = stop or (lambda config, epoch: False)

    def __call__(self, task, config, out, *, state=None, announce=True):
        self.calls.append((config["method"], None if state is None else state["epoch"]))
        history = list(state["history"]) if state else []
        for epoch in range(len(history), config["epochs"]):
            if self.stop(config, epoch):
                raise Stopped
            history.append({"epoch": epoch + 1, "train_loss": 1.0, "test_accuracy": 0.5, "val_accuracy": 0.5,
                            "val_loss": 1.0})
            checkpoint.write({"epoch": epoch, "model": {"w": torch.ones(2)}, "optimizer": {}, "scheduler": {},
                              "rng": checkpoint.rng_state(), "history": history, "config": config},
                             out / "checkpoint.pt")  # fmt: skip
        final = {**history[-1], "test_loss": 0.7}
        return {"final": final, "epochs": history, "wall_seconds": 0.0, "_logits": torch.eye(2),
                "_labels": torch.arange(2), "_temperature": 1.0}  # fmt: skip


@pytest.fixture
def fake(monkeypatch):
    from multimix_recipes.image import train as image

    monkeypatch.setattr(image, "build", lambda config: None)

    def install(stop_at=None, stop=None):
        training = FakeTraining(stop or (lambda config, epoch: config["method"] == stop_at))
        monkeypatch.setattr(engine, "train", training)
        return training

    return install


def test_resume_of_an_interrupted_compare_keeps_finished_runs_and_starts_the_rest(tmp_path, fake):
    overrides = {**TINY, "epochs": 2, "out": str(tmp_path)}
    first = fake(stop_at="mixup")
    with pytest.raises(Stopped):
        run("image", overrides=overrides, compare=["erm", "mixup", "cutmix"])
    assert first.calls == [("erm", None), ("mixup", None)]
    assert not (tmp_path / "mixup" / "checkpoint.pt").exists()  # interrupted before its first checkpoint
    finished = (tmp_path / "erm" / "checkpoint.pt").read_bytes()
    second = fake()
    run("image", overrides=overrides, compare=["erm", "mixup", "cutmix"], resume=True)
    assert second.calls == [("erm", 1), ("mixup", None), ("cutmix", None)]  # erm resumed at its last epoch: no step
    assert (tmp_path / "erm" / "checkpoint.pt").read_bytes() == finished
    assert set(json.loads((tmp_path / "comparison.json").read_text())) == {"erm", "mixup", "cutmix"}


def test_resume_of_a_compare_stopped_before_any_checkpoint_starts_its_runs(tmp_path, fake):
    """A --parallel run stopped in its first epoch has run folders but no checkpoint: --resume (what the interrupt
    message says to run) starts them; where no run folder exists at all, --resume is refused (a mistyped --out)."""
    overrides = {**TINY, "epochs": 2, "out": str(tmp_path / "runs")}
    fake(stop_at="erm")
    with pytest.raises(Stopped):
        run("image", overrides=overrides, compare=["erm", "mixup"])
    assert not list((tmp_path / "runs").rglob("checkpoint.pt"))
    training = fake()
    run("image", overrides=overrides, compare=["erm", "mixup"], resume=True)
    assert training.calls == [("erm", None), ("mixup", None)]
    with pytest.raises(ValueError, match=r"--resume: no checkpoint at any of the 2 run folders; run without --resume"):
        run("image", overrides={**overrides, "out": str(tmp_path / "elsewhere")}, compare=["erm", "mixup"],
            resume=True)  # fmt: skip
    (tmp_path / "existing").mkdir()  # a folder no run began in (no configuration written) is no run to resume
    with pytest.raises(ValueError, match=r"--resume: no checkpoint at .*existing.checkpoint.pt; run without --resume"):
        run("image", overrides={**overrides, "out": str(tmp_path / "existing")}, resume=True)


def test_resume_into_seeds_beside_a_single_run_names_the_layout(tmp_path, fake):
    """A single run's --out resumed with --seeds: the seeds' folders go under it, so the message says that, not only
    that no checkpoint was found; nothing is written."""
    fake()
    run("image", overrides={**TINY, "epochs": 1, "method": "erm", "out": str(tmp_path)})
    before = sorted(p.name for p in tmp_path.iterdir())
    message = r"--resume: .* holds one run, and these 2 runs go to folders under it \(e\.g\. .*seed0\), none begun"
    with pytest.raises(ValueError, match=message + "; resume that run as it was started"):
        run("image", overrides={**TINY, "epochs": 1, "method": "erm", "out": str(tmp_path), "seeds": [0, 1]},
            resume=True)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_resume_of_an_interrupted_seeds_run_continues_the_interrupted_seed(tmp_path, fake):
    overrides = {**TINY, "epochs": 3, "out": str(tmp_path), "method": "mixup", "seeds": [0, 1, 2]}
    fake(stop=lambda config, epoch: config["seed"] == 1 and epoch == 1)  # stopped in seed 1's second epoch
    with pytest.raises(Stopped):
        run("image", overrides=overrides)
    with pytest.raises(ValueError, match=r"already holds a run .*seed0.checkpoint.pt and 1 more\); pass --resume"):
        run("image", overrides=overrides)
    training = fake()
    run("image", overrides={**overrides, "seeds": [0, 1, 2, 3]}, resume=True)  # a seed may be added, too
    assert training.calls == [("mixup", 2), ("mixup", 0), ("mixup", None), ("mixup", None)]
    for seed in (0, 1, 2, 3):
        assert checkpoint.read(tmp_path / f"seed{seed}" / "checkpoint.pt")["epoch"] == 2
    assert json.loads((tmp_path / "comparison.json").read_text())["mixup"]["test_accuracy"]["n"] == 4


def test_a_real_compare_interrupted_in_its_second_run_resumes(tmp_path, monkeypatch, capsys):
    overrides = {**TINY, "epochs": 1, "out": str(tmp_path)}
    real_write = checkpoint.write

    def stop_in_mixup(payload, path):
        if path.parent.name == "mixup":
            raise KeyboardInterrupt
        real_write(payload, path)

    monkeypatch.setattr(checkpoint, "write", stop_in_mixup)
    with pytest.raises(KeyboardInterrupt):
        run("image", overrides=overrides, compare=["erm", "mixup"])
    monkeypatch.undo()
    capsys.readouterr()
    erm = (tmp_path / "erm" / "checkpoint.pt").read_bytes()
    run("image", overrides=overrides, compare=["erm", "mixup"], resume=True)
    out = capsys.readouterr().out
    assert "(finished: 1 epochs, evaluated again)" in out and out.count("epoch 1: train loss") == 1  # mixup's
    assert (tmp_path / "erm" / "checkpoint.pt").read_bytes() == erm
    assert torch.load(tmp_path / "mixup" / "checkpoint.pt", weights_only=True)["epoch"] == 0
    assert set(json.loads((tmp_path / "comparison.json").read_text())) == {"erm", "mixup"}


def test_resume_refuses_to_shorten_a_run(tmp_path, fake, capsys):
    fake()
    run("image", overrides={**TINY, "epochs": 2, "method": "erm", "out": str(tmp_path)})
    saved = (tmp_path / "config.yaml").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "image", "--method", "erm", "--epochs", "1", "--resume", "--out", str(tmp_path), *CLI_TINY])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "checkpoint.pt already holds 2 epochs, more than epochs 1; a run cannot be shortened: resume with " \
           "--epochs 2 or more" in err  # fmt: skip
    assert (tmp_path / "config.yaml").read_text() == saved  # still says 2 epochs


def test_a_fresh_run_into_a_folder_with_a_checkpoint_needs_overwrite(tmp_path, fake, capsys):
    fake()
    run("image", overrides={**TINY, "epochs": 1, "method": "erm", "out": str(tmp_path)})
    before = (tmp_path / "checkpoint.pt").read_bytes()
    argv = ["run", "image", "--method", "mixup", "--epochs", "1", "--out", str(tmp_path), *CLI_TINY]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert f"--out {tmp_path} already holds a run ({tmp_path / 'checkpoint.pt'}); pass --resume to continue it, " \
           "--overwrite to replace it, or another --out" in err  # fmt: skip
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["method"] == "erm"
    with pytest.raises(SystemExit):
        main([*argv, "--overwrite", "--resume"])
    out, err = capsys.readouterr()
    assert "--resume continues the runs in --out and --overwrite replaces them; pass one" in err
    assert out == ""  # refused before the device line
    assert main([*argv, "--overwrite"]) == 0
    assert checkpoint.read(tmp_path / "checkpoint.pt")["config"]["method"] == "mixup"


def test_overwrite_removes_the_old_checkpoint_before_training(tmp_path, fake):
    fake()
    run("image", overrides={**TINY, "epochs": 1, "method": "erm", "out": str(tmp_path)})
    fake(stop_at="mixup")
    with pytest.raises(Stopped):
        run("image", overrides={**TINY, "epochs": 1, "method": "mixup", "out": str(tmp_path)}, overwrite=True)
    assert not (tmp_path / "checkpoint.pt").exists()  # no old run left for --resume to continue by mistake


def test_a_config_file_in_the_output_folder_is_kept(tmp_path, fake, capsys):
    fake()
    mine = tmp_path / "config.yaml"
    text = "# my experiment: erm for one epoch\nmethod: erm   # the baseline\nepochs: 1\n"
    mine.write_text(text)
    run("image", config_file=str(mine), overrides={**TINY, "out": str(tmp_path)})
    assert mine.read_text() == text
    resolved = yaml.safe_load((tmp_path / "config.resolved.yaml").read_text())
    assert resolved == resolve("image", str(mine), {**TINY, "out": str(tmp_path)})
    assert f"the resolved configuration is in {tmp_path / 'config.resolved.yaml'}" in capsys.readouterr().out
    run("image", config_file=str(mine), overrides={**TINY, "out": str(tmp_path), "epochs": 2}, resume=True)
    assert mine.read_text() == text
    assert yaml.safe_load((tmp_path / "config.resolved.yaml").read_text())["epochs"] == 2


@pytest.mark.parametrize("methods", ["erm,erm", "erm,mixup,erm", "mixup, mixup"])
def test_compare_refuses_repeated_methods(tmp_path, methods, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "image", "--compare", methods, "--out", str(tmp_path / "out"), *CLI_TINY])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    repeated = "mixup" if methods.startswith("mixup") else "erm"
    assert f"--compare lists {repeated} more than once" in err and "give each method once" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="--compare lists erm more than once"):
        run("image", overrides={**TINY, "out": str(tmp_path / "out")}, compare=["erm", "erm"])
