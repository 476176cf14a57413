import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multimix.beta import sample_beta
from multimix.plan import MixPlan, draw_plan, identity_plan


@pytest.mark.parametrize("alpha", [0.05, 0.2, 1.0, 4.0, 50.0])
def test_beta_matches_the_exact_cdf(alpha):
    """The empirical CDF on a grid stays within the KS band (p = 0.001) of scipy's exact Beta CDF."""
    n = 20000
    ours = sample_beta(alpha, n, torch.Generator().manual_seed(0)).sort().values
    grid = np.linspace(0.001, 0.999, 999)
    empirical = torch.searchsorted(ours, torch.from_numpy(grid), right=True).numpy() / n
    assert np.abs(empirical - scipy.stats.beta(alpha, alpha).cdf(grid)).max() < 1.95 / math.sqrt(n)
    assert float(ours.var()) == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.05)


def test_beta_tiny_alpha_does_not_underflow():
    lam = sample_beta(1e-3, 1000, torch.Generator().manual_seed(0))
    assert torch.isfinite(lam).all() and ((lam >= 0) & (lam <= 1)).all()


def test_beta_is_reproducible_from_the_generator():
    a = sample_beta(0.4, 100, torch.Generator().manual_seed(3))
    b = sample_beta(0.4, 100, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@settings(max_examples=50, deadline=None)
@given(batch=st.integers(1, 64), per_sample=st.booleans(), p=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_plan_invariants(batch, per_sample, p, seed):
    plan = draw_plan(batch, [1.0], torch.Generator().manual_seed(seed), per_sample=per_sample, p=p)
    assert plan.index.dtype == torch.long and plan.lam.shape == (batch,)
    assert ((plan.lam >= 0) & (plan.lam <= 1)).all()
    unmixed = plan.lam == 1
    assert torch.equal(plan.index[unmixed], torch.arange(batch)[unmixed])
    own_partner = plan.index == torch.arange(batch)  # and the converse: no lam < 1 without a partner (B = 1)
    assert (plan.lam[own_partner] == 1).all() and not plan.mixed[own_partner].any()
    if p == 1.0:
        assert sorted(plan.index.tolist()) == list(range(batch))  # a permutation
    if not per_sample and p == 1.0:
        assert (plan.lam == plan.lam[0]).all()


def test_p_zero_is_identity():
    plan = draw_plan(9, [1.0], torch.Generator().manual_seed(0), per_sample=True, p=0.0)
    assert torch.equal(plan.index, torch.arange(9)) and (plan.lam == 1).all()
    assert not plan.mixed.any()


def test_same_seed_same_plan_and_choice_order():
    a = draw_plan(16, [1.0], torch.Generator().manual_seed(5), per_sample=True)
    b = draw_plan(16, [1.0], torch.Generator().manual_seed(5), per_sample=True)
    assert torch.equal(a.index, b.index) and torch.equal(a.lam, b.lam)


def test_choice_follows_weights():
    g = torch.Generator().manual_seed(0)
    choices = [draw_plan(2, [1.0, 1.0], g, weights=[0.2, 0.8]).choice for _ in range(2000)]
    assert sum(choices) / len(choices) == pytest.approx(0.8, abs=0.03)


def test_identity_plan():
    plan = identity_plan(3)
    assert plan.index.tolist() == [0, 1, 2] and plan.lam.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alphas": [0.0]}, ValueError, r"alpha must be finite and > 0 .*got 0.0"),
        ({"alphas": [float("nan")]}, ValueError, r"alpha must be finite and > 0 .*got nan"),
        ({"alphas": ["1"]}, TypeError, r"alpha must be a positive real number, got str"),
        ({"alphas": []}, ValueError, r"alphas must name at least one"),
        ({"p": 1.5}, ValueError, r"p must be in \[0, 1\], got 1.5"),
        ({"batch_size": 0}, ValueError, r"batch_size must be an int >= 1, got 0"),
        ({"generator": 3}, TypeError, r"generator must be a torch.Generator, got int"),
    ],
)
def test_draw_plan_errors(kwargs, error, match):
    args = {"batch_size": 4, "alphas": [1.0], "generator": torch.Generator(), **kwargs}
    with pytest.raises(error, match=match):
        draw_plan(args.pop("batch_size"), args.pop("alphas"), args.pop("generator"), **args)


@pytest.mark.parametrize("shape", [0.05, 0.7, 1.0, 4.0])
@pytest.mark.parametrize("count", [1, 3, 8])
def test_beta_plain_float_and_numpy_paths_draw_the_same_gammas(shape, count):
    """The per-batch draw (plain floats) and the array path read the same uniforms the same way: same values."""
    from multimix.beta import _log_gammas, _log_gammas_small

    small = _log_gammas_small(shape, count, torch.Generator().manual_seed(count))
    large = _log_gammas(shape, count, torch.Generator().manual_seed(count))
    np.testing.assert_allclose(small, large, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("weights", "error", "match"), [
    ([1.0], ValueError, r"weights must give each of the 2 alphas a finite weight >= 0, with a positive sum; got \["),
    ([-1, 2], ValueError, r"got \[-1, 2\]"),
    ([float("nan"), 1], ValueError, r"got \[nan, 1\]"),
    ([0, 0], ValueError, r"got \[0, 0\]"),
    ("ab", TypeError, r"weights must be a sequence of 2 numbers"),
])  # fmt: skip
def test_draw_plan_checks_its_weights(weights, error, match):
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    with pytest.raises(error, match=match):
        draw_plan(4, [1.0, 1.0], generator, weights=weights)
    assert torch.equal(generator.get_state(), state)
    choices = {draw_plan(4, [1.0, 1.0], generator, weights=[0, 2]).choice for _ in range(20)}
    assert choices == {1}  # a zero weight is never chosen


def test_a_plan_built_by_hand_needs_index_and_lam_of_one_length():
    with pytest.raises(ValueError, match=r"MixPlan needs an integer index \(B,\) and a float lam \(B,\) of the same "
                                         r"length, got index \(4,\) torch.int64 and lam \(3,\)"):  # fmt: skip
        MixPlan(torch.arange(4), torch.ones(3))
    with pytest.raises(ValueError, match=r"lam \(4,\) torch.int64"):
        MixPlan(torch.arange(4), torch.ones(4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"MixPlan needs index and lam tensors, got list and Tensor"):
        MixPlan([1, 0], torch.ones(2))
