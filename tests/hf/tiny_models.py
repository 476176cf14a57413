"""Tiny random-initialised Hugging Face models shared by the tests (seeded, dropout off): one place per config."""

from __future__ import annotations

import warnings

import torch
import transformers

ENCODER_COMMON = dict(
    hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, vocab_size=100,
    max_position_embeddings=64, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)  # fmt: skip
ENCODERS = {
    "bert": {},
    "roberta": {},
    "xlm-roberta": {},
    "electra": dict(embedding_size=32),
    "distilbert": dict(dim=32, n_layers=3, n_heads=4, hidden_dim=64, dropout=0.0, attention_dropout=0.0,
                       seq_classif_dropout=0.0),
    "deberta-v2": dict(pooler_dropout=0.0),
    "modernbert": dict(global_attn_every_n_layers=2, local_attention=4, pad_token_id=0, classifier_pooling="mean",
                       embedding_dropout=0.0, mlp_dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0),
}  # fmt: skip
ENCODER_CASES = [(name, impl) for name in ENCODERS for impl in ("eager", "sdpa")
                 if (name, impl) != ("deberta-v2", "sdpa")]  # fmt: skip

_DECODER_SMALL = dict(vocab_size=100, num_labels=3, pad_token_id=0)
DECODERS = {
    "gpt2": lambda: transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=32, resid_pdrop=0.0,
                                            embd_pdrop=0.0, attn_pdrop=0.0, **_DECODER_SMALL),
    "llama": lambda: transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2, **_DECODER_SMALL),
    "qwen2": lambda: transformers.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2, **_DECODER_SMALL),
}  # fmt: skip

AST = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, patch_size=16,
           frequency_stride=16, time_stride=16, max_length=48, num_mel_bins=32, num_labels=3, hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0)  # fmt: skip
VIT = dict(image_size=8, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=64, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip


def _quiet(build):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build()


def encoder(name: str = "bert", impl: str = "eager", **overrides) -> torch.nn.Module:
    """A sequence classifier of encoder ``name`` (3 layers of width 32, 3 labels)."""
    config = transformers.AutoConfig.for_model(name, **{**ENCODER_COMMON, **ENCODERS[name], **overrides})
    return _quiet(lambda: transformers.AutoModelForSequenceClassification.from_config(config, attn_implementation=impl))


def decoder(name: str, impl: str = "eager") -> torch.nn.Module:
    """A sequence classifier of decoder ``name`` (2 layers, pad_token_id 0: it pools at the last token)."""
    return _quiet(lambda: transformers.AutoModelForSequenceClassification.from_config(DECODERS[name](),
                                                                                     attn_implementation=impl))


def vit(**overrides) -> torch.nn.Module:
    """An image classifier on 8 x 8 pixels (patches of 4, 3 labels)."""
    return _quiet(lambda: transformers.ViTForImageClassification(transformers.ViTConfig(**{**VIT, **overrides})))


def ast(**overrides) -> torch.nn.Module:
    """An audio spectrogram transformer on 32 mel bins x 48 frames (patches of 16, 3 labels)."""
    config = transformers.ASTConfig(**{**AST, **overrides})
    return _quiet(lambda: transformers.ASTForAudioClassification(config))


def tagger(num_labels: int = 5) -> torch.nn.Module:
    """A BERT token classifier (2 layers, ``num_labels`` tags)."""
    config = transformers.BertConfig(**{**ENCODER_COMMON, "num_hidden_layers": 2, "num_labels": num_labels})
    return _quiet(lambda: transformers.BertForTokenClassification(config))


def decoder_tagger(name: str = "llama", num_labels: int = 5) -> torch.nn.Module:
    """A token classifier of decoder ``name`` (2 layers, pad_token_id 0; its per-token head is ``.score``)."""
    config = DECODERS[name]()
    config.num_labels, config.classifier_dropout = num_labels, 0.0
    return _quiet(lambda: transformers.AutoModelForTokenClassification.from_config(config))
