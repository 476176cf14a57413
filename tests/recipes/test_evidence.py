"""Calibration, RegMixup, several seeds and the speaker split: the numbers behind docs/results.md."""

import json
import math
import statistics
import tarfile

import pytest
import torch
import torch.nn.functional as F

import multimix
from multimix_recipes import data_file
from multimix_recipes.config import resolve
from multimix_recipes.data import group_split, split_off
from multimix_recipes.engine import calibrate
from multimix_recipes.runner import aggregate, comparison_table, run

TINY = {"train_limit": 160, "val_size": 32, "test_limit": 64, "batch_size": 32, "progress": False, "device": "cpu"}


def test_validation_split_is_disjoint_complete_and_seeded():
    keep, held = split_off(100, 20, seed=3)
    assert len(held) == 20 and len(keep) == 80
    assert sorted(torch.cat([keep, held]).tolist()) == list(range(100))  # disjoint, nothing lost
    again_keep, again_held = split_off(100, 20, seed=3)
    assert torch.equal(held, again_held) and torch.equal(keep, again_keep)
    assert not torch.equal(held, split_off(100, 20, seed=4)[1])
    with pytest.raises(ValueError, match=r"val_size must be >= 1 and below the 10 training samples, got 10"):
        split_off(10, 10, seed=0)


def test_calibrated_metrics_equal_scoring_logits_over_t():
    g = torch.Generator().manual_seed(0)
    true_logits = 2 * torch.randn(3000, 4, generator=g)
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=g).squeeze(1)
    logits = 0.4 * true_logits  # under-confident, as mixup-trained models tend to be
    val, test = (logits[:1500], labels[:1500]), (logits[1500:], labels[1500:])
    result = calibrate(val, test)
    t = multimix.fit_temperature(*val)
    assert result["temperature"] == t and t == pytest.approx(0.4, abs=0.05)
    assert result["test_loss_calibrated"] == multimix.negative_log_likelihood(test[0] / t, test[1])
    assert result["test_ece_calibrated"] == multimix.expected_calibration_error(test[0] / t, test[1])
    assert result["test_brier_calibrated"] == multimix.brier_score(test[0] / t, test[1])
    assert result["test_loss_calibrated"] < multimix.negative_log_likelihood(*test)
    assert result["test_ece_calibrated"] < 0.03 < multimix.expected_calibration_error(*test)


def test_a_run_reports_calibrated_metrics_of_its_own_logits(tmp_path):
    metrics = run_one(tmp_path, method="mixup")
    logits, labels, t = metrics["_logits"], metrics["_labels"], metrics["_temperature"]
    final = metrics["final"]
    for key in ("test_accuracy", "test_loss", "test_ece", "test_brier", "temperature", "test_ece_calibrated",
                "test_loss_calibrated", "test_brier_calibrated", "val_accuracy", "val_loss"):  # fmt: skip
        assert math.isfinite(final[key]), key
    assert final["temperature"] == t and t != 1.0
    assert final["test_loss"] == pytest.approx(float(F.cross_entropy(logits.double(), labels)), rel=1e-9)
    assert final["test_loss_calibrated"] == multimix.negative_log_likelihood(logits / t, labels)
    assert final["test_ece_calibrated"] == multimix.expected_calibration_error(logits / t, labels)


def run_one(tmp_path, **keys):
    from multimix_recipes import engine
    from multimix_recipes.image import train as image

    config = resolve("image", None, {**TINY, "epochs": 1, **keys})
    torch.manual_seed(0)
    return engine.train(image.build(config), config, tmp_path)


