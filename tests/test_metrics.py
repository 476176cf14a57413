import matplotlib
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import multimix
from multimix.metrics import plot_reliability_diagram

matplotlib.use("Agg")


def test_accuracy_topk_and_rows():
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    labels = torch.tensor([2, 0, 1])
    assert multimix.accuracy(logits, labels) == pytest.approx(1 / 3)
    assert multimix.accuracy(logits, labels, topk=2) == pytest.approx(1.0)
    assert multimix.accuracy(logits, torch.eye(3)[labels]) == pytest.approx(1 / 3)


def test_mixed_accuracy_weights_both_sources():
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, 1, 0])
    lam = torch.tensor([0.75, 0.6, 0.9])
    index = torch.tensor([2, 2, 0])
    # sample 0: pred 1 == y0 -> 0.75; sample 1: pred 0 == y2 -> 0.4; sample 2: pred 1 == y0 -> 0.1
    assert multimix.mixed_accuracy(logits, labels, lam, index) == pytest.approx((0.75 + 0.4 + 0.1) / 3)


def test_ece_by_hand():
    probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.55, 0.45], [0.3, 0.7], [0.52, 0.48]])
    labels = torch.tensor([0, 1, 0, 1, 1])
    # 5 bins of width 0.2: (0.4, 0.6] holds 0.55 (hit), 0.52 (miss); (0.6, 0.8] 0.7 (hit); (0.8, 1] 0.95 hit, 0.85 miss
    expected = 2 / 5 * abs(0.5 - 0.535) + 1 / 5 * abs(1 - 0.7) + 2 / 5 * abs(0.5 - 0.9)
    assert multimix.expected_calibration_error(probs, labels, 5, from_probs=True) == pytest.approx(expected)
    diagram = multimix.reliability_diagram(probs.log(), labels, 5)
    assert diagram.count.tolist() == [0, 0, 2, 1, 2]
    assert diagram.ece == pytest.approx(expected)


def test_perfectly_calibrated_predictions_have_zero_ece():
    probs = torch.tensor([[1.0, 0.0]] * 4)
    assert multimix.expected_calibration_error(probs, torch.zeros(4, dtype=torch.long), from_probs=True) == 0.0


