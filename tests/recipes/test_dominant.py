"""The ``-dominant`` methods: the inputs mixed as their method mixes them, the label of the larger share.

On one fixed plan (partners and lam chosen by hand, lam = 0.5 included), each recipe's loss
for ``mixup-dominant`` (text: ``hidden-dominant``) equals the cross-entropy of its logits
against the one-hot label of the larger share (``lam >= 0.5`` keeps its own: MixupIO), and
the same plan under ``mixup`` (``hidden``) forwards the same mixed inputs but scores the
interpolated labels. A quick ``--compare`` lists the new method with ECE before and after T.
"""

import json
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import multimix
from multimix.cli import main
from multimix_recipes import engine, load
from multimix_recipes.config import resolve
from multimix_recipes.data import epoch_batches

SMALL = {"quick": True, "device": "cpu", "progress": False, "batch_size": 16}
LAM = torch.tensor([0.9, 0.5, 0.3, 0.1, 1.0, 0.6, 0.45, 0.55] * 2, dtype=torch.float64)
INDEX = torch.tensor([3, 7, 0, 12, 4, 9, 15, 1, 2, 14, 6, 8, 13, 10, 11, 5])  # a permutation; sample 4 unmixed


def loss_on_plan(config: dict) -> tuple[float, torch.Tensor, torch.Tensor, multimix.Mixer]:
    """The recipe's training loss of 16 seeded samples on the fixed plan, the logits its head produced, the
    labels and the run's mixer."""
    torch.manual_seed(config["seed"])  # as the runner builds a run: the same model
    random.seed(config["seed"])
    task = load(config["recipe"]).build(config)
    task.mixer.draw = lambda batch_size: multimix.MixPlan(INDEX, LAM, per_sample=True)  # plan_for draws through it
    head = [m for m in task.model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():  # confident logits (text's new head gives near-zero ones), so the labels' rule shows
        head.weight.mul_(20)
    logits: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, _i, out: logits.append(out.detach().double()))
    rows = torch.randperm(len(task.train_set), generator=torch.Generator().manual_seed(0))[:16]  # several classes
    batch = next(epoch_batches(task.train_set, [rows], torch.device("cpu"), task.collate))
    task.model.train()
    torch.manual_seed(5)  # the same augmentation and dropout for both methods
    try:
        loss = float(task.train_loss(task.model, batch).detach())
    finally:
        handle.remove()
    assert len(logits) == 1
    return loss, logits[0], batch[1], task.mixer


def cross_entropy(logits: torch.Tensor, rows: torch.Tensor) -> float:
    return float(-(rows * logits.log_softmax(1)).sum(1).mean())


@pytest.mark.parametrize(("recipe", "mixup"), [("image", "mixup"), ("speech", "mixup"), ("text", "hidden")])
def test_dominant_loss_scores_the_larger_shares_label_on_a_fixed_plan(recipe, mixup):
    dominant = resolve(recipe, None, {**SMALL, "method": f"{mixup}-dominant"})
    loss, logits, labels, mixer = loss_on_plan(dominant)
    assert mixer.label_mode == "dominant"
    classes = logits.shape[1]
    larger = torch.where(LAM >= 0.5, labels, labels[INDEX])  # the reference rule, written out
    assert loss == pytest.approx(cross_entropy(logits, F.one_hot(larger, classes).double()), rel=1e-5)
    mixed = (LAM > 0) & (LAM < 1)
    assert (labels != labels[INDEX])[mixed & (LAM < 0.5)].any()  # the rule changes some sample's label here

    lerp_loss, lerp_logits, _, lerp_mixer = loss_on_plan(resolve(recipe, None, {**SMALL, "method": mixup}))
    assert lerp_mixer.label_mode == "lerp"
    torch.testing.assert_close(lerp_logits, logits)  # the same mixed inputs, the same forward
    lam = LAM[:, None]
    interpolated = lam * F.one_hot(labels, classes) + (1 - lam) * F.one_hot(labels[INDEX], classes)
    assert lerp_loss == pytest.approx(cross_entropy(logits, interpolated), rel=1e-5)
    assert abs(loss - lerp_loss) > 1e-3  # interpolated labels would not meet the dominant reference


def test_split_method_and_the_mixer_for_a_dominant_name():
    assert engine.split_method("mixup-dominant") == ("mixup", "dominant")
    assert engine.split_method("mixup+cutmix") == ("mixup+cutmix", "lerp")
    config = resolve("image", None, {"method": "mixup-dominant"})
    mixer = load("image").build_mixer(config, 10)
    assert mixer.label_mode == "dominant" and type(mixer.adapters[0]).__name__ == "Mixup"
    assert load("image").build_mixer(resolve("image", None, {"method": "erm"}), 10) is None
    with pytest.raises(ValueError, match=r"unknown method 'cutmix-dominant' for recipe 'image'"):
        resolve("image", None, {"method": "cutmix-dominant"})


@pytest.mark.parametrize("methods", [
    ["mixup-dominant", "erm"],
    pytest.param(["erm", "mixup", "mixup-dominant", "regmixup"], marks=pytest.mark.slow),  # four runs: about 30 s
])  # fmt: skip
def test_quick_compare_lists_the_dominant_method_with_ece_before_and_after_t(tmp_path, capsys, methods):
    tiny = ["--device", "cpu", "--set", "progress=false", "--set", "train_limit=160", "--set", "val_size=32",
            "--set", "test_limit=64", "--batch-size", "32", "--epochs", "1"]  # fmt: skip
    assert main(["run", "image", "--compare", ",".join(methods), "--out", str(tmp_path), *tiny]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("device ")] == ["device cpu, world size 1, precision fp32"]
    assert out[0] == "device cpu, world size 1, precision fp32"  # once, first: the runner's, not each run's
    table = (tmp_path / "comparison.md").read_text().splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    ece, after = header.index("ECE"), header.index("ECE after T")
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table[2:])}
    assert list(rows) == methods
    stats = json.loads((tmp_path / "comparison.json").read_text())
    for method, cells in rows.items():
        assert float(cells[ece]) == pytest.approx(stats[method]["test_ece"]["mean"], abs=5e-5)
        assert float(cells[after]) == pytest.approx(stats[method]["test_ece_calibrated"]["mean"], abs=5e-5)
    config = (tmp_path / "mixup-dominant" / "config.yaml").read_text()
    assert "method: mixup-dominant" in config