def test_regmixup_loss_equals_a_hand_computation_on_one_batch():
    from multimix_recipes.image import train as image

    config = resolve("image", None, {**TINY, "method": "regmixup", "regmixup_alpha": 10.0, "regmixup_eta": 0.7})
    torch.manual_seed(0)
    task = image.build(config)
    task.model.eval()  # batch norm on running statistics: one forward of the concatenation = two forwards
    x, y = task.train_set.take(torch.arange(8))
    state = task.mixer.state_dict()
    torch.manual_seed(5)
    loss = task.train_loss(task.model, (x.clone(), y))

    task.mixer.load_state_dict(state)  # the same plan and the same crops, by hand
    plan = task.mixer.draw(8)
    torch.manual_seed(5)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in image.MEAN_STD[3])
    clean = (image.augment(x).float() / 255 - mean) / std
    lam = plan.lam.float().view(8, 1, 1, 1)
    mixed = lam * clean + (1 - lam) * clean[plan.index]
    one_hot = F.one_hot(y, 10).double()
    targets = plan.lam.view(8, 1) * one_hot + (1 - plan.lam.view(8, 1)) * one_hot[plan.index]
    with torch.no_grad():
        clean_term = F.cross_entropy(task.model(clean), y)
        mixed_term = -(targets * task.model(mixed).double().log_softmax(1)).sum(1).mean()
    assert float(plan.lam.min()) > 0.05 and float(plan.lam.max()) < 0.95  # alpha 10: lam near 0.5, really mixed
    assert float(loss.detach()) == pytest.approx(float(clean_term) + 0.7 * float(mixed_term), rel=1e-5)


def test_aggregate_is_mean_and_sample_std():
    finals = [{"test_accuracy": 0.5, "temperature": 1.0, "method": "x"}, {"test_accuracy": 0.6, "temperature": 2.0},
              {"test_accuracy": 0.9, "temperature": 4.0}]  # fmt: skip
    stats = aggregate(finals)
    assert set(stats) == {"test_accuracy", "temperature"}  # numbers only, present in every run
    # by hand: mean 2/3 = 0.6667; deviations -1/6, -1/15, 7/30; sum of squares 0.0867 / (3 - 1) -> std 0.2082
    assert stats["test_accuracy"]["mean"] == pytest.approx(2 / 3)
    assert stats["test_accuracy"]["std"] == pytest.approx(math.sqrt((1 / 36 + 1 / 225 + 49 / 900) / 2))
    assert stats["temperature"]["std"] == pytest.approx(1.5275252, rel=1e-6)  # sqrt(7/3)
    assert stats["temperature"]["values"] == [1.0, 2.0, 4.0] and stats["temperature"]["n"] == 3
    table = comparison_table({"mixup": stats})
    assert "mean ± sample std (ddof=1) over 3 seeds" in table
    assert "| mixup | 0.6667 ± 0.2082 |" in table and "| 2.333 ± 1.528 |" in table
    assert aggregate([{"test_accuracy": 0.5}])["test_accuracy"]["std"] == 0.0


def test_seeds_run_every_method_on_every_seed_and_aggregate(tmp_path):
    run("image", overrides={**TINY, "epochs": 1, "out": str(tmp_path), "seeds": [0, 1]}, compare=["erm", "regmixup"])
    stats = json.loads((tmp_path / "comparison.json").read_text())
    assert set(stats) == {"erm", "regmixup"}
    for method in ("erm", "regmixup"):
        finals = [json.loads((tmp_path / method / f"seed{s}" / "metrics.json").read_text())["final"] for s in (0, 1)]
        accuracies = [f["test_accuracy"] for f in finals]
        assert stats[method]["test_accuracy"]["values"] == accuracies
        assert stats[method]["test_accuracy"]["mean"] == pytest.approx(statistics.mean(accuracies))
        assert stats[method]["test_accuracy"]["std"] == pytest.approx(statistics.stdev(accuracies))  # ddof=1
        assert stats[method]["test_ece_calibrated"]["n"] == 2
    seed0, seed1 = ((tmp_path / "erm" / f"seed{s}" / "config.yaml").read_text() for s in (0, 1))
    assert "seed: 0\n" in seed0 and "seed: 1\n" in seed1
    assert "over 2 seeds" in (tmp_path / "comparison.md").read_text()
    for name in ("comparison_curves.png", "comparison_reliability.png", "comparison_spread.png"):
        assert (tmp_path / name).stat().st_size > 1000


def fsdd_speakers():
    with tarfile.open(data_file("fsdd-recordings.tar.xz")) as archive:
        names = [m.name for m in archive.getmembers() if m.isfile() and m.name.endswith(".wav")]
    return sorted({name.rsplit("/", 1)[-1].split("_")[1] for name in names})


