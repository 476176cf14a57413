"""The loss path without (B, C) rows: two index cross-entropies give the soft cross-entropy of the mixed rows."""

from __future__ import annotations

import pytest
import torch
from conftest import fixed_plan
from hypothesis import given, settings
from hypothesis import strategies as st

import multimix
from multimix.image import CutMix, Mixup
from multimix.losses import mixed_cross_entropy
from multimix.targets import mixed_targets


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), c=st.integers(1, 9), s=st.sampled_from([0.0, 0.1, 0.5]),
       mode=st.sampled_from(["lerp", "original", "dominant"]), seed=st.integers(0, 1000))  # fmt: skip
def test_equals_the_soft_cross_entropy_of_the_rows(n, c, s, mode, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    plan = fixed_plan(torch.randperm(n, generator=g), torch.rand(n, generator=g, dtype=torch.float64))
    logits = torch.randn(n, c, generator=g)
    rows = mixed_targets(y, plan, plan.lam, c, s, label_mode=mode)
    for reduction in ("mean", "sum", "none"):
        got = mixed_cross_entropy(logits, y, plan.index, plan.lam, label_smoothing=s, label_mode=mode,
                                  reduction=reduction)  # fmt: skip
        torch.testing.assert_close(got, multimix.soft_cross_entropy(logits, rows, reduction), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("adapter", [Mixup(1.0), CutMix(1.0)])
def test_a_batch_scored_by_its_labels_never_builds_its_rows(adapter):
    g = torch.Generator().manual_seed(0)
    mixer = multimix.Mixer(adapter, num_classes=7, per_sample=True, label_smoothing=0.1, seed=0)
    out = mixer(torch.rand(6, 3, 8, 8, generator=g), torch.randint(0, 7, (6,), generator=g))
    logits = torch.randn(6, 7, generator=g, requires_grad=True)
    loss = multimix.soft_cross_entropy(logits, out)
    module = multimix.SoftTargetCrossEntropy()(logits, out)
    assert out.__dict__["_targets"] is None  # nothing read the rows: never built
    (grad,) = torch.autograd.grad(loss, logits)
    expected = multimix.soft_cross_entropy(logits, out.targets)  # now built, on first read
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(module, expected)
    torch.testing.assert_close(grad, expected_grad)
    assert out.targets is out.targets  # built once


def test_union_and_rows_fall_back_to_the_rows():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g)
    union = multimix.Mixer(Mixup(1.0), num_classes=5, label_mode="union", seed=0)(x.clone(), y)
    logits = torch.randn(4, 5, generator=g)
    torch.testing.assert_close(multimix.soft_cross_entropy(logits, union),
                               multimix.soft_cross_entropy(logits, union.targets))  # fmt: skip
    with pytest.raises(ValueError, match=r"label_mode='union' combines rows by their maximum"):
        mixed_cross_entropy(logits, y, union.index, union.lam, label_mode="union")


def test_traced_whole_in_a_compiled_step():
    mixer = multimix.Mixer(CutMix(1.0), num_classes=5, per_sample=True, label_smoothing=0.1, seed=0)
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    logits = torch.randn(4, 5)

    def step(images, labels, plan):
        return multimix.soft_cross_entropy(logits, mixer.apply(images, labels, plan))

    plan = mixer.plan_for(x)
    torch._dynamo.reset()
    traced = torch.compile(step, fullgraph=True, backend="eager")(x.clone(), y, plan)
    torch.testing.assert_close(traced, step(x.clone(), y, plan))
