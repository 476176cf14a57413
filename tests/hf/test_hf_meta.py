"""multimix.wrap reads nothing back from the device: a train step on meta tensors (no values exist) runs."""

import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")
import multimix  # noqa: E402
from multimix.image import Mixup  # noqa: E402
from multimix.text import HiddenMix  # noqa: E402

BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=50,
            max_position_embeddings=32, num_labels=3)  # fmt: skip
VIT = dict(image_size=8, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=64, num_labels=3)  # fmt: skip
GPT2 = dict(n_embd=32, n_layer=2, n_head=4, n_positions=32, vocab_size=50, num_labels=3, pad_token_id=0)


def built(cls, config, device):
    # eager attention: transformers' own sdpa mask builder reads the mask's values (a sync of the base model)
    config._attn_implementation = "eager"
    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        return cls(config)


def text_inputs(device, mask=True):
    inputs = dict(input_ids=torch.zeros(4, 7, dtype=torch.long, device=device),
                  labels=torch.zeros(4, dtype=torch.long, device=device))  # fmt: skip
    if mask:
        inputs["attention_mask"] = torch.ones(4, 7, dtype=torch.long, device=device)
    return inputs


CASES = {
    "bert": (lambda d: built(transformers.BertForSequenceClassification, transformers.BertConfig(**BERT), d),
             # transformers' bidirectional mask builder reads the 2-D mask (the plain BERT syncs there too):
             # BERT runs without one, GPT-2 below carries the mask through the union
             lambda: HiddenMix(1.0, layers=(1, 2)), lambda d: text_inputs(d, mask=d != "meta")),
    "gpt2": (lambda d: built(transformers.GPT2ForSequenceClassification, transformers.GPT2Config(**GPT2), d),
             lambda: HiddenMix(1.0, layers=(1, "pooled")), text_inputs),
    "vit": (lambda d: built(transformers.ViTForImageClassification, transformers.ViTConfig(**VIT), d),
            lambda: [Mixup(0.8), Mixup(0.2)],
            lambda d: dict(pixel_values=torch.zeros(4, 3, 8, 8, device=d), labels=torch.zeros(4, dtype=torch.long,
                                                                                              device=d))),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_train_step_on_meta_tensors(name):
    make, adapter, inputs = CASES[name]
    model = multimix.wrap(make("meta"), adapter(), seed=0).train()
    for _ in range(3):  # several plans and mixing points
        out = model(**inputs("meta"))
        assert out.loss.device.type == "meta" and out.logits.shape == (4, 3)
        out.loss.backward()


def cuda_syncs(step) -> int:
    """How many synchronising CUDA operations ``step()`` makes (torch's sync debug mode, one warning each)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing CUDA operation" in str(w.message) for w in caught)


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(CASES))
def test_train_step_adds_no_sync_on_cuda(name):
    """The wrapped forward syncs exactly as often as the base model's own (transformers' mask code syncs)."""
    make, adapter, inputs = CASES[name]
    torch.manual_seed(0)
    base = make("cuda").train()
    model = multimix.wrap(make("cuda"), adapter(), seed=0).train()
    batch = inputs("cuda")
    base(**batch).loss.backward()  # warm-up: lazy initialisation may sync once
    model(**batch).loss.backward()
    for _ in range(3):  # several plans and mixing points
        assert cuda_syncs(lambda: model(**batch)) == cuda_syncs(lambda: base(**batch))
