"""label_smoothing reaches every method's loss in every recipe: ERM, the mixing methods and RegMixup's clean term.

Smoothing by s turns each target row t into (1 - s) t + s / C, so on the same logits z the
cross-entropy becomes (1 - s) CE(z, t) + s * mean_i(-mean_c log softmax(z_i)_c): each run's
one-batch loss with s = 0.1 is checked against its loss with s = 0 through that identity.
"""

import random

import pytest
import torch
from torch import nn

from multimix_recipes import engine, load, runner
from multimix_recipes.config import resolve
from multimix_recipes.data import epoch_batches

S = 0.1
SMALL = {"quick": True, "device": "cpu", "progress": False, "batch_size": 16}


def one_batch_loss(config: dict, seed: int = 5) -> tuple[float, list[torch.Tensor]]:
    """The recipe's training loss of its first 16 training samples, and the logits its head produced (in order)."""
    torch.manual_seed(config["seed"])  # as the runner builds a run: the same model and mixer
    random.seed(config["seed"])
    task = load(config["recipe"]).build(config)
    head = [m for m in task.model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():  # confident logits, so that smoothing moves the loss well past the tolerance
        head.weight.mul_(20)
    logits: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, _i, out: logits.append(out.detach().double()))
    batch = next(epoch_batches(task.train_set, [torch.arange(16)], torch.device("cpu"), task.collate))
    task.model.train()
    torch.manual_seed(seed)  # the same augmentation, dropout and masks in both runs
    try:
        loss = float(task.train_loss(task.model, batch).detach())
    finally:
        handle.remove()
    return loss, logits


def check_smoothed(config: dict) -> None:
    """``config``'s loss (label_smoothing S) equals (1 - S) * its unsmoothed loss + S * the uniform-target term."""
    assert config["label_smoothing"] == S
    smoothed, logits = one_batch_loss(config)
    plain, plain_logits = one_batch_loss({**config, "label_smoothing": 0.0})
    assert len(logits) == len(plain_logits) >= 1
    for a, b in zip(logits, plain_logits, strict=True):
        torch.testing.assert_close(a, b)  # the same forward: only the targets differ
    # RegMixup: mean CE of the clean half + eta * mean CE of the mixed half (one forward, or two in the text recipe)
    parts = torch.cat(logits).chunk(2) if config["method"] == "regmixup" else [torch.cat(logits)]
    weights = [1.0, config["regmixup_eta"]] if config["method"] == "regmixup" else [1.0]
    uniform = sum(w * float(-z.log_softmax(1).mean(1).mean()) for w, z in zip(weights, parts, strict=True))
    assert smoothed == pytest.approx((1 - S) * plain + S * uniform, rel=2e-5), config["method"]
    assert abs(smoothed - plain) > 100 * 2e-5 * smoothed  # an unsmoothed loss would not meet the identity


def test_compare_erm_and_mixup_smooths_both(tmp_path, monkeypatch):
    checked = []

    def fake_train(task, config, out, *, state=None, announce=True):  # every run of the comparison, as built
        check_smoothed(config)
        checked.append(config["method"])
        final = {"test_accuracy": 0.5, "test_loss": 1.0}
        scored = {"_logits": torch.zeros(2, 10), "_labels": torch.zeros(2, dtype=torch.long), "_temperature": 1.0}
        return {"final": final, "epochs": [{"epoch": 1, **final}], "wall_seconds": 0.0, **scored}

    monkeypatch.setattr(engine, "train", fake_train)
    monkeypatch.setattr(runner, "_write_comparison", lambda results, out: {})
    runner.run("image", overrides={**SMALL, "out": str(tmp_path), "label_smoothing": S}, compare=["erm", "mixup"])
    assert checked == ["erm", "mixup"]


@pytest.mark.parametrize(
    ("recipe", "method"),
    [("image", "regmixup"), ("speech", "erm"), ("speech", "regmixup"), ("text", "erm"), ("text", "regmixup")],
)
def test_every_recipe_smooths_erm_and_the_regmixup_clean_term(recipe, method):
    extra = {"regmixup_eta": 0.7} if method == "regmixup" else {}
    check_smoothed(resolve(recipe, None, {**SMALL, "method": method, "label_smoothing": S, **extra}))
