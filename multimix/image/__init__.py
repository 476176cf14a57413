"""Image adapters on ``(B, C, H, W)`` (or video ``(B, C, T, H, W)``): one module each.

``Mixup`` (Zhang et al., ICLR 2018) blends whole images; ``CutMix`` (Yun et al., ICCV
2019) pastes a box of the partner; ``ResizeMix`` (Qin et al., 2020) pastes the whole
partner resized into the box; ``FMix`` (Harris et al., 2020) pastes a Fourier-noise
region; ``SaliencyMix`` (Uddin et al., ICLR 2021) centres the box on the partner's
saliency peak. All write into the batch by default (``inplace=False`` for a new tensor).
"""

from multimix.image.boxes import sample_boxes
from multimix.image.fmix import FMix
from multimix.image.mixup_cutmix import CutMix, Mixup
from multimix.image.resizemix import ResizeMix
from multimix.image.saliencymix import SaliencyMix

__all__ = ["CutMix", "FMix", "Mixup", "ResizeMix", "SaliencyMix", "sample_boxes"]
