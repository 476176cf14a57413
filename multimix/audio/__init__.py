"""Audio adapters: spectrogram mixup in the right domain, labelled band CutMix, waveform mixing.

``SpecMixup`` and ``SpecMix`` mix spectrograms ``(B, F, T)`` (or ``(B, C, F, T)``),
``WaveMix`` waveforms with valid lengths; ``SpecAugment`` masks (label-preserving, not a
mixing adapter) and ``PadCollate`` pads variable-length clips for a ``DataLoader``.
"""

from multimix.audio.collate import PadCollate
from multimix.audio.specaugment import Masks, SpecAugment
from multimix.audio.specmix import SpecMix
from multimix.audio.spectrogram import SpecMixup, logaddexp_mix
from multimix.audio.wave import WaveMix

__all__ = ["Masks", "PadCollate", "SpecAugment", "SpecMix", "SpecMixup", "WaveMix", "logaddexp_mix"]
