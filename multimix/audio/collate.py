"""``DataLoader`` collate functions that mix in the worker.

:meth:`multimix.Mixer.collate` stacks fixed-size samples; :class:`PadCollate` pads
variable-length audio first and hands the lengths to the mixer. Adapters never
import the Mixer; this module joins the two.
"""

from __future__ import annotations

import torch

from multimix.mixer import MixedBatch, Mixer

__all__ = ["PadCollate"]


class PadCollate:
    """A ``DataLoader`` ``collate_fn`` for variable-length audio: pad, then mix with lengths.

    Samples are ``(signal, label)`` with signals ``(T,)``, ``(C, T)`` or spectrograms
    ``(F, T)``/``(C, F, T)`` of varying T; they are right-padded with ``pad_value`` to
    the longest, and the mixer gets their lengths. Mixing runs in the worker, and
    each worker draws its own plans (:meth:`Mixer.seed_worker`).

    Example:
        >>> import multimix
        >>> from multimix.audio import WaveMix
        >>> collate = PadCollate(multimix.Mixer(WaveMix(1.0), num_classes=2, seed=0))
        >>> out = collate([(torch.randn(5), 0), (torch.randn(3), 1)])
        >>> out.inputs.shape, out.lengths.shape   # padded to the longest; mixed lengths
        (torch.Size([2, 5]), torch.Size([2]))
    """

    def __init__(self, mixer: Mixer, *, pad_value: float = 0.0) -> None:
        if not isinstance(mixer, Mixer):
            raise TypeError(f"mixer must be a multimix.Mixer, got {type(mixer).__name__}")
        self.mixer = mixer
        self.pad_value = float(pad_value)

    def __call__(self, samples: list[tuple[torch.Tensor, object]]) -> MixedBatch:
        if not samples:
            raise ValueError("samples is empty; a batch needs at least one (signal, label) pair")
        signals = [signal for signal, _ in samples]
        if any(not isinstance(s, torch.Tensor) or s.shape[:-1] != signals[0].shape[:-1] for s in signals):
            raise ValueError("signals must be tensors that differ only in their last (time) dimension")
        longest = max(s.shape[-1] for s in signals)
        batch = signals[0].new_full((len(signals), *signals[0].shape[:-1], longest), self.pad_value)
        for row, signal in zip(batch, signals, strict=True):
            row[..., : signal.shape[-1]].copy_(signal)
        lengths = torch.tensor([s.shape[-1] for s in signals])
        labels = torch.utils.data.default_collate([label for _, label in samples])
        self.mixer.seed_worker()
        return self.mixer(batch, labels, lengths=lengths)
