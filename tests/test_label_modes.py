"""label_mode: lerp, union, original, dominant, against hand-written references on fixed plans."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import fixed_plan
from hypothesis import given, settings
from hypothesis import strategies as st

import multimix
from multimix.image import CutMix, Mixup
from multimix.targets import LABEL_MODES, label_weights, mixed_targets

LAM = torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
INDEX = [1, 2, 3, 3]  # sample 3 is unmixed (its own partner, lam 1)


def reference(mode, lam):
    """The two weights of each mode, written out."""
    return {
        "lerp": (lam, 1 - lam),
        "union": (float(lam > 0), float(lam < 1)),
        "original": (1.0, 0.0),
        "dominant": (float(lam >= 0.5), float(lam < 0.5)),
    }[mode]


@pytest.mark.parametrize("mode", LABEL_MODES)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_rows_of_each_mode_on_a_fixed_plan(mode, smoothing):
    y = torch.tensor([0, 1, 2, 3])
    plan = fixed_plan(INDEX, LAM)
    out = mixed_targets(y, plan, plan.lam, 4, smoothing, label_mode=mode)
    eye = torch.eye(4) * (1 - smoothing) + smoothing / 4
    for i, j in enumerate(INDEX):
        own, other = reference(mode, float(LAM[i]))
        combine = torch.maximum if mode == "union" else torch.add
        torch.testing.assert_close(out[i], combine(own * eye[y[i]], other * eye[y[j]]))


@pytest.mark.parametrize("mode", LABEL_MODES)
def test_the_mixer_and_mixed_loss_follow_the_mode(mode):
    y = torch.tensor([0, 1, 2, 3])
    plan = fixed_plan(INDEX, LAM)
    mixer = multimix.Mixer(Mixup(1.0), num_classes=4, label_mode=mode)
    out = mixer.apply(torch.rand(4, 3, 4, 4), y, plan)
    torch.testing.assert_close(out.targets, mixed_targets(y, plan, plan.lam, 4, 0.0, label_mode=mode))
    logits = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    ce = F.cross_entropy(logits, y, reduction="none")
    ce_partner = F.cross_entropy(logits, y[INDEX], reduction="none")
    weights = torch.tensor([reference(mode, float(lam)) for lam in LAM], dtype=torch.float32)
    expected = weights[:, 0] * ce + weights[:, 1] * ce_partner
    got = multimix.mixed_loss(F.cross_entropy, logits, out, reduction="none")
    torch.testing.assert_close(got, expected)
    if mode != "union":  # one label set per sample (rows summing to 1): the soft cross-entropy of the rows
        torch.testing.assert_close(got.mean(), multimix.soft_cross_entropy(logits, out.targets))


@pytest.mark.parametrize("mode", LABEL_MODES)
def test_modes_on_label_maps(mode):
    """A region shows each pixel whole: every mode but 'original' gives the map shown; a blend follows the mode."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (4, 6, 6), generator=g)
    plan = fixed_plan(INDEX, LAM)
    x = torch.rand(4, 3, 6, 6, generator=g)
    region_mixer = multimix.Mixer(CutMix(1.0), num_classes=3, label_mode=mode, seed=0)
    drawn = region_mixer.plan_for(x)
    out = region_mixer.apply(x.clone(), y, drawn)
    shown = multimix.Mixer(CutMix(1.0), num_classes=3).apply(x.clone(), y, drawn).targets
    assert not torch.equal(shown, y) and torch.equal(out.targets, y if mode == "original" else shown)
    blend = multimix.Mixer(Mixup(1.0), num_classes=3, label_mode=mode).apply(x.clone(), y, plan).targets
    onehot = F.one_hot(y, 3).permute(0, 3, 1, 2).float()
    for i, j in enumerate(INDEX):
        own, other = reference(mode, float(LAM[i]))
        combine = torch.maximum if mode == "union" else torch.add
        torch.testing.assert_close(blend[i], combine(own * onehot[i], other * onehot[j]))


@settings(max_examples=40, deadline=None)
@given(lam=st.lists(st.floats(0, 1), min_size=1, max_size=16), mode=st.sampled_from(LABEL_MODES))
def test_label_weights_match_the_reference(lam, mode):
    lam = torch.tensor(lam, dtype=torch.float64)
    own, other = label_weights(lam, mode)
    expected = torch.tensor([reference(mode, float(v)) for v in lam], dtype=torch.float64)
    torch.testing.assert_close(own, expected[:, 0])
    torch.testing.assert_close(other, expected[:, 1])
    if mode != "union":
        torch.testing.assert_close(own + other, torch.ones_like(lam))


def test_a_bad_label_mode_is_refused():
    with pytest.raises(ValueError, match=r"label_mode must be one of \('lerp', 'union', 'original', 'dominant'\).*"
                                         r"got 'mean'"):  # fmt: skip
        multimix.Mixer(Mixup(1.0), num_classes=4, label_mode="mean")
