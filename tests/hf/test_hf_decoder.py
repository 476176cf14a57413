"""multimix.wrap on decoder-only classifiers (GPT-2, Llama, Qwen2): causal masks, padding, last-token pooling, PEFT."""


import pytest
import torch
from conftest import fixed_plan, with_plan

transformers = pytest.importorskip("transformers")
from tiny_models import DECODERS  # noqa: E402
from tiny_models import decoder as tiny  # noqa: E402

import multimix  # noqa: E402
from multimix.hf.hooks import last_tokens  # noqa: E402
from multimix.text import HiddenMix  # noqa: E402


def batch():
    ids = torch.randint(1, 100, (4, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(4, 8, dtype=torch.long)
    for row, length in ((0, 3), (2, 6), (3, 5)):  # right padding; sample 0 is short, its partner 1 full
        ids[row, length:] = 0
        mask[row, length:] = 0
    return ids, mask, torch.tensor([0, 1, 2, 1])


CASES = [(name, impl) for name in DECODERS for impl in ("eager", "sdpa")]


@pytest.mark.parametrize(("name", "impl"), CASES)
@pytest.mark.parametrize("point", [0, 1, 2, "pooled"])
def test_lam_one_is_the_base_model_and_lam_zero_takes_the_partner(name, impl, point):
    base = tiny(name, impl).eval()
    ids, mask, labels = batch()
    expected = base(input_ids=ids, attention_mask=mask).logits
    model = multimix.wrap(base, HiddenMix(1.0, layers=(point,))).train()
    index = [1, 0, 3, 2]
    out = with_plan(model, fixed_plan(index, 1.0))(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=0)
    # sample 0 (3 tokens) takes all of its partner (8 tokens): the union pools at the partner's last token
    out = with_plan(model, fixed_plan(index, [0.0, 1.0, 1.0, 1.0]))(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits[0], expected[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits[1:], expected[1:], atol=1e-5, rtol=1e-5)
    multimix.unwrap(model)
    assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in base.modules()) == 0


def test_last_tokens_is_where_hf_pools():
    ids, _, _ = batch()
    assert last_tokens(ids, 0).tolist() == [2, 7, 5, 4]
    left = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 1]])
    assert last_tokens(left, 0).tolist() == [3, 3]


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_gpt2_hidden_mix_equals_running_the_layers_by_hand(impl, k):
    base = tiny("gpt2", impl).eval()
    ids, mask, labels = batch()
    plan = fixed_plan([1, 0, 3, 2], [0.4, 0.7, 0.2, 0.9])
    layers = base.transformer.h
    seen = {}

    def capture(module, args, kwargs):  # GPT-2 hands its blocks (h, cache, mask, ...) positionally
        seen["h"], seen["call"] = args[0], (args[1:], kwargs)

    handle = layers[0].register_forward_pre_hook(capture, with_kwargs=True)
    union = torch.where(plan.mixed[:, None], mask | mask[plan.index], mask)
    base(input_ids=ids, attention_mask=union, use_cache=False)  # no cache shared by the hand-run layers
    union_call = seen["call"]
    base(input_ids=ids, attention_mask=mask, use_cache=False)
    handle.remove()
    h, own_call = seen["h"], seen["call"]
    lam = plan.lam.float().view(-1, 1, 1)
    for j, layer in enumerate(layers):
        if j == k:
            h = lam * h + (1 - lam) * h[plan.index]
        rest, kwargs = own_call if j < k else union_call
        out = layer(h, *rest, **kwargs)
        h = out[0] if isinstance(out, tuple) else out
    if k == len(layers):
        h = lam * h + (1 - lam) * h[plan.index]
    logits = base.score(base.transformer.ln_f(h))
    own = last_tokens(ids, 0)
    pooled_at = torch.maximum(own, own[plan.index])  # the union of the two sequences ends at the later token
    expected = logits[torch.arange(4), pooled_at]
    model = with_plan(multimix.wrap(base, HiddenMix(1.0, layers=(k,))).train(), plan)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)
    targets = multimix.mix_targets(torch.eye(3)[labels], plan.index, plan.lam)
    torch.testing.assert_close(out.loss, multimix.soft_cross_entropy(out.logits, targets))


def test_gpt2_pooled_mixing_mixes_each_rows_own_last_token():
    base = tiny("gpt2").eval()
    ids, mask, labels = batch()
    plan = fixed_plan([1, 0, 3, 2], 0.25)
    h = base.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
    pooled = h[torch.arange(4), last_tokens(ids, 0)]
    expected = base.score(0.25 * pooled + 0.75 * pooled[plan.index])
    model = with_plan(multimix.wrap(base, HiddenMix(1.0, layers="pooled")).train(), plan)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layers", ["pooled", (1, "pooled")])
def test_pooled_mixing_without_input_ids_is_refused_before_anything_is_drawn(layers):
    """The last token is found from input_ids: without them the call is refused at every step (not only on the
    steps that draw 'pooled'), and the refused call leaves the generator where it was."""
    base = tiny("gpt2")
    ids, mask, labels = batch()
    model = multimix.wrap(base, HiddenMix(1.0, layers=layers), seed=0).train()
    embeds = base.transformer.wte(ids).detach()
    state = model.mixer.generator.get_state()
    for _ in range(3):
        with pytest.raises(ValueError, match="pools at each row's last token, found from input_ids"):
            model(inputs_embeds=embeds, attention_mask=mask, labels=labels)
    assert torch.equal(model.mixer.generator.get_state(), state)


peft = pytest.importorskip("peft")


def lora(model):
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    return peft.get_peft_model(model, config)


@pytest.mark.parametrize("order", ["wrap(peft)", "peft(wrap)"])
def test_peft_lora_in_either_order(order):
    ids, mask, labels = batch()
    base = tiny("llama")
    if order == "wrap(peft)":
        model = multimix.wrap(lora(base), HiddenMix(1.0, layers=(1,)), seed=0)
    else:
        model = lora(multimix.wrap(base, HiddenMix(1.0, layers=(1,)), seed=0))
    wrapped = next(m for m in model.modules() if isinstance(m, multimix.MixupModel))
    model.eval()
    expected = model(input_ids=ids, attention_mask=mask).logits
    model.train()
    out = with_plan(wrapped, fixed_plan([1, 0, 3, 2], 1.0))(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=0)
    out = with_plan(wrapped, fixed_plan([1, 0, 3, 2], [0.0, 1.0, 1.0, 1.0]))(
        input_ids=ids, attention_mask=mask, labels=labels
    )
    torch.testing.assert_close(out.logits[0], expected[1], atol=1e-5, rtol=1e-5)
    out.loss.backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "score" in n for n in trainable)
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
