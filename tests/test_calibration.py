import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

import multimix


def synthetic(temperature, n=20000, c=10, seed=0):
    """Labels drawn from softmax(true_logits); the model reports true_logits * temperature.

    The temperature that calibrates the reported logits is then ``temperature``:
    > 1 over-confident (as after plain training), < 1 under-confident (as after mixup).
    """
    g = torch.Generator().manual_seed(seed)
    true_logits = 2 * torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.multinomial(true_logits.softmax(dim=1), 1, generator=g).squeeze(1)
    return (true_logits * temperature).float(), labels


def test_nll_and_brier_by_hand():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 2])
    e = [[math.exp(v) for v in row] for row in logits.tolist()]
    probs = [[v / sum(row) for v in row] for row in e]
    nll = -(math.log(probs[0][0]) + math.log(probs[1][2])) / 2
    brier = (
        sum(sum((p - (k == y)) ** 2 for k, p in enumerate(row)) for row, y in zip(probs, labels.tolist(), strict=True))
        / 2
    )
    assert multimix.negative_log_likelihood(logits, labels) == pytest.approx(nll, rel=1e-12)
    assert multimix.brier_score(logits, labels) == pytest.approx(brier, rel=1e-12)
    rows = torch.eye(3)[labels]  # rows give the same labels (argmax), as for every metric
    assert multimix.negative_log_likelihood(logits, rows) == pytest.approx(nll, rel=1e-12)
    assert multimix.brier_score(logits, rows) == pytest.approx(brier, rel=1e-12)
    # the test loss of the recipes, in float64
    assert multimix.negative_log_likelihood(logits, labels) == pytest.approx(
        float(multimix.soft_cross_entropy(logits, labels)), rel=1e-6
    )


@pytest.mark.parametrize("temperature", [2.5, 0.4, 1.0])
def test_fit_temperature_recovers_a_known_temperature(temperature):
    logits, labels = synthetic(temperature)
    fitted = multimix.fit_temperature(logits, labels)
    assert fitted == pytest.approx(temperature, rel=0.04)
    nll = multimix.negative_log_likelihood
    ece = multimix.expected_calibration_error
    if temperature != 1.0:
        assert nll(logits / fitted, labels) < nll(logits, labels) - 0.02
        assert ece(logits / fitted, labels) < 0.02 < ece(logits, labels) - 0.03
    assert multimix.accuracy(logits / fitted, labels) == multimix.accuracy(logits, labels)


def test_fit_temperature_matches_scipy():
    logits, labels = synthetic(1.7, n=3000, c=5, seed=3)
    z, y = logits.double(), labels

    def nll(log_t):
        return float(torch.nn.functional.cross_entropy(z / math.exp(log_t), y))

    reference = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20)), method="bounded", options={"xatol": 1e-10})
    assert multimix.fit_temperature(logits, labels) == pytest.approx(math.exp(reference.x), rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 30), c=st.integers(2, 5), scale=st.floats(0.1, 5.0), seed=st.integers(0, 2**16))
def test_fitted_temperature_minimises_nll(n, c, scale, seed):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny samples may put T on a bound
        fitted = multimix.fit_temperature(logits, labels)
    assert 0.05 * (1 - 1e-9) <= fitted <= 20 * (1 + 1e-9)
    best = multimix.negative_log_likelihood(logits / fitted, labels)
    for other in (0.05, 0.3, 1.0, 3.0, 20.0, min(fitted * 1.01, 20.0), max(fitted / 1.01, 0.05)):
        assert best <= multimix.negative_log_likelihood(logits / other, labels) + 1e-9


def test_fit_temperature_warns_on_a_bound():
    logits = torch.tensor([[3.0, 0.0], [0.0, 3.0]])  # separable: the NLL falls as T -> 0
    with pytest.warns(UserWarning, match=r"T = 0.1 lies on the bound of bounds=\(0.1, 10.0\); the NLL keeps falling"):
        fitted = multimix.fit_temperature(logits, torch.tensor([0, 1]), bounds=(0.1, 10.0))
    assert fitted == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bounds": (20.0, 0.05)}, ValueError, r"bounds must satisfy 0 < low < high < inf, got \(20.0, 0.05\)"),
        ({"bounds": (0.0, 1.0)}, ValueError, r"bounds must satisfy 0 < low < high < inf"),
        ({"bounds": 5.0}, TypeError, r"bounds must be a pair \(low, high\) of temperatures, got 5.0; e.g. bounds="),
        (
            {"logits": torch.tensor([[0.0, float("nan")]])},
            ValueError,
            r"logits must be finite, got 1 NaN or inf values of 2",
        ),
        ({"logits": torch.zeros(0, 3)}, ValueError, r"logits must be a non-empty float tensor \(N, C\)"),
        ({"labels": torch.tensor([3])}, ValueError, r"labels must lie in \[0, 2\), got values in \[3, 3\]"),
        ({"labels": torch.tensor([0.0])}, ValueError, r"labels must be integer indices \(N,\) or rows \(N, C\)"),
        ({"labels": [0]}, TypeError, r"labels must be a torch.Tensor, got list"),
    ],
)
def test_fit_temperature_errors(kwargs, error, match):
    args = {"logits": torch.tensor([[1.0, 0.0]]), "labels": torch.tensor([0])} | kwargs
    with pytest.raises(error, match=match):
        multimix.fit_temperature(**args)


@pytest.mark.gpu
def test_fit_temperature_on_cuda_matches_cpu():
    logits, labels = synthetic(0.4, n=5000)
    assert multimix.fit_temperature(logits.cuda(), labels.cuda()) == pytest.approx(
        multimix.fit_temperature(logits, labels), rel=1e-7  # float64 sums run in another order on the GPU
    )
    assert multimix.brier_score(logits.cuda(), labels.cuda()) == pytest.approx(multimix.brier_score(logits, labels))
