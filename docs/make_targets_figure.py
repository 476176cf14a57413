"""Draw docs/targets.png: two images and their label maps, mixed by each image adapter with one plan.

Each row is one adapter: the mixed pixels beside the mixed label map the Mixer returns
(the integer map for a region, the soft map of a blend drawn as the mix of its classes'
colours). Grey marks ``ignore_index``. Run from the repository root:

    python docs/make_targets_figure.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import torch

import multimix
from multimix.image import CutMix, FMix, Mixup, ResizeMix

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SIZE, IGNORE = 96, 255
PALETTE = torch.tensor([[0.12, 0.12, 0.16], [0.90, 0.30, 0.25], [0.25, 0.50, 0.90], [0.35, 0.75, 0.35]])
NAMES = ["background", "disc", "square", "stripe"]


def scene() -> tuple[torch.Tensor, torch.Tensor]:
    """Two synthetic images ``(2, 3, S, S)`` and their label maps ``(2, S, S)`` (a border left unlabelled)."""
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    maps = torch.zeros(2, SIZE, SIZE, dtype=torch.long)
    maps[0][(rows - 40) ** 2 + (cols - 52) ** 2 < 26**2] = 1
    maps[1][(rows > 20) & (rows < 70) & (cols > 14) & (cols < 56)] = 2
    maps[1][(cols - rows).abs() < 9] = 3
    shade = 0.75 + 0.25 * (rows + cols).float() / (2 * SIZE)  # a gradient, so the pixels differ from the map
    images = PALETTE[maps].permute(0, 3, 1, 2) * shade
    maps[:, :4], maps[:, -4:] = IGNORE, IGNORE
    return images, maps


def colour(targets: torch.Tensor) -> torch.Tensor:
    """``(S, S, 3)`` colours of an integer map (grey where ignored) or a soft map ``(C, S, S)``."""
    if targets.dtype == torch.long:
        out = PALETTE[targets.clamp(max=len(PALETTE) - 1)]
        out[targets == IGNORE] = 0.6
        return out
    weight = targets.sum(0, keepdim=True)
    mixed = torch.einsum("chw,ck->hwk", targets, PALETTE)
    return mixed + 0.6 * (1 - weight).permute(1, 2, 0)  # what no source labels shows grey


def main() -> None:
    images, maps = scene()
    adapters = {"CutMix": CutMix(1.0), "ResizeMix": ResizeMix(1.0), "FMix": FMix(1.0), "Mixup": Mixup(1.0)}
    fig, axes = plt.subplots(len(adapters) + 1, 2, figsize=(4.4, 2.2 * (len(adapters) + 1)))
    axes[0, 0].imshow(images[0].permute(1, 2, 0).clamp(0, 1))
    axes[0, 0].set_title("image (partner: image 2)", fontsize=8)
    axes[0, 1].imshow(colour(maps[0]))
    axes[0, 1].set_title("its label map", fontsize=8)
    for row, (name, adapter) in enumerate(adapters.items(), start=1):
        mixer = multimix.Mixer(adapter, num_classes=len(NAMES), ignore_index=IGNORE, seed=7)
        out = mixer(images.clone(), maps)
        axes[row, 0].imshow(out.inputs[0].permute(1, 2, 0).clamp(0, 1))
        axes[row, 0].set_title(f"{name}: mixed pixels (lam {float(out.lam[0]):.2f})", fontsize=8)
        axes[row, 1].imshow(colour(out.targets[0]))
        kind = "integer map" if out.targets.dtype == torch.long else "soft map"
        axes[row, 1].set_title(f"{name}: out.targets ({kind})", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    path = Path(__file__).resolve().parent / "targets.png"
    fig.savefig(path, dpi=110)
    print(path)


if __name__ == "__main__":
    main()
