"""``--sweep KEY=V1,V2,...``: values typed as ``--set`` types them, refusals before training, the value chosen on the
validation split (never on the test set), and the folders, tables and configs of a real sweep."""

import json
import re

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from multimix.cli import main
from multimix_recipes import engine, runner
from multimix_recipes.config import parse_assignment, resolve
from multimix_recipes.runner import aggregate, run
from multimix_recipes.sweep import check, choose, parse, select, selection_table, split_values

TINY = {"train_limit": 160, "val_size": 32, "test_limit": 64, "batch_size": 32, "progress": False, "device": "cpu"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpha=0.1,0.2,0.4", [0.1, 0.2, 0.4]),
        ("lr=1e-3, 3e-3", [0.001, 0.003]),  # floats, as --set lr=1e-3 reads them
        ("epochs=2,4", [2, 4]),
        ("per_sample=true,false", [True, False]),
        ("test_limit=null,100", [None, 100]),
        ("milestones=[100,150],[150, 225]", [[100, 150], [150, 225]]),  # commas inside brackets stay
        ("optimizer=sgd,adamw", ["sgd", "adamw"]),
    ],
)
def test_values_are_typed_exactly_as_set_types_them(text, expected):
    key, raw = parse(text)
    typed = check("image", key, raw, {})
    assert typed == expected and [type(v) for v in typed] == [type(v) for v in expected]
    for piece, value in zip(split_values(text.split("=", 1)[1]), typed, strict=True):
        assert resolve("image", None, {key: parse_assignment(f"{key}={piece}")[1]})[key] == value


def test_split_values_keeps_brackets_and_drops_empty_pieces():
    assert split_values("[1,2],[3,{a: 1, b: 2}], ,4,") == ["[1,2]", "[3,{a: 1, b: 2}]", "4"]
    assert parse("alpha=0.2,0.4") == ("alpha", ["0.2", "0.4"])  # raw, as parse_assignment leaves numbers