def test_plot_reliability_diagram(tmp_path):
    logits = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    ax = plot_reliability_diagram(multimix.reliability_diagram(logits, torch.arange(50) % 4), label="erm")
    ax.figure.savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    with pytest.raises(TypeError, match=r"diagram must be a ReliabilityDiagram"):
        plot_reliability_diagram({"ece": 0.1})


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (torch.randn(3), torch.arange(3), r"logits must be a non-empty float tensor \(N, C\), got shape \(3,\)"),
        (torch.randn(3, 2), torch.tensor([0, 1, 2]), r"labels must lie in \[0, 2\), got values in \[0, 2\]"),
        (torch.randn(3, 2), torch.tensor([0, 1]), r"labels has 2 entries, logits 3"),
        (torch.randn(3, 2), torch.rand(3), r"labels must be integer indices \(N,\) or rows \(N, C\)"),
        (torch.randn(3, 2), torch.rand(3, 3), r"label rows must have the shape of logits \(3, 2\), got \(3, 3\)"),
    ],
)
def test_metric_errors(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        multimix.expected_calibration_error(logits, labels)


def test_metric_argument_errors():
    with pytest.raises(ValueError, match=r"n_bins must be an int >= 1, got 0"):
        multimix.expected_calibration_error(torch.randn(2, 2), torch.arange(2), 0)
    with pytest.raises(ValueError, match=r"topk must be <= the number of classes 2, got 3"):
        multimix.accuracy(torch.randn(2, 2), torch.arange(2), topk=3)
    with pytest.raises(ValueError, match=r"lam and index must have shape \(2,\)"):
        multimix.mixed_accuracy(torch.randn(2, 2), torch.arange(2), torch.ones(3), torch.arange(2))


def ece_by_loops(probs, labels, n_bins):
    """An independent ECE: plain Python over samples, bins (lo, hi] found by comparison."""
    counts, conf, hits = [0] * n_bins, [0.0] * n_bins, [0.0] * n_bins
    for row, label in zip(probs.double().tolist(), labels.tolist(), strict=True):
        top = max(row)
        b = next(i for i in range(n_bins) if top <= (i + 1) / n_bins or i == n_bins - 1)
        counts[b] += 1
        conf[b] += top
        hits[b] += float(row.index(top) == label)
    n = len(labels)
    return sum(abs(h - c) / n for h, c in zip(hits, conf, strict=True)), counts


def test_counts_from_reliability_diagram_and_ece():
    probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.55, 0.45], [0.3, 0.7], [0.52, 0.48]])
    labels = torch.tensor([0, 1, 0, 1, 1])
    diagram = multimix.reliability_diagram(probs, labels, 5, from_probs=True)
    assert diagram.counts is diagram.count
    ece, counts = multimix.expected_calibration_error(probs, labels, 5, from_probs=True, return_counts=True)
    assert counts.tolist() == [0, 0, 2, 1, 2]
    assert ece == pytest.approx(diagram.ece)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    c=st.integers(2, 6),
    n_bins=st.integers(1, 20),
    scale=st.floats(0.01, 20.0),
    seed=st.integers(0, 2**16),
)
def test_ece_invariants(n, c, n_bins, scale, seed):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    ece, counts = multimix.expected_calibration_error(logits, labels, n_bins, return_counts=True)
    assert 0.0 <= ece <= 1.0
    assert int(counts.sum()) == n and counts.shape == (n_bins,)
    expected, expected_counts = ece_by_loops(torch.softmax(logits, dim=1), labels, n_bins)
    if counts.tolist() == expected_counts:  # a confidence exactly on an edge may round into either bin
        assert ece == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: multimix.accuracy(torch.tensor([[0.1, float("nan")], [0.3, 0.2]]), torch.tensor([0, 1])),
            r"logits must be finite, got 1 NaN or inf values of 4; a diverged model gives NaN",
        ),
        (
            lambda: multimix.expected_calibration_error(torch.tensor([[float("inf"), 0.0]]), torch.tensor([0])),
            r"logits must be finite, got 1 NaN or inf values of 2",
        ),
        (
            lambda: multimix.expected_calibration_error(
                torch.tensor([[2.5, -1.0], [0.3, 0.1]]), torch.tensor([0, 1]), from_probs=True
            ),
            r"from_probs=True needs probabilities \(values in \[0, 1\], rows summing to 1\), got values in "
            r"\[-1, 2.5\] .*; pass logits with from_probs=False",
        ),
        (
            lambda: multimix.reliability_diagram(torch.tensor([[0.5, 0.4]]), torch.tensor([0]), from_probs=True),
            r"from_probs=True needs probabilities .* row sums off by up to 0.1",
        ),
        (
            lambda: multimix.accuracy(torch.randn(2, 2), torch.tensor([True, False])),
            r"labels must be integer indices \(N,\) or rows \(N, C\), got shape \(2,\) dtype torch.bool; "
            r"convert class indices with .long\(\)",
        ),
        (
            lambda: multimix.accuracy(torch.randn(2, 2), torch.zeros(2, dtype=torch.long, device="meta")),
            r"labels must be on the device of logits \(cpu\), got meta",
        ),
    ],
)
def test_metric_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_probabilities_pass_the_from_probs_check():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(64) % 10
    probs = torch.softmax(logits, dim=1)
    assert multimix.expected_calibration_error(probs, labels, from_probs=True) == pytest.approx(
        multimix.expected_calibration_error(logits, labels), abs=1e-6
    )


def test_mixed_accuracy_takes_one_lam_for_the_batch_and_names_a_bad_index():
    """timm-style loops hold one float lam per batch (it raised AttributeError)."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    labels, index = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 0])
    want = multimix.mixed_accuracy(logits, labels, torch.full((3,), 0.7), index)
    assert want == pytest.approx((1.0 + 0.3 + 0.3) / 3)  # preds 0, 1, 0; partners show 0, 1, 0
    assert multimix.mixed_accuracy(logits, labels, 0.7, index) == pytest.approx(want)
    assert multimix.mixed_accuracy(logits, labels, torch.tensor(0.7), index) == pytest.approx(want)
    with pytest.raises(TypeError, match=r"index must be a torch.Tensor, got list"):
        multimix.mixed_accuracy(logits, labels, 0.7, [1, 2, 0])
    with pytest.raises(TypeError, match=r"index must hold integer partner positions, got dtype torch.float32"):
        multimix.mixed_accuracy(logits, labels, 0.7, index.float())
