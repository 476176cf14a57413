"""Every numeric key's range is checked when the configuration is resolved; keys that do nothing say so."""

import re

import pytest
import yaml

from multimix_recipes import config as configuration
from multimix_recipes.config import parse_assignment, resolve
from multimix_recipes.validation import max_mels, suggest


@pytest.mark.parametrize(
    ("recipe", "overrides", "match"),
    [
        ("image", {"gamma": -1}, r"gamma must be finite and in \(0, 1\] .*got -1.0; set gamma, e.g. --set gamma=0.1"),
        ("image", {"gamma": "nan"}, r"gamma must be finite and in \(0, 1\] .*got nan"),
        ("image", {"gamma": 0}, r"gamma must be finite and in \(0, 1\]"),
        ("image", {"lr": "inf"}, r"lr must be finite and > 0, got inf"),
        ("image", {"weight_decay": -0.1}, r"weight_decay must be finite and >= 0, got -0.1"),
        ("image", {"momentum": 1.0}, r"momentum must be finite and in \[0, 1\) .*got 1.0"),
        ("image", {"momentum": -0.5}, r"momentum must be finite and in \[0, 1\)"),
        ("image", {"grad_clip": -1}, r"grad_clip must be finite and >= 0 \(the largest gradient norm; 0 = off\)"),
        ("image", {"warmup_epochs": "nan"}, r"warmup_epochs must be finite and >= 0, got nan"),
        ("image", {"label_smoothing": 1.0}, r"label_smoothing must be finite and in \[0, 1\)"),
        ("image", {"label_smoothing": -0.1}, r"label_smoothing must be finite and in \[0, 1\)"),
        (
            "image",
            {"image_size": 0},
            r"image_size must be in 8..1024 .*got 0; set image_size, e.g. --set image_size=32",
        ),
        ("image", {"image_size": 4096}, r"image_size must be in 8..1024"),
        ("image", {"batch_size": 0}, r"batch_size must be >= 1, got 0"),
        ("image", {"milestones": [0, 3]}, r"milestones must be increasing epochs >= 1, got \[0, 3\]"),
        ("image", {"model": "resnet50"}, r"model must be one of \['auto', 'small_cnn', 'preact_resnet18'\]"),
        ("image", {"optimizer": "sgd", "nesterov": True, "momentum": 0.0}, r"nesterov: true needs momentum > 0"),
        ("speech", {"n_mels": 0}, r"n_mels must be >= 1 \(mel bands of the front end\), got 0; set n_mels"),
        ("speech", {"n_mels": 200}, r"n_mels must be in 1..107 at sample_rate 8000 .*got 200"),
        ("speech", {"clip_seconds": 0}, r"clip_seconds must be finite and > 0 .*got 0.0"),
        ("speech", {"clip_seconds": -1}, r"clip_seconds must be finite and > 0 .*got -1.0"),
        ("speech", {"clip_seconds": 0.01}, r"clip_seconds must be >= 0.04 \(one 40 ms STFT window of 320 samples"),
        ("speech", {"sample_rate": 50}, r"sample_rate must be in 1000..384000 \(in Hz.*got 50; set sample_rate"),
        ("speech", {"sample_rate": 1000}, r"n_mels must be in 1..21 at sample_rate 1000 .*--set n_mels=21"),
        ("speech", {"held_out_speakers": 0}, r"held_out_speakers must be in 1..5 \(there are 6 speakers"),
        ("speech", {"domain": "db"}, r"domain must be one of \['power', 'log'\], got 'db'"),
        ("speech", {"spec_augment_masks": [2, 10, 2]}, r"spec_augment_masks must be \[time masks, .*got \[2, 10, 2\]"),
        ("speech", {"spec_augment_masks": [2, -1, 2, 6]}, r"spec_augment_masks must be .* each >= 0"),
        ("text", {"layers": []}, r"layers must be a non-empty list of encoder layers >= 0, got \[\]"),
        ("text", {"layers": [3, -1]}, r"layers must be a non-empty list"),
        ("text", {"max_length": 1}, r"max_length must be >= 2 .*got 1"),
    ],
)
def test_out_of_range_values_are_refused_at_resolve_time(recipe, overrides, match):
    with pytest.raises(ValueError, match=match):
        resolve(recipe, None, overrides)


