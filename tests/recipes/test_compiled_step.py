"""The recipes' training step compiled whole: traced as one graph (``fullgraph=True``, ``aot_eager``: fast on a
CPU), with eager's loss, gradients and BatchNorm statistics on the same draws, and a compiled run's metrics."""

from __future__ import annotations

import copy
import importlib
import json

import pytest
import torch

from multimix_recipes.config import resolve
from multimix_recipes.data import epoch_batches
from multimix_recipes.runner import run
from multimix_recipes.step import SplitLoss, build_step

CPU = torch.device("cpu")
TINY = {"train_limit": 96, "val_size": 32, "test_limit": 32, "batch_size": 8, "device": "cpu", "progress": False}


def _task(recipe: str, **keys):
    torch.manual_seed(0)
    config = resolve(recipe, None, {**TINY, **keys})
    task = importlib.import_module(f"multimix_recipes.{recipe}.train").build(config)
    batch = next(iter(epoch_batches(task.train_set, [torch.arange(8)], CPU, task.collate)))
    return task, batch


def _random_state(task):
    """Every generator a step draws from: torch's global one, the mixer's, the recipe's own (SpecAugment)."""
    return (torch.get_rng_state(), task.mixer.generator.get_state() if task.mixer else None,
            {name: copy.deepcopy(holder.state_dict()) for name, holder in task.stateful.items()})  # fmt: skip


def _restore(task, state) -> None:
    torch.set_rng_state(state[0])
    if task.mixer:
        task.mixer.generator.set_state(state[1])
    for name, holder in task.stateful.items():
        holder.load_state_dict(state[2][name])


def _step(task, batch, model, **compile_args):
    """One step from fresh draws: the loss, the gradients and the model's buffers (BatchNorm statistics)."""
    model.zero_grad(set_to_none=True)
    step, _ = build_step(task.train_loss, model, CPU, False, **compile_args)
    loss = step(copy.deepcopy(batch))  # the eager mixer writes into its inputs
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()], [b.clone() for b in model.buffers()]


def assert_compiled_equals_eager(recipe: str, **keys) -> None:
    task, batch = _task(recipe, **keys)
    assert isinstance(task.train_loss, SplitLoss)
    model = task.model.train()
    weights, draws = copy.deepcopy(model.state_dict()), _random_state(task)
    eager = _step(task, batch, model)
    model.load_state_dict(weights)
    _restore(task, draws)
    torch._dynamo.reset()
    compiled = _step(task, batch, model, compiled=True, backend="aot_eager", fullgraph=True)  # a break raises
    torch.testing.assert_close(compiled[0], eager[0])
    assert float(eager[0]) > 0
    for kind, got, want in (("gradient", compiled[1], eager[1]), ("buffer", compiled[2], eager[2])):
        assert len(got) == len(want) > 0
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            torch.testing.assert_close(g, w, msg=lambda m, k=k, kind=kind: f"{kind} {k}: {m}")
    again = _step(task, batch, model, compiled=True, backend="aot_eager", fullgraph=True)  # a new plan, same graph
    assert torch.isfinite(again[0]) and not torch.equal(again[0], compiled[0])


@pytest.mark.parametrize(("model", "method"), [
    ("small_cnn", "mixup"), ("small_cnn", "cutmix"), ("small_cnn", "regmixup"), ("small_cnn", "erm"),
    ("preact_resnet18", "mixup"), ("preact_resnet18", "cutmix"),
])  # fmt: skip
def test_image_step_traces_whole_and_equals_eager(model, method):
    assert_compiled_equals_eager("image", model=model, method=method, image_size=8)


@pytest.mark.parametrize("method", ["mixup+cutmix", "fmix", "resizemix", "saliencymix"])
@pytest.mark.slow
def test_image_step_of_every_mask_method_traces_whole(method):
    assert_compiled_equals_eager("image", model="small_cnn", method=method, image_size=8)


def test_speech_step_traces_whole_with_spec_augment():
    """Log-mels (torch.stft), SpecMixup by the plan, SpecAugment's bands, the CNN: one graph."""
    assert_compiled_equals_eager("speech", method="mixup", spec_augment=True)


@pytest.mark.parametrize(("method", "keys"), [("wavemix", {"spec_augment": True}), ("regmixup", {"spec_augment": True}),
                                              ("specmix", {}), ("erm", {"spec_augment": True})])  # fmt: skip
@pytest.mark.slow
def test_speech_step_of_every_method_traces_whole(method, keys):
    assert_compiled_equals_eager("speech", method=method, **keys)


@pytest.mark.slow
def test_text_erm_step_traces_whole():
    """The Hugging Face model's forward and our soft cross-entropy, one graph (about a minute on 2 cores)."""
    assert_compiled_equals_eager("text", method="erm")


def test_methods_that_mix_inside_the_model_compile_the_model():
    """Manifold mixup draws its plan in the wrapped model's forward: compiling wraps the module, as before."""
    task, batch = _task("image", method="manifold", model="small_cnn", image_size=8)
    assert not isinstance(task.train_loss, SplitLoss)
    torch._dynamo.reset()
    step, how = build_step(task.train_loss, task.model.train(), CPU, False, compiled=True, backend="eager")
    assert how == "compiled model (eager; this method mixes inside the model)"
    assert torch.isfinite(step(batch))


def test_a_compiled_run_gives_the_eager_runs_metrics(tmp_path, capsys):
    """One epoch of the image recipe with compile on (aot_eager) and off: the same metrics to float tolerance."""
    keys = {**TINY, "train_limit": 160, "batch_size": 32, "epochs": 1, "method": "cutmix", "image_size": 16,
            "compile_backend": "aot_eager"}  # fmt: skip
    torch._dynamo.reset()
    run("image", overrides={**keys, "compile": "true", "out": str(tmp_path / "compiled")})
    assert "compiled step (aot_eager): mixing, forward, loss and backward" in capsys.readouterr().out
    run("image", overrides={**keys, "compile": "false", "out": str(tmp_path / "eager")})
    assert "compiled step" not in capsys.readouterr().out
    compiled, eager = (json.loads((tmp_path / name / "metrics.json").read_text())["final"]
                       for name in ("compiled", "eager"))  # fmt: skip
    for key in ("train_loss", "test_accuracy", "test_loss", "test_ece", "val_loss", "temperature"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-4, abs=1e-5), key
