"""The recipes' plots: legends and labels inside the figure, integer epochs, every style and marker named."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.transforms import Bbox

from multimix.metrics import reliability_diagram
from multimix_recipes import plots


def history(epochs: int, seed: int) -> list[dict[str, float]]:
    """A plausible run: accuracy rising, NLL falling, ECE and T jittering; the after-T values close to the others."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for e in range(1, epochs + 1):
        noise = float(torch.rand((), generator=g)) * 0.02
        accuracy = 0.3 + 0.6 * (1 - math.exp(-e / 8)) + noise
        rows.append({"epoch": e, "train_loss": 2 * math.exp(-e / 10) + noise, "test_accuracy": accuracy,
                     "test_loss": 1.5 - accuracy, "test_loss_calibrated": 1.5 - accuracy - 0.001,
                     "test_ece": 0.05 + noise, "test_ece_calibrated": 0.05, "temperature": 1.0 + noise})  # fmt: skip
    return rows


METHODS = ("erm", "mixup", "mixup+cutmix alpha=0.4")  # a sweep's row names are the longest


def runs(epochs: int, seeds: int, methods=METHODS) -> dict:
    return {m: [history(epochs, 10 * k + s) for s in range(seeds)] for k, m in enumerate(methods)}


def scored(methods=METHODS) -> dict:
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(500, 10, generator=g)
    labels = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    return {m: (logits * (1 + k), labels, 1.234 + k) for k, m in enumerate(methods)}


def inside(inner: Bbox, outer: Bbox, slack: float = 0.5) -> bool:
    return (inner.x0 >= outer.x0 - slack and inner.y0 >= outer.y0 - slack and inner.x1 <= outer.x1 + slack
            and inner.y1 <= outer.y1 + slack)  # fmt: skip


def check_inside(fig) -> int:
    """After a draw: every axes with its labels, every legend and text lies inside the figure; a panel's legend
    inside its own panel; a figure legend over no panel. Returns how many legends were checked."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends)
    for ax in fig.axes:
        assert inside(ax.get_tightbbox(renderer), fig.bbox), ax.get_title()
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
            assert inside(ax.get_legend().get_window_extent(renderer), ax.bbox), ax.get_title()
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(ax.bbox) for ax in fig.axes)
    for artist in legends + fig.texts + ([fig._suptitle] if fig._suptitle else []):
        assert inside(artist.get_window_extent(renderer), fig.bbox), artist
    plt.close(fig)
    return len(legends)


@pytest.mark.parametrize(("epochs", "seeds"), [(1, 1), (1, 3), (30, 1), (30, 3)])
def test_learning_curves_stay_inside_with_integer_epochs_and_named_styles(epochs, seeds):
    fig = plots.learning_curves_figure(runs(epochs, seeds))
    ticks = [list(ax.get_xticks()) for ax in fig.axes]
    assert ticks == [[1.0] if epochs == 1 else [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]] * 5
    assert all(ax.get_xlim() == (0.5, epochs + 0.5) for ax in fig.axes)
    nll = fig.axes[2]  # before and after T: a solid line of dots, a dashed line of open squares
    styles = {(line.get_linestyle(), line.get_marker(), line.get_markerfacecolor()) for line in nll.get_lines()}
    assert {(s, m) for s, m, _ in styles} == {("-", "o"), ("--", "s")} and ("--", "s", "white") in styles
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    spread = [f"min to max over {seeds} seeds"] if seeds > 1 else []
    assert labels == [*METHODS, "as trained", "after T (logits / T)", *spread]
    assert check_inside(fig) == 1


@pytest.mark.parametrize("methods", [METHODS[:1], METHODS])
@pytest.mark.parametrize("seed", [None, 3])
def test_reliability_legends_stay_in_their_panels_and_the_seed_is_named(methods, seed):
    fig = plots.reliability_figure(scored(methods), seed=seed)
    assert fig._suptitle.get_text() == ("test set, seed 3" if seed == 3 else "test set, first seed of each method")
    texts = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]  # top row, then bottom row
    for k, (logits, labels, temperature) in enumerate(scored(methods).values()):
        before, after = (reliability_diagram(z, labels).ece for z in (logits, logits / temperature))
        assert texts[k] == ["perfect calibration", f"logits (ECE {before:.3f})"]
        assert texts[len(methods) + k] == ["perfect calibration", f"logits / T (ECE {after:.3f})"]
    assert fig.axes[len(methods)].get_title() == f"{methods[0]}\nlogits / T (T = 1.23)"  # the bottom row
    assert check_inside(fig) == 2 * len(methods)


def test_spread_names_its_markers_and_stays_inside():
    finals = {m: [h[-1] for h in hs] for m, hs in runs(3, 3).items()}
    fig = plots.final_spread_figure(finals)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["one run (seed)", "mean ± sample std (ddof=1)"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(METHODS)
    assert check_inside(fig) == 1


def test_epoch_ticks():
    assert plots.epoch_ticks(1) == [1] and plots.epoch_ticks(8) == list(range(1, 9))
    assert plots.epoch_ticks(10) == [2, 4, 6, 8, 10] and plots.epoch_ticks(30) == [5, 10, 15, 20, 25, 30]
    assert plots.epoch_ticks(200) == [50, 100, 150, 200] and plots.epoch_ticks(0) == [1]


def test_writers_save_pngs(tmp_path):
    open_figures = plt.get_fignums()
    plots.learning_curves(runs(2, 1), tmp_path / "curves.png")
    plots.reliability(scored(METHODS[:1]), tmp_path / "reliability.png", seed=0)
    plots.final_spread({m: [h[-1] for h in hs] for m, hs in runs(2, 2).items()}, tmp_path / "spread.png")
    for name in ("curves.png", "reliability.png", "spread.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == open_figures  # each writer closes its figure
