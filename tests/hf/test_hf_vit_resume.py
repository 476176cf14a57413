"""The ViT resume workaround docs/integrations.md gives for a transformers defect (#43701, #40187).

transformers 5's Trainer reloads a checkpoint with ``load_state_dict``, without the key conversion of
``from_pretrained``, so a ViT resumed the usual way keeps its fresh weights. Built from the checkpoint
with ``from_pretrained`` first, the wrapped ViT resumes exactly: the same losses as the uninterrupted run.
"""

import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_models import vit  # noqa: E402

import multimix  # noqa: E402
from multimix.hf import MixupCallback  # noqa: E402
from multimix.image import Mixup  # noqa: E402


def run(model, out, resume=None) -> list[float]:
    g = torch.Generator().manual_seed(1)
    data = [{"pixel_values": torch.randn(3, 8, 8, generator=g), "labels": torch.tensor(i % 3)} for i in range(16)]
    args = transformers.TrainingArguments(str(out), per_device_train_batch_size=4, max_steps=6, save_steps=3,
                                          learning_rate=1e-3, logging_steps=1, report_to=[], use_cpu=True, seed=0,
                                          data_seed=0, disable_tqdm=True)  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[MixupCallback()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(resume_from_checkpoint=resume)
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


def test_a_vit_built_from_its_checkpoint_resumes_exactly(tmp_path):
    full = run(multimix.wrap(vit(), Mixup(0.8), seed=5), tmp_path)
    checkpoint = str(tmp_path / "checkpoint-3")
    base = transformers.ViTForImageClassification.from_pretrained(checkpoint)
    assert run(multimix.wrap(base, Mixup(0.8), seed=99), tmp_path, resume=checkpoint)[-3:] == full[-3:]
    usual = run(multimix.wrap(vit(), Mixup(0.8), seed=99), tmp_path, resume=checkpoint)[-3:]
    assert usual != full[-3:], "the usual resume restores a ViT now: update docs/integrations.md and this test"
