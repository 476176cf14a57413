"""``multimix.hf.MixupCallback``: the Trainer callback that drives a wrapped model's mixer.

It applies the mixer's schedule each epoch and checkpoints its state beside the model,
so a resumed run draws the plans an uninterrupted run would.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from multimix.hf.wrapper import MixupModel
from multimix.mixer import Mixer
from multimix.seeding import rank_seed

__all__ = ["MIXER_STATE_NAME", "MixupCallback"]

MIXER_STATE_NAME = "multimix_mixer.pt"


def _wrapped_in(model: nn.Module | None) -> MixupModel:
    """The :func:`wrap` model inside the Trainer's model (itself, or under a PEFT model)."""
    found = next((m for m in model.modules() if isinstance(m, MixupModel)), None) if model is not None else None
    if found is None:
        raise ValueError(
            f"MixupCallback found no model made by multimix.wrap in the Trainer (its model is "
            f"{type(model).__name__}); pass Trainer(model=multimix.wrap(model, adapter), ...)"
        )
    return found


class MixupCallback(TrainerCallback):
    """Drive the mixer of a :func:`wrap` model under the ``transformers.Trainer``.

    - ``on_epoch_begin``: ``mixer.set_epoch(epoch)``, so ``off_epoch`` and
      ``alpha_schedule`` apply (the Trainer knows nothing of them).
    - ``on_save``: writes the mixer's state (plan generator, schedule) into the checkpoint
      folder as ``multimix_mixer.pt`` (``multimix_mixer-rank{r}.pt`` for process r > 0).
    - ``on_train_begin``: on ``trainer.train(resume_from_checkpoint=...)`` reads it back,
      so the resumed run draws the plans the uninterrupted run would (resumed on more
      processes, a new rank takes the saved schedule with a fresh stream, and a warning
      says so; on fewer, the states of the ranks gone are unused); on a fresh start,
      processes r > 0 reseed their generator from the mixer's seed and r, so ranks draw
      different plans (reproducibly).
    - ``on_init_end``: refuses ``TrainingArguments(label_smoothing_factor=...)`` (the
      Trainer would take the labels away from the model); pass
      ``wrap(..., label_smoothing=...)``.

    The checkpoint folder is ``args.output_dir/checkpoint-{step}``; when resuming from a
    folder elsewhere, set ``TrainingArguments(resume_from_checkpoint=folder)`` too.

    Example:
        >>> import torch, transformers, multimix
        >>> from multimix.image import Mixup
        >>> from multimix.hf import MixupCallback
        >>> config = transformers.ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1,
        ...                                 num_attention_heads=2, intermediate_size=32, num_labels=3)
        >>> model = multimix.wrap(transformers.ViTForImageClassification(config), Mixup(0.8), seed=0, off_epoch=1)
        >>> data = [{"pixel_values": torch.rand(3, 8, 8), "labels": torch.tensor(i % 3)} for i in range(8)]
        >>> args = transformers.TrainingArguments("/tmp/multimix-doctest", num_train_epochs=2, save_strategy="no",
        ...                                       per_device_train_batch_size=4, report_to=[], use_cpu=True,
        ...                                       disable_tqdm=True)
        >>> trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[MixupCallback()])
        >>> trainer.remove_callback(transformers.PrinterCallback)  # quiet for the doctest
        >>> _ = trainer.train()
        >>> model.mixer.enabled  # off_epoch=1: the second epoch trained without mixing
        False
    """

    file_name = "multimix_mixer.pt"

    def __init__(self, model: nn.Module | None = None) -> None:
        if model is not None:
            _wrapped_in(model)
        self.model = model

    def _mixer(self, model: nn.Module | None) -> Mixer:
        return _wrapped_in(self.model if self.model is not None else model).mixer

    def _file(self, folder: str, rank: int) -> str:
        stem, suffix = os.path.splitext(self.file_name)
        return os.path.join(folder, self.file_name if rank == 0 else f"{stem}-rank{rank}{suffix}")

    def on_init_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._mixer(model)
        if args.label_smoothing_factor:
            raise ValueError(
                f"TrainingArguments(label_smoothing_factor={args.label_smoothing_factor}) makes the Trainer take the "
                "labels away from a model made by multimix.wrap, which computes the mixed loss itself; set "
                "label_smoothing_factor=0 and pass wrap(..., label_smoothing=...) instead"
            )

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        mixer, rank = self._mixer(model), args.process_index
        if state.global_step > 0:  # the Trainer restored its state from a checkpoint
            folder = args.resume_from_checkpoint
            if not isinstance(folder, str) or not os.path.isdir(folder):
                folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            path, first = self._file(folder, rank), self._file(folder, 0)
            if not os.path.isfile(first):
                raise ValueError(
                    f"resuming at step {state.global_step}, but {first} holds no mixer state; resume from a checkpoint "
                    "saved with MixupCallback, or name its folder in TrainingArguments(resume_from_checkpoint=...)"
                )
            if os.path.isfile(path):
                mixer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            else:  # a rank the saved run did not have: the run's schedule, its own stream (as RankStates does)
                mixer.load_state_dict(torch.load(first, map_location="cpu", weights_only=True))
                mixer.generator.manual_seed(rank_seed(mixer.seed, rank))
                warnings.warn(
                    f"{folder} holds no mixer state of rank {rank} (it was saved on fewer processes): rank {rank} "
                    f"takes the saved schedule and a fresh stream from rank_seed(mixer.seed, {rank})",
                    stacklevel=2,
                )
        elif rank > 0:
            mixer.generator.manual_seed(rank_seed(mixer.seed, rank))

    def on_epoch_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._mixer(model).set_epoch(math.floor((state.epoch or 0.0) + 1e-6))

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        os.makedirs(folder, exist_ok=True)
        torch.save(self._mixer(model).state_dict(), self._file(folder, args.process_index))
