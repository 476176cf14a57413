"""Token labels through ``multimix.wrap``: a token classifier trains on mixed hidden states with labels ``(B, T)``.

The loss over all tokens is ``sum(w_a [y_a valid] CE(z, y_a) + w_b [y_b valid] CE(z, y_b)) /
sum(w_a [y_a valid] + w_b [y_b valid])``, each side weighted where its label is valid
(-100 elsewhere); eval stays exactly the base model.
"""

from __future__ import annotations

import pytest
import torch
from conftest import fixed_plan

import multimix
from multimix.text import HiddenMix

transformers = pytest.importorskip("transformers")
from tiny_models import tagger  # noqa: E402

C = 5


def tagged_batch():
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, 60, (4, 7), generator=g)
    mask = torch.ones(4, 7, dtype=torch.long)
    mask[0, 4:] = 0
    mask[3, 2:] = 0
    labels = torch.randint(0, C, (4, 7), generator=g)
    labels[mask == 0] = -100  # padding has no label
    labels[1, 0] = -100  # nor do first sub-word pieces in some taggers
    return ids, mask, labels


def reference_loss(logits, labels, index, lam, label_mode="lerp"):
    """The issue's formula, one token at a time in float64."""
    log_probs = torch.log_softmax(logits.double(), -1)
    num = den = 0.0
    for i in range(labels.shape[0]):
        j = int(index[i])
        own, other = float(lam[i]), 1.0 - float(lam[i])
        if label_mode == "dominant":
            own, other = (1.0, 0.0) if float(lam[i]) >= 0.5 else (0.0, 1.0)
        for t in range(labels.shape[1]):
            for weight, y in ((own, int(labels[i, t])), (other, int(labels[j, t]))):
                if y != -100:
                    num -= weight * float(log_probs[i, t, y])
                    den += weight
    return num / den


@pytest.mark.parametrize("label_mode", ["lerp", "dominant"])
@pytest.mark.parametrize("point", [0, 1, 2])
def test_the_loss_weighs_each_side_where_its_label_is_valid(point, label_mode):
    base = tagger(C)
    ids, mask, labels = tagged_batch()
    model = multimix.wrap(base, HiddenMix(1.0, layers=(point,)), label_mode=label_mode, seed=0).train()
    plan = fixed_plan([1, 2, 3, 0], [0.7, 0.4, 0.55, 0.2])
    model.mixer.draw = lambda batch_size: plan
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (4, 7, C)
    want = reference_loss(out.logits.detach(), labels, plan.index, plan.lam, label_mode)
    assert float(out.loss) == pytest.approx(want, rel=1e-5)
    out.loss.backward()
    assert base.classifier.weight.grad is not None


def test_unmixed_step_is_the_base_models_own_token_loss_and_eval_is_the_base():
    base = tagger(C)
    ids, mask, labels = tagged_batch()
    expected = base.eval()(input_ids=ids, attention_mask=mask, labels=labels)
    model = multimix.wrap(base, HiddenMix(1.0, layers=(1,)), seed=0).train()
    model.mixer.draw = lambda batch_size: fixed_plan([1, 2, 3, 0], 1.0)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits, expected.logits)
    torch.testing.assert_close(out.loss, expected.loss)  # HF's mean over the valid tokens
    evaluated = model.eval()(input_ids=ids, attention_mask=mask, labels=labels)
    assert torch.equal(evaluated.logits, expected.logits) and torch.equal(evaluated.loss, expected.loss)


