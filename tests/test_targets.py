import pytest
import timm.data.mixup as timm_mixup
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import multimix
from multimix.image import Mixup
from multimix.targets import mix_targets, soft_targets


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_soft_targets_match_timm_one_hot(smoothing):
    y = torch.tensor([0, 3, 2, 3])
    off = smoothing / 4
    expected = timm_mixup.one_hot(y, 4, on_value=1 - smoothing + off, off_value=off)
    torch.testing.assert_close(soft_targets(y, 4, label_smoothing=smoothing), expected)


def test_soft_rows_are_copied_and_keep_float64():
    rows = torch.tensor([[0.25, 0.75], [1.0, 0.0]], dtype=torch.float64)
    out = soft_targets(rows, 2, label_smoothing=0.5)
    torch.testing.assert_close(out, torch.tensor([[0.375, 0.625], [0.75, 0.25]], dtype=torch.float64))
    assert rows[0, 0] == 0.25 and out.dtype == torch.float64


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 20), c=st.integers(1, 10), s=st.floats(0, 1), seed=st.integers(0, 1000))
def test_mixed_rows_sum_to_one(n, c, s, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    lam = torch.rand(n, generator=g, dtype=torch.float64)
    out = mix_targets(soft_targets(y, c, label_smoothing=s), torch.randperm(n, generator=g), lam)
    torch.testing.assert_close(out.sum(1), torch.ones(n))
    assert (out >= 0).all()


def test_lam_one_is_identity():
    rows = soft_targets(torch.tensor([1, 0, 2]), 3)
    assert torch.equal(mix_targets(rows, torch.tensor([2, 0, 1]), torch.ones(3)), rows)


@pytest.mark.parametrize(
    ("targets", "kwargs", "error", "match"),
    [
        (
            torch.tensor([[[0]]]),
            {},
            ValueError,
            r"targets must be class indices \(B,\) or rows \(B, 3\), got shape \(1, 1, 1\)",
        ),
        (torch.tensor([0, 1]), {"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\], got 1.5"),
        (
            torch.tensor([[0, 1, 0]]),
            {},
            TypeError,
            r"target rows \(B, C\) must be floating point, got dtype torch.int64",
        ),
        (torch.tensor([[0.5, 0.7, -0.2]]), {}, ValueError, r"target rows must hold values in \[0, 1\]"),
        (torch.tensor([True, False]), {}, TypeError, r"must be an integer tensor, got dtype torch.bool"),
        ([0, 1], {}, TypeError, r"targets must be a torch.Tensor, got list"),
    ],
)
def test_soft_target_errors(targets, kwargs, error, match):
    with pytest.raises(error, match=match):
        soft_targets(targets, 3, **kwargs)


@pytest.mark.parametrize(("rows", "index", "lam", "error", "match"), [
    (torch.eye(3), torch.arange(2), torch.ones(3), ValueError, r"mix_targets needs rows \(B, C\)"),
    (torch.eye(2), [1, 0], torch.ones(2), TypeError, r"index must be a torch.Tensor, got list"),
    (torch.eye(2), torch.tensor([1, 0]), 0.5, TypeError, r"lam must be a torch.Tensor, got float"),
    (torch.eye(2), torch.tensor([1, 5]), torch.ones(2), ValueError, r"index must hold partners in \[0, 2\)"),
    (torch.eye(2), torch.tensor([1, 0]), torch.tensor([1.5, 0.5]), ValueError, r"lam must lie in \[0, 1\]"),
    (torch.eye(2).long(), torch.tensor([1, 0]), torch.ones(2), TypeError, r"float rows and an integer index"),
])  # fmt: skip
def test_mix_targets_errors(rows, index, lam, error, match):
    with pytest.raises(error, match=match):
        mix_targets(rows, index, lam)


@pytest.mark.parametrize("num_classes", [100, 1000])
def test_bfloat16_probability_rows_are_accepted_while_rows_that_do_not_sum_to_one_are_not(num_classes):
    """Rounding rows to bfloat16 moves their sums by up to half its eps (0.4%); more than its eps is an error."""
    rows = soft_targets(torch.arange(4), num_classes, label_smoothing=0.1).bfloat16()
    out = multimix.Mixer(Mixup(1.0), num_classes=num_classes, seed=0)(torch.rand(4, 3, 8, 8), rows)
    torch.testing.assert_close(out.targets.sum(1).float(), torch.ones(4), atol=1e-2, rtol=0)
    with pytest.raises(ValueError, match=r"single-label target rows must sum to 1, found a row summing to 1.0[12]"):
        multimix.Mixer(Mixup(1.0), num_classes=num_classes, seed=0)(torch.rand(4, 3, 8, 8), rows * 1.02)

