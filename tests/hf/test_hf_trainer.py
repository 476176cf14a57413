"""multimix.wrap inside a real transformers.Trainer: checkpoints, save_model, best model, resume."""

import json
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")
from tiny_models import ast, vit  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForAudioClassification,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    Trainer,
    TrainingArguments,
)

import multimix  # noqa: E402
from multimix.audio import SpecMix  # noqa: E402
from multimix.hf import MixupCallback  # noqa: E402
from multimix.image import CutMix, Mixup  # noqa: E402
from multimix.text import HiddenMix  # noqa: E402


def bert():
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=50,
        max_position_embeddings=32, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def samples(kind: str, n: int = 16) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (n,), generator=g)
    if kind == "text":
        ids = torch.randint(1, 50, (n, 7), generator=g)
        mask = torch.ones(n, 7, dtype=torch.long)
        mask[::3, 4:] = 0
        return [{"input_ids": i, "attention_mask": m, "labels": y} for i, m, y in zip(ids, mask, labels, strict=True)]
    if kind == "image":
        pixels = torch.randn(n, 3, 8, 8, generator=g)
        return [{"pixel_values": x, "labels": y} for x, y in zip(pixels, labels, strict=True)]
    features = torch.randn(n, 48, 32, generator=g)  # AST: (T, F)
    return [{"input_values": x, "labels": y} for x, y in zip(features, labels, strict=True)]


KINDS = {
    "text": (bert, lambda: HiddenMix(1.0, layers=(1, 2)), AutoModelForSequenceClassification),
    "image": (vit, lambda: [Mixup(0.8), CutMix(1.0)], AutoModelForImageClassification),
    "audio": (ast, lambda: SpecMix(1.0), AutoModelForAudioClassification),
}


def arguments(tmp_path, **overrides) -> TrainingArguments:
    options = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=4, save_steps=2, learning_rate=1e-3,
        logging_steps=1, report_to=[], use_cpu=True, seed=0, data_seed=0,
    )  # fmt: skip
    return TrainingArguments(**{**options, **overrides})


def build(kind: str, seed: int = 0):
    make, adapter, auto = KINDS[kind]
    torch.manual_seed(0)
    base = make()
    return base, multimix.wrap(base, adapter(), seed=seed), auto


def quiet_load(auto, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return auto.from_pretrained(path)


def plain_save(model, folder) -> dict:
    """What the base model's own save_pretrained writes (transformers 5 may rename weights on disk)."""
    model.save_pretrained(folder)
    return safetensors_torch.load_file(folder / "model.safetensors")


@pytest.mark.parametrize("kind", list(KINDS))
def test_checkpoints_and_save_model_hold_the_base_model(tmp_path, kind):
    base, model, auto = build(kind)
    trainer = Trainer(model=model, args=arguments(tmp_path / "run"), train_dataset=samples(kind))
    trainer.train()
    reference = plain_save(base, tmp_path / "reference")
    for step in (2, 4):
        folder = tmp_path / "run" / f"checkpoint-{step}"
        saved = safetensors_torch.load_file(folder / "model.safetensors")
        assert set(saved) == set(reference)  # exactly the base model's weights, no "base_model." prefix
        assert json.loads((folder / "config.json").read_text())["architectures"] == [type(base).__name__]
        assert type(quiet_load(auto, folder)) is type(base)
    final = safetensors_torch.load_file(tmp_path / "run" / "checkpoint-4" / "model.safetensors")
    for name, value in reference.items():
        torch.testing.assert_close(final[name], value, rtol=0, atol=0)
    trainer.save_model(str(tmp_path / "final"))
    loaded = quiet_load(auto, tmp_path / "final").eval()
    batch = {k: torch.stack([s[k] for s in samples(kind)[:4]]) for k in samples(kind)[0] if k != "labels"}
    expected = base.eval()(**batch).logits
    torch.testing.assert_close(loaded(**batch).logits, expected, rtol=0, atol=0)


def test_load_best_model_at_end_restores_the_best_checkpoint(tmp_path):
    base, model, _ = build("text")
    data = samples("text")
    args = arguments(tmp_path, max_steps=6, eval_strategy="steps", eval_steps=2, save_steps=2,
                     load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False,
                     save_total_limit=1)  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8])
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None
    saved = safetensors_torch.load_file(f"{best}/model.safetensors")
    assert set(saved) == set(base.state_dict())
    for name, value in base.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    losses = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    assert trainer.state.best_metric == min(losses)


class Record(transformers.TrainerCallback):
    """What the wrapped model's mixer holds at each step (a real callback, read-only)."""

    def __init__(self, model):
        self.model, self.steps = model, []

    def on_step_begin(self, args, state, control, **kwargs):
        mixer = self.model.mixer
        self.steps.append((state.global_step, mixer.enabled, mixer.adapters[0].alpha))


def test_callback_applies_off_epoch_and_alpha_schedule(tmp_path):
    _, model, _ = build("image")
    model = multimix.wrap(multimix.unwrap(model), Mixup(0.8), seed=0, off_epoch=2, alpha_schedule=lambda e: e + 1)
    record = Record(model)
    args = arguments(tmp_path, max_steps=-1, num_train_epochs=3, save_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=samples("image", 8),
                      callbacks=[MixupCallback(), record])  # fmt: skip
    trainer.train()
    # two steps per epoch: epochs 0 and 1 mix with alpha 0.8 and 1.6; off_epoch=2 stops mixing
    expected = [(0, True, 0.8), (1, True, 0.8), (2, True, 1.6), (3, True, 1.6), (4, False, 2.4), (5, False, 2.4)]
    assert [(step, enabled) for step, enabled, _ in record.steps] == [(step, on) for step, on, _ in expected]
    assert [alpha for *_, alpha in record.steps] == pytest.approx([alpha for *_, alpha in expected])