@pytest.mark.parametrize("smoothing", [0.1, 0.4])
def test_label_smoothing_reaches_the_token_loss(smoothing):
    """wrap(..., label_smoothing=s), which the docs give in place of the Trainer's label_smoothing_factor, smooths each
    token's labels: unmixed, torch's smoothed token loss; mixed, each side's smoothed loss by its weight (it was
    silently dropped for token classifiers)."""
    base = tagger(C)
    ids, mask, labels = tagged_batch()
    model = multimix.wrap(base, HiddenMix(1.0, layers=(1,)), label_smoothing=smoothing, seed=0).train()
    model.mixer.draw = lambda batch_size: fixed_plan([1, 2, 3, 0], 1.0)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    want = torch.nn.functional.cross_entropy(out.logits.reshape(-1, C), labels.reshape(-1), label_smoothing=smoothing)
    torch.testing.assert_close(out.loss, want)
    plan = fixed_plan([1, 2, 3, 0], [0.7, 0.4, 0.55, 0.2])
    model.mixer.draw = lambda batch_size: plan
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    log_probs = torch.log_softmax(out.logits.detach().double(), -1)
    num = den = 0.0
    for i, j in enumerate(plan.index.tolist()):
        for weight, row in ((float(plan.lam[i]), labels[i]), (1.0 - float(plan.lam[i]), labels[j])):
            for t, y in enumerate(row.tolist()):
                if y != -100:
                    smoothed = (1 - smoothing) * float(log_probs[i, t, y]) + smoothing * float(log_probs[i, t].mean())
                    num, den = num - weight * smoothed, den + weight
    assert float(out.loss) == pytest.approx(num / den, rel=1e-5)


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (torch.zeros(4, 7), TypeError, r"token labels must be an integer tensor \(B, T\), got torch.float32"),
        (torch.zeros(4, 6, dtype=torch.long), ValueError, r"one label per token, shape \(4, 7\), got \(4, 6\)"),
        (torch.full((4, 7), 9), ValueError, r"token labels hold 9, outside \[0, num_classes=5\) and not ignore_index"),
    ],
)
def test_bad_token_labels_are_refused_before_drawing(labels, error, match):
    model = multimix.wrap(tagger(C), HiddenMix(1.0, layers=(1,)), seed=0).train()
    ids, mask, _ = tagged_batch()
    state = model.mixer.generator.get_state()
    with pytest.raises(error, match=match):
        model(input_ids=ids, attention_mask=mask, labels=labels)
    assert torch.equal(model.mixer.generator.get_state(), state)


def test_a_token_classifier_mixes_hidden_states_only():
    from multimix.image import Mixup

    with pytest.raises(TypeError, match=r"labels every token: mix its hidden states with HiddenMix"):
        multimix.wrap(tagger(C), Mixup(1.0))
    with pytest.raises(ValueError, match=r"labels every token and has no pooled representation"):
        multimix.wrap(tagger(C), HiddenMix(1.0, layers=("pooled",)))


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_a_decoder_token_classifiers_head_sees_every_tokens_own_mixed_state(name):
    """Its head is named .score like a decoder sequence classifier's, but it labels every token: no last-token
    pooling may move any position's state (it did: each mixed row's last token took another position's)."""
    from tiny_models import decoder_tagger

    base = decoder_tagger(name, C)
    ids, mask, labels = tagged_batch()
    ids = ids.masked_fill(mask == 0, 0)  # pad_token_id 0 at the padding
    model = multimix.wrap(base, HiddenMix(1.0, layers=(1,)), seed=0).train()
    assert not model.pools_last_token
    model.mixer.draw = lambda batch_size: fixed_plan([1, 2, 3, 0], [0.7, 0.4, 0.55, 0.2])
    seen = {}
    norm = base.model.norm.register_forward_hook(lambda m, a, out: seen.__setitem__("final", out))
    head = base.score.register_forward_pre_hook(lambda m, a: seen.__setitem__("head", a[0]))
    try:
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    finally:
        norm.remove(), head.remove()
    assert torch.equal(seen["head"], seen["final"])  # dropout is off: the head reads the final states as they are
    want = reference_loss(out.logits.detach(), labels, torch.tensor([1, 2, 3, 0]), torch.tensor([0.7, 0.4, 0.55, 0.2]))
    assert float(out.loss) == pytest.approx(want, rel=1e-5)
