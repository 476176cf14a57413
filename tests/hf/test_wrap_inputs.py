"""multimix.wrap leaves the caller's tensors and the model's config alone, and takes every input form."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_models import vit  # noqa: E402

import multimix  # noqa: E402
from multimix.image import CutMix, Mixup  # noqa: E402
from multimix.text import HiddenMix  # noqa: E402

BERT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100,
    max_position_embeddings=32, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)  # fmt: skip


def bert():
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(transformers.BertConfig(**BERT))


def test_soft_labels_in_eval_do_not_switch_the_head_to_multi_label():
    base = bert()
    model = multimix.wrap(base, HiddenMix(1.0)).eval()
    ids = torch.randint(1, 100, (4, 6))
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]])
    out = model(input_ids=ids, labels=soft)
    assert base.config.problem_type is None
    torch.testing.assert_close(out.loss, multimix.soft_cross_entropy(base(input_ids=ids).logits, soft))
    hard = model(input_ids=ids, labels=torch.tensor([0, 1, 2, 0]))  # integer labels: exactly the base model
    torch.testing.assert_close(hard.loss, base(input_ids=ids, labels=torch.tensor([0, 1, 2, 0])).loss)


@pytest.mark.parametrize("adapter", [Mixup(1.0), CutMix(1.0), [Mixup(0.8), CutMix(1.0)]])
def test_input_mixing_never_writes_into_the_callers_pixel_values(adapter):
    model = multimix.wrap(vit(), adapter, seed=0, **({"switch_prob": 0.5} if isinstance(adapter, list) else {}))
    pixels = torch.randn(4, 3, 8, 8)
    before = pixels.clone()
    out = model.train()(pixel_values=pixels, labels=torch.tensor([0, 1, 2, 0]))
    assert torch.equal(pixels, before) and torch.isfinite(out.loss)
    assert all(a.inplace for a in (adapter if isinstance(adapter, list) else [adapter]))  # the caller's adapters too


def test_inputs_embeds_without_input_ids_and_return_dict_false():
    base = bert()
    model = multimix.wrap(base, HiddenMix(1.0, layers=(1,)), seed=0).train()
    ids, labels = torch.randint(1, 100, (4, 6)), torch.tensor([0, 1, 2, 0])
    embeds = base.bert.embeddings.word_embeddings(ids)
    out = model(inputs_embeds=embeds, labels=labels)
    assert out.logits.shape == (4, 3) and torch.isfinite(out.loss)
    loss, logits = model(input_ids=ids, labels=labels, return_dict=False)[:2]
    assert logits.shape == (4, 3) and loss.shape == ()
    base.eval()
    model.eval()
    torch.testing.assert_close(model(input_ids=ids, return_dict=False)[0], base(input_ids=ids).logits)


def test_layers_are_saved_once():
    base = bert()
    model = multimix.wrap(base, HiddenMix(1.0))
    assert len(model.state_dict()) == len(base.state_dict())  # no second copy of the encoder layers


def test_adapter_lists_are_checked():
    with pytest.raises(ValueError, match=r"HiddenMix mixes inside the model and cannot be switched"):
        multimix.wrap(bert(), [HiddenMix(1.0), Mixup(1.0)])
    with pytest.raises(ValueError, match=r"adapter is an empty list"):
        multimix.wrap(bert(), [])


@pytest.mark.parametrize("adapter", [HiddenMix(1.0), Mixup(1.0)])
def test_multi_label_follows_the_config_and_a_disagreeing_keyword_is_refused(adapter):
    """multi_label is a Mixer option that wrap reads from config.problem_type: the same value is accepted, another
    refused with the fix (it raised 'got multiple values for keyword argument')."""
    base = bert() if isinstance(adapter, HiddenMix) else vit()
    with pytest.raises(ValueError, match=r"multi_label disagrees with .*config.problem_type=None.*"
                                         r"set config.problem_type='multi_label_classification'"):  # fmt: skip
        multimix.wrap(base, adapter, multi_label=True)
    assert multimix.wrap(base, adapter, multi_label=False).mixer.multi_label is False
    base.config.problem_type = "multi_label_classification"
    assert multimix.wrap(base, adapter, multi_label=True).mixer.multi_label is True


def test_unwrap_gives_the_model_back_in_the_mode_the_wrapper_was_left_in():
    """The view shares the submodules, so .train() on it reaches them; unwrap sets the base model's own flag too
    (it came back 'eval' over training submodules)."""
    base = bert().eval()
    model = multimix.wrap(base, HiddenMix(1.0), seed=0).train()
    back = multimix.unwrap(model)
    assert back is base and back.training and all(m.training for m in back.modules())
    assert not multimix.unwrap(multimix.wrap(base, HiddenMix(1.0)).eval()).training