def test_speaker_split_holds_out_whole_speakers():
    from multimix_recipes.speech import train as speech

    speakers = fsdd_speakers()
    assert len(speakers) == 6
    held = {seed: group_split(speakers, 2, seed) for seed in (0, 1, 2)}
    assert all(len(h) == 2 for h in held.values()) and len({tuple(h) for h in held.values()}) > 1  # seed chooses
    config = resolve("speech", None, {"split": "speakers", "held_out_speakers": 2, "seed": 1})
    train, test, _ = speech.load_embedded(config)
    assert len(test) == 1000 and len(train) == 2000  # 2 speakers x 10 digits x 50 takes held out
    # every clip of a held-out speaker is in the test set and none in training (same waveforms, by speaker)
    by_speaker: dict[str, set[bytes]] = {}
    with tarfile.open(data_file("fsdd-recordings.tar.xz")) as archive:
        for member in archive.getmembers():
            match = speech.FSDD_NAME.search(member.name)
            if member.isfile() and match:
                clip, _ = speech.read_wav(archive.extractfile(member).read(), member.name)
                by_speaker.setdefault(match.group(2), set()).add(clip.numpy().tobytes())
    test_clips = {clip.numpy().tobytes() for clip, _ in test}
    train_clips = {clip.numpy().tobytes() for clip, _ in train}
    assert test_clips == set().union(*(by_speaker[s] for s in held[1]))
    assert not train_clips & test_clips and len(train_clips | test_clips) == 3000
    with pytest.raises(ValueError, match=r"held_out_speakers must be in 1..5 \(there are 6 speakers"):
        speech.load_data(resolve("speech", None, {"split": "speakers", "held_out_speakers": 6}))
    with pytest.raises(ValueError, match=r"split must be 'takes' or 'speakers', got 'voices'"):
        speech.load_data(resolve("speech", None, {"split": "voices"}))
    with pytest.raises(ValueError, match=r"split: speakers needs the embedded FSDD .*use split: takes"):
        speech.load_data(resolve("speech", None, {"split": "speakers", "data": "speech_commands"}))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"seeds": "0,0"}, r"seeds must be distinct integers in 0..2\*\*63-1, e.g. --set seeds=0,1,2; got \[0, 0\]"),
        ({"seeds": "[1, -2]"}, r"seeds must be distinct integers .*got \[1, -2\]"),
        ({"val_size": 0}, r"val_size must be >= 1 \(validation samples carved out of the training data"),
        ({"regmixup_alpha": 0}, r"regmixup_alpha must be finite and > 0 \(RegMixup uses 10-20\), got 0.0"),
        ({"regmixup_eta": -1}, r"regmixup_eta must be finite and >= 0 \(the paper uses 1.0\), got -1.0"),
    ],
)
def test_new_keys_are_validated(overrides, match):
    with pytest.raises(ValueError, match=match):
        resolve("image", None, overrides)


def test_seeds_shorthand_and_gpu_defaults():
    assert resolve("image", None, {"seeds": "0,1,2"})["seeds"] == [0, 1, 2]
    assert resolve("image", None, {"seeds": "[3, 4]"})["seeds"] == [3, 4]
    cpu = resolve("text", None, {"device": "cpu"})
    assert cpu["train_limit"] == 3500 and cpu["epochs"] == 1
    gpu = resolve("text", None, {"device": "cuda"})  # text on a GPU: all of MR, 3 epochs
    assert gpu["train_limit"] is None and gpu["test_limit"] is None and gpu["epochs"] == 3
    assert resolve("text", None, {"device": "cuda", "epochs": 2})["epochs"] == 2  # what you give wins
    assert resolve("text", None, {"device": "cuda", "quick": True})["train_limit"] == 576  # --quick wins


def test_trec_path_up_to_the_network_edge(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from multimix_recipes.text import train as text

    config = resolve("text", None, {"data": "trec", "data_root": str(tmp_path)})
    with pytest.raises(ValueError, match=r"could not load trec from the Hugging Face hub .*offline, use the embedded"):
        text.load_data(config)
