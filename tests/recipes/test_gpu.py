"""Each recipe a few steps on CUDA, then resumed on CUDA (skipped without a GPU)."""

import json

import pytest
import torch

from multimix.cli import main

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize(("recipe", "method"), [("image", "mixup"), ("speech", "specmix"), ("text", "hidden")])
def test_recipe_trains_and_resumes_on_cuda(tmp_path, recipe, method):
    argv = ["run", recipe, "--quick", "--method", method, "--device", "cuda", "--out", str(tmp_path),
            "--set", "progress=false", "--set", "train_limit=256", "--set", "test_limit=128",
            "--batch-size", "32"]  # fmt: skip
    assert main(argv) == 0
    assert main([*argv, "--resume", "--epochs", "2"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["device"] == "cuda:0" and [h["epoch"] for h in metrics["epochs"]] == [1, 2]
    assert 0 <= metrics["final"]["test_accuracy"] <= 1 and metrics["final"]["train_samples_per_second"] > 0