@pytest.mark.parametrize(
    ("text", "overrides", "match"),
    [
        ("alpha", {}, r"--sweep expects KEY=V1,V2,\.\.\. \(e\.g\. --sweep alpha=0\.1,0\.2,0\.4\), got 'alpha'"),
        ("=0.1,0.2", {}, r"--sweep expects KEY=V1,V2"),
        ("learning_rate=0.1,0.2", {},
         r"--sweep: unknown key 'learning_rate' for recipe 'image'; valid keys are \[.*'lr'.*\]; "
         r"did you mean 'lr'\?$"),
        ("epoch=1,2", {}, r"--sweep: unknown key 'epoch' for recipe 'image'; .*; did you mean 'epochs'\?$"),
        ("zzz=1,2", {}, r"--sweep: unknown key 'zzz' for recipe 'image'; valid keys are \[[^?]*\]$"),
        ("epochs=2,three", {}, r"--sweep epochs: epochs must be an integer like 6, got 'three'"),
        ("lr=0.1,fast", {}, r"--sweep lr: lr must be a number like 0\.004, got 'fast'"),
        ("alpha=0.2", {}, r"--sweep needs at least two values separated by commas \(e\.g\. --sweep alpha=A,B\), "
                          r"got \['0\.2'\]"),
        ("alpha=0.2,", {}, r"--sweep needs at least two values"),
        ("alpha=0.2,0.20", {}, r"--sweep alpha: the values must differ .*, got \[0\.2, 0\.2\]"),
        ("method=erm,mixup", {}, r"--sweep method is not possible: use --compare to run several methods"),
        ("methods=[erm],[mixup]", {}, r"--sweep methods is not possible: .*use --compare"),
        ("seed=0,1", {}, r"--sweep seed is not possible: use --seeds to run every value on several seeds"),
        ("seeds=[0],[1]", {}, r"--sweep seeds is not possible: use --seeds"),
        ("out=a,b", {}, r"--sweep out is not possible: each value already gets its own folder under --out"),
        ("val_size=100,200", {}, r"--sweep val_size is not possible: each value would be chosen on a different "
                                 r"validation split"),
        ("alpha=0.2,0.4", {"alpha": 0.3}, r"--sweep alpha and --set alpha \(or a flag\) both give alpha"),
        ("train_limit=1000,2000", {}, r"--sweep train_limit is not possible: the validation split is carved out"),
        ("data=embedded,/tmp/x", {}, r"--sweep data is not possible: .*run one sweep per dataset"),
        ("quick=true,false", {}, r"--sweep quick is not possible: --quick changes the data sizes"),
        ("device=cpu,cuda", {}, r"--sweep device is not possible: the device is chosen once"),
    ],
)  # fmt: skip
def test_bad_sweeps_are_refused_before_anything_is_built(tmp_path, monkeypatch, text, overrides, match):
    from multimix_recipes.image import train as image

    built = []
    monkeypatch.setattr(image, "build", lambda config: built.append(config))
    with pytest.raises(ValueError, match=match):
        run("image", overrides={**TINY, **overrides, "out": str(tmp_path / "out")}, sweep=text)
    assert built == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--sweep", "alpha=0.2,0.4", "--set", "val_size=0"],
         r"val_size must be >= 1 \(validation .* --sweep chooses\), got 0; set val_size, e\.g\. --set val_size"),
        (["--sweep", "alpha=0.2,-1"], r"alpha must be finite and > 0 \(lam ~ Beta\(alpha, alpha\)\), got -1\.0"),
        (["--sweep", "alpha=0.2"], r"--sweep needs at least two values"),
        (["--sweep", "seed=1,2"], r"--sweep seed is not possible: use --seeds"),
        (["--sweep", "alpha=0.2,0.4", "--alpha", "1"], r"--sweep alpha and --set alpha \(or a flag\) both give alpha"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_sweeps_before_training(tmp_path, capsys, argv, match):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "image", "--quick", "--device", "cpu", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and re.search(match, err), err
    assert not (tmp_path / "out").exists()


def test_help_shows_sweep(capsys):
    with pytest.raises(SystemExit):
        main(["run", "image", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert "--sweep KEY=V1,V2,..." in out and "choose the value on the validation split" in out


def stats(*seeds):
    """:func:`aggregate` of hand-made finals, one ``(val_accuracy, val_loss, test_accuracy)`` per seed."""
    return aggregate([{"val_accuracy": va, "val_loss": vl, "test_accuracy": ta, "test_loss": 1 - ta,
                       "test_ece": 0.1, "test_ece_calibrated": 0.05} for va, vl, ta in seeds])  # fmt: skip


def test_the_best_mean_validation_accuracy_wins():
    rows = [stats((0.70, 0.9, 0.7), (0.80, 0.9, 0.7)),  # mean 0.75
            stats((0.90, 0.9, 0.7), (0.70, 0.9, 0.7)),  # mean 0.80: chosen, though its first seed is not the best
            stats((0.85, 0.1, 0.7), (0.65, 0.1, 0.7))]  # mean 0.75, lowest NLL: accuracy comes first  # fmt: skip
    assert choose(rows) == 1


def test_a_tie_in_validation_accuracy_goes_to_the_lower_validation_nll():
    rows = [stats((0.8, 0.60, 0.7)), stats((0.8, 0.50, 0.6)), stats((0.8, 0.55, 0.9))]
    assert choose(rows) == 1
    assert choose([stats((0.8, 0.5, 0.7)), stats((0.8, 0.5, 0.9))]) == 0  # equal on both: the first value given


def test_selection_ignores_the_test_set_and_reports_the_chosen_values_test_metrics():
    values = [0.1, 0.2, 0.4]
    mixup = [stats((0.60, 1.0, 0.95), (0.62, 1.0, 0.93)),  # the test-best value (0.94)
             stats((0.75, 0.8, 0.80), (0.73, 0.8, 0.82)),  # the val-best value (0.74): chosen, test 0.81
             stats((0.70, 0.7, 0.90), (0.70, 0.7, 0.90))]  # fmt: skip
    erm = [stats((0.7, 0.9, 0.7), (0.7, 0.9, 0.7)), stats((0.7, 0.8, 0.6), (0.7, 0.8, 0.6)),
           stats((0.6, 0.1, 0.99), (0.6, 0.1, 0.99))]  # fmt: skip
    selection = select("alpha", values, {"mixup": mixup, "erm": erm})
    chosen = selection["methods"]["mixup"]
    assert chosen["chosen"] == 0.2 and chosen["chosen_label"] == "alpha=0.2"
    assert chosen["reported"]["test_accuracy"]["mean"] == pytest.approx(0.81)
    assert chosen["reported"]["test_accuracy"]["values"] == [0.80, 0.82]
    assert set(chosen["reported"]) == {"test_accuracy", "test_loss", "test_ece", "test_ece_calibrated"}
    assert [row["chosen"] for row in chosen["rows"]] == [False, True, False]
    assert chosen["rows"][0]["test_accuracy"]["mean"] == pytest.approx(0.94)  # shown, never chosen on
    assert selection["methods"]["erm"]["chosen"] == 0.2  # tie at 0.7: lower val NLL; test-best 0.4 ignored
    assert selection["key"] == "alpha" and selection["values"] == values and "val_accuracy" in selection["rule"]
    table = selection_table(selection)
    header = "| method | alpha (mean ± sample std (ddof=1) over 2 seeds) | val accuracy | val NLL | test accuracy |"
    assert header in table
    assert "| mixup | 0.2 | 0.7400 ± 0.0141 | 0.8000 ± 0.0000 | 0.8100 ± 0.0141 |" in table
    assert table.count("**chosen**") == 2
    assert "mixup: alpha=0.2 chosen on the validation split; report its test accuracy 0.8100 ± 0.0141" in table


metric = st.floats(0, 1, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(metric, metric, metric, metric), min_size=2, max_size=6))
def test_the_choice_is_the_validation_argmax_whatever_the_test_metrics(rows):
    """Any test metrics: the choice is the first value of highest val accuracy, then lowest val NLL."""
    chosen = choose([stats((va, vl, ta)) for va, vl, ta, _ in rows])
    assert chosen == choose([stats((va, vl, other)) for va, vl, _, other in rows])
    best = max(va for va, _, _, _ in rows)
    lowest = min(vl for va, vl, _, _ in rows if va == best)
    assert chosen == next(i for i, (va, vl, _, _) in enumerate(rows) if va == best and vl == lowest)


@pytest.mark.parametrize("key", ["split", "held_out_speakers"])
def test_speech_split_keys_are_refused(key):
    with pytest.raises(ValueError, match=rf"--sweep {key} is not possible: each value would hold out other"):
        check("speech", key, ["1", "2"], {})


def test_values_that_share_a_folder_name_are_refused():
    with pytest.raises(ValueError, match=r"the values must differ \(and differ in their folder names "):
        check("image", "model", ["a/b", "a_b"], {})


def test_a_nan_validation_nll_ranks_last_whatever_the_order():
    nan = float("nan")
    rows = [stats((0.8, nan, 0.9)), stats((0.8, 0.5, 0.7))]
    assert choose(rows) == 1 and choose(rows[::-1]) == 0
    assert choose([stats((nan, 0.1, 0.9)), stats((0.1, 0.9, 0.1))]) == 1


@pytest.mark.parametrize("bad", [("alpha", "0.1,0.2"), ["alpha", [0.1]], ("alpha",), 3])
def test_run_refuses_a_malformed_sweep_argument(tmp_path, bad):
    with pytest.raises(TypeError, match=r"sweep must be 'KEY=V1,V2,\.\.\.' or \(key, \[values\]\)"):
        run("image", overrides={**TINY, "out": str(tmp_path / "out")}, sweep=bad)
    assert not (tmp_path / "out").exists()


def test_a_row_without_validation_metrics_is_refused():
    with pytest.raises(ValueError, match=r"--sweep chooses on the validation split, .*set val_size >= 1"):
        choose([stats((0.7, 0.5, 0.7)), aggregate([{"test_accuracy": 0.9}])])


def fake_train(task, config, out, *, state=None, announce=True):
    """Metrics without training: validation prefers alpha 0.4, the test set alpha 0.2."""
    val, test = {0.2: (0.6, 0.9), 0.4: (0.7, 0.8)}[config["alpha"]]
    final = {"val_accuracy": val + config["seed"] / 100, "val_loss": 1.0, "test_accuracy": test, "test_loss": 0.5,
             "test_ece": 0.1, "test_ece_calibrated": 0.05, "temperature": 1.0}  # fmt: skip
    return {"final": final, "epochs": [{**final, "epoch": 1, "train_loss": 1.0}], "wall_seconds": 0.0,
            "_logits": torch.eye(4), "_labels": torch.arange(4), "_temperature": 1.0}  # fmt: skip


def test_every_method_value_and_seed_gets_its_folder_and_row(tmp_path, monkeypatch, capsys):
    from multimix_recipes.image import train as image

    monkeypatch.setattr(image, "build", lambda config: None)
    monkeypatch.setattr(engine, "train", fake_train)
    run("image", overrides={**TINY, "out": str(tmp_path), "seeds": [0, 1]}, compare=["erm", "mixup"],
        sweep=("alpha", [0.2, 0.4]))  # fmt: skip
    for method in ("erm", "mixup"):
        for alpha in (0.2, 0.4):
            for seed in (0, 1):
                folder = tmp_path / method / f"alpha={alpha}" / f"seed{seed}"
                saved = yaml.safe_load((folder / "config.yaml").read_text())
                assert (saved["method"], saved["alpha"], saved["seed"]) == (method, alpha, seed)
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    assert list(comparison) == ["erm alpha=0.2", "erm alpha=0.4", "mixup alpha=0.2", "mixup alpha=0.4"]
    assert comparison["mixup alpha=0.4"]["val_accuracy"]["values"] == [0.7, 0.71]
    assert "| mixup alpha=0.4 |" in (tmp_path / "comparison.md").read_text()
    selection = json.loads((tmp_path / "selection.json").read_text())
    for method in ("erm", "mixup"):  # chosen on validation (0.4), although the test set prefers 0.2
        assert selection["methods"][method]["chosen"] == 0.4
        assert selection["methods"][method]["reported"]["test_accuracy"]["mean"] == pytest.approx(0.8)
    out = capsys.readouterr().out
    assert "mixup: alpha=0.4 chosen on the validation split" in out
    assert out.index("| method | alpha (") < out.index(f"results in {tmp_path.resolve()}")  # printed at the end
    assert (tmp_path / "selection.md").read_text().startswith("Value of alpha chosen per method: highest mean")


def test_a_real_sweep_of_two_values(tmp_path, capsys):
    argv = ["run", "image", "--quick", "--method", "mixup", "--sweep", "alpha=0.2,1", "--out", str(tmp_path),
            "--device", "cpu", "--batch-size", "32", "--set", "progress=false", "--set", "train_limit=160",
            "--set", "val_size=32", "--set", "test_limit=64"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["alpha=0.2", "alpha=1.0"]
    finals = {}
    for alpha in (0.2, 1.0):
        folder = tmp_path / f"alpha={alpha}"
        assert yaml.safe_load((folder / "config.yaml").read_text())["alpha"] == alpha
        finals[alpha] = json.loads((folder / "metrics.json").read_text())["final"]
    selection = json.loads((tmp_path / "selection.json").read_text())
    assert selection["key"] == "alpha" and selection["values"] == [0.2, 1.0]
    chosen = selection["methods"]["mixup"]
    best = max((0.2, 1.0), key=lambda a: (finals[a]["val_accuracy"], -finals[a]["val_loss"]))
    assert chosen["chosen"] == best and chosen["chosen_label"] == f"alpha={best}"
    assert chosen["reported"]["test_accuracy"]["values"] == [finals[best]["test_accuracy"]]
    assert [row["val_accuracy"]["mean"] for row in chosen["rows"]] == [finals[a]["val_accuracy"] for a in (0.2, 1.0)]
    assert set(json.loads((tmp_path / "comparison.json").read_text())) == {"mixup alpha=0.2", "mixup alpha=1.0"}
    out = capsys.readouterr().out
    assert f"mixup: alpha={best} chosen on the validation split" in out


def test_folders_without_a_sweep_are_unchanged(tmp_path):
    config = resolve("image", None, {"method": "erm", "seed": 3})
    assert runner._run_folder(tmp_path, config, False, None, False) == tmp_path
    assert runner._run_folder(tmp_path, config, True, None, True) == tmp_path / "erm" / "seed3"
    assert runner._run_folder(tmp_path, {**config, "data": "/a/b"}, False, "data", False) == tmp_path / "data=_a_b"