def test_a_config_file_is_checked_as_the_command_line_is(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("schedule: step\nmilestones: [2]\ngamma: -1\n")
    with pytest.raises(ValueError, match=r"gamma must be finite and in \(0, 1\]"):
        resolve("image", path, {})


def test_the_defaults_and_the_paper_config_pass():
    for recipe in ("image", "speech", "text"):
        resolve(recipe, None, {})
    resolve("image", "cifar10-paper", {})
    assert max_mels(8000) == 107 and max_mels(16000) == 142  # the largest n_mels with no empty mel filter


@pytest.mark.parametrize("text", ["seed=9007199254740993", "seed=18446744073709551617"])
def test_integers_never_pass_through_a_float(text):
    key, value = parse_assignment(text)
    exact = int(text.split("=")[1])
    if exact > 2**63 - 1:
        with pytest.raises(ValueError, match=rf"seed must be in 0..2\*\*63-1 .*got {exact}"):
            resolve("image", None, {key: value})
        return
    assert resolve("image", None, {key: value})["seed"] == exact == 2**53 + 1
    assert configuration.coerce("seed", "9007199254740993", 0, "x") == 2**53 + 1
    assert configuration.coerce("train_limit", "9007199254740993", None, "x") == 2**53 + 1
    assert configuration.coerce("epochs", "3.0", 1, "x") == 3  # an integral float still reads as an int


def test_seed_in_a_yaml_file_stays_exact(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 9007199254740993\nseeds: [9007199254740993, 1]\n")
    config = resolve("image", path, {})
    assert config["seed"] == 2**53 + 1 and config["seeds"] == [2**53 + 1, 1]
    saved = tmp_path / "config.yaml"
    configuration.save(config, saved)
    assert yaml.safe_load(saved.read_text())["seed"] == 2**53 + 1


@pytest.mark.parametrize(
    ("key", "meant"),
    [("epoch", "epochs"), ("learning_rate", "lr"), ("weight_decy", "weight_decay"), ("nmels", "n_mels"),
     ("xyzzy", None)],
)  # fmt: skip
def test_suggest_the_nearest_key(key, meant):
    assert suggest(key, resolve("speech", None, {})) == meant


def test_an_unknown_key_says_did_you_mean():
    with pytest.raises(
        ValueError, match=r"unknown key\(s\) \['epoch'\]; valid keys are \[.*\]; did you mean 'epochs'\?$"
    ):
        resolve("image", None, {"epoch": 3})
    with pytest.raises(ValueError, match=r"did you mean 'epochs' for 'epoch', 'lr' for 'learning_rate'\?$"):
        resolve("image", None, {"epoch": 3, "learning_rate": 0.1, "xyzzy": 1})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['xyzzy'\]; valid keys are \[[^\]]*\]$"):
        resolve("image", None, {"xyzzy": 1})


@pytest.fixture
def warnings_seen(monkeypatch, capsys):
    monkeypatch.setattr(configuration, "_WARNED", set())
    capsys.readouterr()
    return lambda: [line for line in capsys.readouterr().err.splitlines() if line.startswith("multimix: warning:")]


@pytest.mark.parametrize(
    ("recipe", "overrides", "warning"),
    [
        ("image", {"milestones": [3]}, "milestones has no effect: only schedule step uses it, and schedule is "
                                       "'onecycle'"),
        ("image", {"gamma": 0.5, "schedule": "cosine"}, "gamma has no effect: only schedule step uses it"),
        ("image", {"schedule": "step"}, "schedule step with no milestones keeps the lr constant"),
        ("image", {"schedule": "step", "milestones": [3, 6, 9]}, "milestones [6, 9] have no effect: the run ends "
                                                                 "after epoch 6"),
        ("image", {"momentum": 0.5}, "momentum has no effect: only optimizer sgd uses it, and optimizer is 'adamw'"),
        ("image", {"nesterov": True}, "nesterov has no effect: only optimizer sgd uses it"),
        ("image", {"warmup_epochs": 1.0}, "warmup_epochs has no effect: schedule onecycle has its own warm-up"),
        ("image", {"image_size": 64, "data": "cifar10"}, "image_size has no effect with --data cifar10"),
        ("speech", {"spec_augment_masks": [1, 5, 1, 5]}, "spec_augment_masks has no effect: spec_augment is false"),
        ("speech", {"held_out_speakers": 3}, "held_out_speakers has no effect: only split speakers uses it"),
    ],
)  # fmt: skip
def test_keys_without_effect_warn_once(warnings_seen, recipe, overrides, warning):
    resolve(recipe, None, overrides)
    resolve(recipe, None, overrides)  # a run resolves its configuration several times: one line
    lines = warnings_seen()
    assert len(lines) == 1 and warning in lines[0], lines


def test_no_warning_for_defaults_settings_that_apply_or_a_saved_config(warnings_seen, tmp_path):
    resolve("image", None, {})
    resolve("image", None, {"schedule": "step", "milestones": [2, 4], "gamma": 0.2})
    resolve("image", None, {"optimizer": "sgd", "momentum": 0.5, "nesterov": True})
    resolve("image", "cifar10-paper", {})
    saved = tmp_path / "config.yaml"
    configuration.save(resolve("image", None, {}), saved)  # every key written out, momentum beside adamw
    resolve("image", saved, {})
    assert warnings_seen() == []


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["run", "speech", "--set", "n_mels=0"], r"multimix: error: n_mels must be >= 1"),
        (["run", "speech", "--set", "clip_seconds=-1"], r"multimix: error: clip_seconds must be finite and > 0"),
        (["run", "speech", "--set", "sample_rate=50"], r"multimix: error: sample_rate must be in 1000..384000"),
        (["run", "image", "--set", "gamma=-1"], r"multimix: error: gamma must be finite and in \(0, 1\]"),
        (["run", "image", "--set", "epoch=3"], r"multimix: error: command line: unknown key.*did you mean 'epochs'\?"),
        (["run", "image", "--set", "compile=sometimes"], r"multimix: error: compile must be one of \['auto', 'true', "
                                                        r"'false'\], got 'sometimes'; e.g. --set compile=true"),
        (["run", "text", "--set", "compile_backend=inductr"], r"multimix: error: compile_backend must be one of "
                                                              r"\[.*'inductor'.*\], got 'inductr'"),
        (["run", "image", "--data", "/no/such/folder"],
         r"multimix: error: --data '/no/such/folder' is neither a dataset name \(\['embedded', 'cifar10', .*\]\) "
         r"nor an existing folder"),
        (["run", "text", "--data", "/no/such.csv"], r"nor an existing CSV"),
        # sizes of the embedded sets and the speakers split, known from the configuration alone
        (["run", "image", "--set", "val_size=100000"],
         r"multimix: error: val_size must be >= 1 and below the 8000 training samples \(train_limit\), got 100000"),
        (["run", "image", "--set", "batch_size=100000"], r"multimix: error: train_limit 8000 less val_size 1000 "
                                                         r"leaves 7000 training samples, fewer than one optimizer "
                                                         r"step needs \(100000 = batch_size 100000 x accumulate 1\)"),
        (["run", "text", "--set", "train_limit=200", "--set", "val_size=150", "--set", "accumulate=2"],
         r"leaves 50 training samples, fewer than one optimizer step needs \(64 = batch_size 32 x accumulate 2\)"),
        (["run", "speech", "--data", "{tmp}", "--set", "split=speakers"],
         r"multimix: error: split: speakers needs the embedded FSDD .* use split: takes"),
    ],
)
def test_the_cli_refuses_before_anything_is_written(tmp_path, capsys, argv, match):
    from multimix.cli import main

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([*(str(tmp_path) if a == "{tmp}" else a for a in argv), "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and re.search(match, err) and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("value", ["True", "FALSE", "Auto", True, False])
def test_compile_takes_auto_true_false_in_any_case(value):
    assert str(resolve("image", None, {"compile": value})["compile"]).lower() == str(value).lower()


def test_compile_keys_are_refused_at_resolve_time_in_every_recipe(tmp_path):
    for recipe in ("image", "speech", "text"):
        with pytest.raises(ValueError, match=r"compile must be one of \['auto', 'true', 'false'\], got 'on'"):
            resolve(recipe, None, {"compile": "on"})
        with pytest.raises(ValueError, match=r"compile_backend must be one of .*got 'cuda'; e.g. --set "
                                             r"compile_backend=inductor"):  # fmt: skip
            resolve(recipe, None, {"compile_backend": "cuda"})
    path = tmp_path / "run.yaml"
    path.write_text("compile: sometimes\n")
    with pytest.raises(ValueError, match=r"compile must be one of .*got 'sometimes'"):
        resolve("speech", path)
    assert resolve("image", None, {"compile_backend": "cudagraphs"})["compile_backend"] == "cudagraphs"  # torch's list


def test_the_cli_prints_a_warning_line_and_goes_on(warnings_seen, capsys):
    from multimix.cli import main

    assert main(["run", "image", "--set", "milestones=[3]", "--print-config"]) == 0
    assert warnings_seen() == ["multimix: warning: milestones has no effect: only schedule step uses it, and "
                               "schedule is 'onecycle'"]  # fmt: skip
