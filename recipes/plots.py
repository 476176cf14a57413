"""PNG plots of a run: learning curves, reliability diagram, methods side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator

from multimix.metrics import plot_reliability_diagram, reliability_diagram

__all__ = ["learning_curves", "reliability", "reliability_side_by_side"]

_PANELS = (("train_loss", "train loss (mixed batches)"), ("test_accuracy", "test accuracy"),
           ("test_loss", "test loss"), ("test_ece", "test ECE"))  # fmt: skip


def learning_curves(histories: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """One panel per metric, one line per method."""
    fig, axes = plt.subplots(1, len(_PANELS), figsize=(4 * len(_PANELS), 3.2))
    for ax, (key, title) in zip(axes, _PANELS, strict=True):
        for method, history in histories.items():
            ax.plot([h["epoch"] for h in history], [h[key] for h in history], marker="o", label=method)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability(logits: torch.Tensor, labels: torch.Tensor, path: Path, method: str) -> None:
    """The reliability diagram of one model on the test set."""
    reliability_side_by_side({method: (logits, labels)}, path)


def reliability_side_by_side(results: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path) -> None:
    """Reliability diagrams of several methods, one panel each."""
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 4), squeeze=False)
    for ax, (method, (logits, labels)) in zip(axes[0], results.items(), strict=True):
        plot_reliability_diagram(reliability_diagram(logits, labels), ax=ax, label=method)
        ax.set_title(method)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
