import pytest
import yaml

from multimix_recipes import RECIPES, describe, load
from multimix_recipes.config import load_defaults, resolve


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_defaults_resolve_and_name_their_methods(name):
    config = resolve(name, None, {})
    assert config["recipe"] == name and config["method"] in config["methods"]
    assert set(load_defaults(name)) - {"on_gpu"} <= set(config)


def test_describe_lists_one_line_per_recipe():
    lines = describe()
    assert [line.split()[0] for line in lines] == ["image", "speech", "text"]
    assert "methods erm, mixup, cutmix, mixup+cutmix, regmixup, resizemix, fmix, saliencymix, manifold, " \
           "mixup-dominant (default mixup)" in lines[0]


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"epochs": 3, "alpha": 0.5, "train_limit": None}))
    config = resolve("image", path, {"alpha": 0.2})
    assert config["epochs"] == 3 and config["alpha"] == 0.2 and config["train_limit"] is None


@pytest.mark.parametrize(
    ("file_content", "overrides", "match"),
    [
        ({"epoch": 3}, {}, r"--config .*unknown key\(s\) \['epoch'\]; valid keys are \[.*'epochs'"),
        ({}, {"learning_rate": 0.1}, r"command line: unknown key\(s\) \['learning_rate'\]"),
        ({"epochs": "ten"}, {}, r"epochs must be an integer like 6, got 'ten'"),
        ({"epochs": 2.5}, {}, r"epochs must be an integer like 6, got 2.5"),
        ({"lr": "fast"}, {}, r"lr must be a number like 0.004, got 'fast'"),
        ({"epochs": None}, {}, r"epochs cannot be null"),
        ({"methods": ["erm", "mixup", "bogus"]}, {}, r"methods \['bogus'\] have no implementation in recipe 'image'"),
        ({}, {"train_limit": 0}, r"train_limit must be >= 1 or null \(all\), got 0"),
        ({}, {"test_limit": -5}, r"test_limit must be >= 1 or null"),
        ({}, {"seed": -1}, r"seed must be in 0..2\*\*63-1 .*got -1"),
        ({}, {"seed": 2**63}, r"seed must be in 0..2\*\*63-1 .*got 9223372036854775808"),
        ({}, {"optimizer": "adam"}, r"optimizer must be one of \['sgd', 'adamw'\], got 'adam'"),
        ({}, {"schedule": "linear"}, r"schedule must be one of \['constant', 'step', 'cosine', 'onecycle'\]"),
        ({}, {"precision": "fp16"}, r"precision must be one of \['auto', 'bf16', 'fp32'\]"),
        ({}, {"milestones": [150, 100]}, r"milestones must be increasing epochs >= 1, got \[150, 100\]"),
        ({}, {"accumulate": 0}, r"accumulate must be >= 1, got 0"),
        ({}, {"lr": 0.0}, r"lr must be finite and > 0, got 0.0"),
        ({}, {"warmup_epochs": 6.0}, r"warmup_epochs must be < epochs \(6\), got 6.0"),
        ({"recipe": "text"}, {}, r"is a configuration of recipe 'text', not 'image'"),
        ({"per_sample": 1}, {}, r"per_sample must be true or false, got 1"),
        ({}, {"method": "hidden"}, r"unknown method 'hidden' for recipe 'image'; choose one of \['erm', 'mixup'"),
        ({}, {"alpha": 0.0}, r"alpha must be finite and > 0 .*got 0.0"),
        ({}, {"alpha": -1.0}, r"alpha must be finite and > 0"),
        ({}, {"epochs": 0}, r"epochs must be >= 1, got 0"),
    ],
)
def test_config_errors(tmp_path, file_content, overrides, match):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(file_content))
    with pytest.raises(ValueError, match=match):
        resolve("image", path, overrides)


def test_missing_or_malformed_config_files(tmp_path):
    with pytest.raises(ValueError, match=r"--config .*nope.yaml does not exist"):
        resolve("image", tmp_path / "nope.yaml", {})
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match=r"must hold a YAML mapping of keys, got list"):
        resolve("image", bad, {})


def test_unknown_recipe_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown recipe 'audio'; choose one of \['image', 'speech', 'text'\]"):
        load("audio")


def test_the_paper_config_by_path_or_name():
    from multimix_recipes import HERE

    by_path = resolve("image", HERE / "image" / "cifar10-paper.yaml", {})
    assert resolve("image", "cifar10-paper", {}) == by_path
    c = by_path
    assert (c["optimizer"], c["lr"], c["momentum"], c["weight_decay"]) == ("sgd", 0.1, 0.9, 1e-4)
    assert isinstance(by_path["weight_decay"], float)  # written 1e-4 in the YAML: a string to PyYAML
    assert (by_path["batch_size"], by_path["epochs"], by_path["schedule"], by_path["milestones"]) == (
        128, 200, "step", [100, 150])
    assert (by_path["model"], by_path["alpha"], by_path["train_limit"], by_path["test_limit"]) == (
        "preact_resnet18", 1.0, None, None)


def test_quick_fills_only_keys_not_given(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train_limit: 300\n")
    config = resolve("image", path, {"quick": True, "epochs": 3})
    assert (config["epochs"], config["train_limit"], config["test_limit"]) == (3, 300, 256)
