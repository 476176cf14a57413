"""PNG plots of runs: learning curves, reliability before and after temperature scaling, the spread over seeds.

Each plot has a ``*_figure`` function that returns the matplotlib figure (the tests measure
where its legends and labels land) and a function that writes it as a PNG. Legends sit in
the figure's own margin (constrained layout keeps them inside the image), epochs are
integer ticks at any run length, and every line style and marker is named in a legend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from multimix.metrics import plot_reliability_diagram, reliability_diagram

__all__ = ["final_spread", "final_spread_figure", "learning_curves", "learning_curves_figure", "reliability",
           "reliability_figure"]  # fmt: skip

DPI = 110
# (key, title, the calibrated key drawn beside it: dashed, open squares)
_PANELS = (("train_loss", "train loss (mixed batches)", None), ("test_accuracy", "test accuracy", None),
           ("test_loss", "test NLL", "test_loss_calibrated"), ("test_ece", "test ECE", "test_ece_calibrated"),
           ("temperature", "temperature T (validation)", None))  # fmt: skip
SPREAD = (("test_accuracy", "test accuracy"), ("test_loss", "NLL"), ("test_loss_calibrated", "NLL after T"),
          ("test_ece", "ECE"), ("test_ece_calibrated", "ECE after T"), ("temperature", "T"))  # fmt: skip
# the two styles of a learning curve: the model as trained, and its logits / T
_AS_TRAINED = {"linestyle": "-", "marker": "o", "ms": 4}
_AFTER_T = {"linestyle": "--", "marker": "s", "ms": 5, "markerfacecolor": "white"}


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def epoch_ticks(epochs: int, most: int = 8) -> list[int]:
    """Integer epoch ticks, at most ``most`` of them: every epoch, or every 2nd, 5th, 10th, 20th, 50th, ..."""
    step = 1
    while epochs / step > most:
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2  # 1, 2, 5, 10, 20, 50, ...
    return list(range(step, max(epochs, 1) + 1, step))


def learning_curves_figure(runs: dict[str, list[list[dict[str, Any]]]]) -> Figure:
    """One panel per metric, one colour per method: the mean over its runs (seeds), shaded from min to max."""
    fig, axes = plt.subplots(1, len(_PANELS), figsize=(3.4 * len(_PANELS), 3.4), dpi=DPI, layout="constrained")
    longest = 1
    calibrated_drawn = False
    for ax, (key, title, calibrated) in zip(axes, _PANELS, strict=True):
        for k, histories in enumerate(runs.values()):
            for name, style in ((key, _AS_TRAINED), (calibrated, _AFTER_T)):
                if name is None or any(name not in h for run in histories for h in run):
                    continue
                epochs = min(len(run) for run in histories)
                longest = max(longest, epochs)
                values = torch.tensor([[h[name] for h in run[:epochs]] for run in histories], dtype=torch.float64)
                # one epoch: the methods side by side, their ranges as bars (a band would have no width)
                dodge = 0.08 * (k - (len(runs) - 1) / 2) if epochs == 1 else 0.0
                x = [e + dodge for e in range(1, epochs + 1)]
                ax.plot(x, values.mean(0), color=f"C{k}", **style)
                calibrated_drawn |= style is _AFTER_T
                if len(histories) > 1 and epochs == 1:
                    ax.vlines(x, values.min(0).values, values.max(0).values, color=f"C{k}", alpha=0.15, lw=8)
                elif len(histories) > 1:
                    ax.fill_between(x, values.min(0).values, values.max(0).values, color=f"C{k}", alpha=0.15)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.set_xticks(epoch_ticks(longest))
        ax.set_xlim(0.5, longest + 0.5)
    seeds = max((len(histories) for histories in runs.values()), default=1)
    handles = [Line2D([], [], color=f"C{k}", **_AS_TRAINED, label=method) for k, method in enumerate(runs)]
    handles.append(Line2D([], [], color="0.35", **_AS_TRAINED, label="as trained"))
    if calibrated_drawn:
        handles.append(Line2D([], [], color="0.35", **_AFTER_T, label="after T (logits / T)"))
    if seeds > 1:
        handles.append(Patch(color="0.35", alpha=0.15, label=f"min to max over {seeds} seeds"))
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=9, frameon=False)
    return fig


def learning_curves(runs: dict[str, list[list[dict[str, Any]]]], path: Path) -> None:
    """:func:`learning_curves_figure` written to ``path``."""
    _save(learning_curves_figure(runs), path)


def reliability_figure(results: dict[str, tuple[torch.Tensor, torch.Tensor, float]], seed: int | None = None) -> Figure:
    """Reliability diagrams, one column per method: its test logits (top) and the logits / T (bottom).

    Args:
        results: per method, its test logits, labels and fitted temperature.
        seed: the seed of the runs shown (a comparison shows one run per method, not the mean over
            seeds); None says the first seed of each method.
    """
    fig, axes = plt.subplots(2, len(results), figsize=(3.6 * len(results), 7.4), dpi=DPI, squeeze=False,
                             layout="constrained")  # fmt: skip
    for k, (method, (logits, labels, temperature)) in enumerate(results.items()):
        rows = ((logits, "logits", f"{method}\nas trained"),
                (logits / temperature, "logits / T", f"{method}\nlogits / T (T = {temperature:.2f})"))  # fmt: skip
        for row, (scaled, label, title) in enumerate(rows):
            ax = axes[row][k]
            plot_reliability_diagram(reliability_diagram(scaled, labels), ax=ax, label=label)
            ax.legend(loc="upper left", fontsize=8)
            ax.set_title(title, fontsize=9)
    shown = f"seed {seed}" if seed is not None else "first seed of each method"
    fig.suptitle(f"test set, {shown}", fontsize=10)
    return fig


def reliability(
    results: dict[str, tuple[torch.Tensor, torch.Tensor, float]], path: Path, *, seed: int | None = None
) -> None:
    """:func:`reliability_figure` written to ``path``."""
    _save(reliability_figure(results, seed), path)


def final_spread_figure(finals: dict[str, list[dict[str, Any]]]) -> Figure:
    """Each final metric, one column of points per method (one per seed) with its mean and sample std."""
    fig, axes = plt.subplots(1, len(SPREAD), figsize=(2.6 * len(SPREAD), 3.4), dpi=DPI, layout="constrained")
    for ax, (key, title) in zip(axes, SPREAD, strict=True):
        for k, rows in enumerate(finals.values()):
            values = torch.tensor([r[key] for r in rows if key in r], dtype=torch.float64)
            if len(values) == 0:
                continue
            ax.plot([k] * len(values), values, "o", color=f"C{k}", alpha=0.6, ms=4)
            std = float(values.std()) if len(values) > 1 else 0.0
            ax.errorbar([k + 0.2], [float(values.mean())], yerr=[std], fmt="s", color=f"C{k}", capsize=3)
        ax.set_xticks(range(len(finals)), list(finals), rotation=30, fontsize=8)
        ax.set_xlim(-0.5, len(finals) - 0.3)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], linestyle="", marker="o", ms=4, alpha=0.6, color="0.35", label="one run (seed)"),
               Line2D([], [], linestyle="-", marker="s", color="0.35", label="mean ± sample std (ddof=1)")]  # fmt: skip
    fig.legend(handles=handles, loc="outside upper center", ncol=2, fontsize=9, frameon=False)
    return fig


def final_spread(finals: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """:func:`final_spread_figure` written to ``path``."""
    _save(final_spread_figure(finals), path)
