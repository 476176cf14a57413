"""Hugging Face: the model wrapper behind ``multimix.wrap`` and the ``Trainer`` callback.

The only part of multimix that imports transformers. ``multimix.wrap(model, ...)`` lands
here for models with a ``config``; ``MixupCallback`` keeps the Trainer's epochs,
schedules and checkpoints in step with the mixer.
"""

from multimix.hf.callback import MIXER_STATE_NAME, MixupCallback
from multimix.hf.wrapper import MixupModel, wrap_model

__all__ = ["MIXER_STATE_NAME", "MixupCallback", "MixupModel", "wrap_model"]
