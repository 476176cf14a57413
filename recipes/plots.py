"""PNG plots of runs: learning curves, reliability before and after temperature scaling, the spread over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator

from multimix.metrics import plot_reliability_diagram, reliability_diagram

__all__ = ["final_spread", "learning_curves", "reliability"]

# (key, title, the calibrated key drawn dashed beside it)
_PANELS = (("train_loss", "train loss (mixed batches)", None), ("test_accuracy", "test accuracy", None),
           ("test_loss", "test NLL (dashed: after T)", "test_loss_calibrated"),
           ("test_ece", "test ECE (dashed: after T)", "test_ece_calibrated"),
           ("temperature", "temperature T (validation)", None))  # fmt: skip
SPREAD = (("test_accuracy", "test accuracy"), ("test_loss", "NLL"), ("test_loss_calibrated", "NLL after T"),
          ("test_ece", "ECE"), ("test_ece_calibrated", "ECE after T"), ("temperature", "T"))  # fmt: skip


def learning_curves(runs: dict[str, list[list[dict[str, Any]]]], path: Path) -> None:
    """One panel per metric, one colour per method: the mean over its runs (seeds), shaded from min to max."""
    fig, axes = plt.subplots(1, len(_PANELS), figsize=(3.6 * len(_PANELS), 3.2))
    for ax, (key, title, calibrated) in zip(axes, _PANELS, strict=True):
        for k, (method, histories) in enumerate(runs.items()):
            for name, style in ((key, "-"), (calibrated, "--")):
                if name is None or any(name not in h for run in histories for h in run):
                    continue
                epochs = min(len(run) for run in histories)
                values = torch.tensor([[h[name] for h in run[:epochs]] for run in histories], dtype=torch.float64)
                x = list(range(1, epochs + 1))
                label = method if style == "-" else None
                ax.plot(x, values.mean(0), style, marker="o", ms=3, color=f"C{k}", label=label)
                if len(histories) > 1:
                    ax.fill_between(x, values.min(0).values, values.max(0).values, color=f"C{k}", alpha=0.15)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability(results: dict[str, tuple[torch.Tensor, torch.Tensor, float]], path: Path) -> None:
    """Reliability diagrams, one column per method: its test logits (top) and the logits / T (bottom)."""
    fig, axes = plt.subplots(2, len(results), figsize=(3.8 * len(results), 7.2), squeeze=False)
    for k, (method, (logits, labels, temperature)) in enumerate(results.items()):
        after = f"{method}, logits / T (T = {temperature:.2f})"
        for row, (scaled, title) in enumerate(((logits, method), (logits / temperature, after))):
            plot_reliability_diagram(reliability_diagram(scaled, labels), ax=axes[row][k], label=title)
            axes[row][k].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def final_spread(finals: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Each final metric, one column of points per method (one per seed) with its mean and sample std."""
    fig, axes = plt.subplots(1, len(SPREAD), figsize=(2.6 * len(SPREAD), 3.0))
    for ax, (key, title) in zip(axes, SPREAD, strict=True):
        for k, rows in enumerate(finals.values()):
            values = torch.tensor([r[key] for r in rows if key in r], dtype=torch.float64)
            if len(values) == 0:
                continue
            ax.plot([k] * len(values), values, "o", color=f"C{k}", alpha=0.6, ms=4)
            std = float(values.std()) if len(values) > 1 else 0.0
            ax.errorbar([k + 0.2], [float(values.mean())], yerr=[std], fmt="s", color=f"C{k}", capsize=3)
        ax.set_xticks(range(len(finals)), list(finals), rotation=30, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