def losses(trainer) -> list[float]:
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


@pytest.mark.parametrize("kind", ["text", "image"])
def test_resume_draws_the_same_plans_as_an_uninterrupted_run(tmp_path, kind):
    data = samples(kind)
    _, model, _ = build(kind, seed=5)
    full = Trainer(model=model, args=arguments(tmp_path / "full", max_steps=6, save_steps=3), train_dataset=data,
                   callbacks=[MixupCallback()])  # fmt: skip
    full.train()
    assert (tmp_path / "full" / "checkpoint-3" / "multimix_mixer.pt").is_file()
    _, model, _ = build(kind, seed=99)  # a different seed: only the checkpoint can bring the plans back
    resumed = Trainer(model=model, args=arguments(tmp_path / "full", max_steps=6, save_steps=3), train_dataset=data,
                      callbacks=[MixupCallback()])  # fmt: skip
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    if kind == "text":
        # transformers 5's Trainer reloads a checkpoint with load_state_dict, which misses the weights its
        # save_pretrained renamed on disk (ViT: the plain model too), so only text compares the losses
        assert losses(resumed)[-3:] == losses(full)[-3:]
    assert torch.equal(model.mixer.generator.get_state(), full.model.mixer.generator.get_state())


def test_a_rank_the_checkpoint_lacks_takes_the_saved_schedule_and_its_own_stream(tmp_path):
    """Resumed on more processes than saved: a new rank starts as RankStates starts it (it raised, and its message
    said the checkpoint was not saved with MixupCallback)."""
    from types import SimpleNamespace

    from multimix.seeding import rank_seed

    saved = multimix.wrap(bert(), HiddenMix(1.0, layers=(1,)), alpha_schedule=lambda e: 1 + e, seed=3)
    saved.mixer.set_epoch(2)
    saved.mixer.draw(4)
    args = SimpleNamespace(output_dir=str(tmp_path), process_index=0, resume_from_checkpoint=None)
    state = SimpleNamespace(global_step=4, epoch=2.0)
    MixupCallback().on_save(args, state, None, model=saved)
    resumed = multimix.wrap(bert(), HiddenMix(1.0, layers=(1,)), alpha_schedule=lambda e: 1 + e, seed=3)
    with pytest.warns(UserWarning, match=r"holds no mixer state of rank 1 .* fresh stream from rank_seed"):
        MixupCallback().on_train_begin(SimpleNamespace(**{**vars(args), "process_index": 1}), state, None,
                                       model=resumed)  # fmt: skip
    assert resumed.mixer.state_dict()["epoch"] == 2 and resumed.mixer.adapters[0].alpha == 3.0
    expected = torch.Generator().manual_seed(rank_seed(3, 1)).get_state()
    assert torch.equal(resumed.mixer.generator.get_state(), expected)
    with pytest.raises(ValueError, match=r"checkpoint-5.*multimix_mixer.pt holds no mixer state"):
        MixupCallback().on_train_begin(args, SimpleNamespace(global_step=5, epoch=2.0), None, model=resumed)


def test_label_smoothing_factor_is_refused_with_the_fix(tmp_path):
    _, model, _ = build("text")
    args = arguments(tmp_path, label_smoothing_factor=0.1)
    with pytest.raises(ValueError, match=r"label_smoothing_factor=0.1\).*pass wrap\(\.\.\., label_smoothing=\.\.\.\)"):
        Trainer(model=model, args=args, train_dataset=samples("text"), callbacks=[MixupCallback()])
    # without the callback the Trainer withholds the labels, and the first step says why
    trainer = Trainer(model=model, args=args, train_dataset=samples("text"))
    with pytest.raises(ValueError, match=r"label_smoothing_factor=\.\.\.\) withholds the labels.*wrap\(\.\.\."):
        trainer.train()
    # the supported way: smoothing folded into the mixer's targets
    model = multimix.wrap(multimix.unwrap(model), HiddenMix(1.0, layers=(1,)), label_smoothing=0.1, seed=0)
    assert model.mixer.label_smoothing == 0.1


def test_callback_errors():
    with pytest.raises(ValueError, match=r"found no model made by multimix.wrap.*BertForSequenceClassification"):
        MixupCallback(bert())


@pytest.mark.parametrize("kind", ["text", pytest.param("image", marks=pytest.mark.slow)])
def test_trainer_with_torch_compile_adds_no_graph_break(tmp_path, kind):
    """``TrainingArguments(torch_compile=True)`` compiles the wrapped model; its train forward has no graph break
    and the Trainer's losses are the eager run's."""
    from torch._dynamo.utils import counters

    losses = {}
    for compiled in (False, True):
        _, model, _ = build(kind)
        torch._dynamo.reset()
        counters.clear()
        options = {"torch_compile": True, "torch_compile_backend": "aot_eager"} if compiled else {}
        trainer = Trainer(model=model, args=arguments(tmp_path / str(compiled), save_steps=100, **options),
                          train_dataset=samples(kind))  # fmt: skip
        trainer.train()
        losses[compiled] = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        if compiled:
            assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
            assert counters["stats"]["unique_graphs"] >= 1  # the model really went through dynamo
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
