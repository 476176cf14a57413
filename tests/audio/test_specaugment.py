"""SpecAugment: bands by hand, per-sample masks, composition after mixing, no sync."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import multimix
from multimix.audio import SpecAugment, SpecMix
from multimix.audio.specaugment import Masks, draw_bands


def bands_by_hand(batch, size, count, width, g):
    """The rule with loops: width floor(u * (width + 1)) clipped to size, start floor(u * (size - w + 1))."""
    u_width = torch.rand(batch, count, generator=g, dtype=torch.float64).tolist()
    u_start = torch.rand(batch, count, generator=g, dtype=torch.float64).tolist()
    mask = torch.zeros(batch, size, dtype=torch.bool)
    for i in range(batch):
        for k in range(count):
            w = min(int(u_width[i][k] * (width + 1)), size)
            start = int(u_start[i][k] * (size - w + 1))
            mask[i, start : start + w] = True
    return mask


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 6), size=st.integers(1, 30), count=st.integers(0, 3), width=st.integers(0, 40),
    seed=st.integers(0, 2**31),
)  # fmt: skip
def test_draw_bands_equals_the_rule_by_hand(batch, size, count, width, seed):
    got = draw_bands(batch, size, count, width, torch.Generator().manual_seed(seed))
    assert torch.equal(got, bands_by_hand(batch, size, count, width, torch.Generator().manual_seed(seed)))
    assert bool((got.sum(1) <= count * min(width, size)).all())


def test_exact_cells_on_a_small_spectrogram():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).view(2, 4, 6)
    augment = SpecAugment(value=-1.0, inplace=False)
    masks = Masks(freq=torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool),
                  time=torch.tensor([[0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 1]], dtype=torch.bool))  # fmt: skip
    out = augment.apply(x, masks)
    expected = x.clone()
    expected[0, 1, :] = -1.0
    expected[1, :, [0, 1, 5]] = -1.0
    assert torch.equal(out, expected) and not torch.equal(out, x)


@pytest.mark.parametrize("shape", [(5, 16, 30), (5, 2, 16, 30)])
def test_per_sample_masks_in_place_match_the_drawn_bands(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    original = x.clone()
    out = SpecAugment(2, 7, 3, 4, seed=11)(x)
    assert out is x
    g = torch.Generator().manual_seed(11)
    freq, time = draw_bands(5, 16, 3, 4, g), draw_bands(5, 30, 2, 7, g)
    cells = (freq[:, :, None] | time[:, None, :]).view(5, *([1] * (len(shape) - 3)), 16, 30)
    assert torch.equal(out, torch.where(cells, torch.zeros(()), original))
    assert not torch.equal(freq[0], freq[1]) or not torch.equal(time[0], time[1])  # per sample


def test_composes_after_mixing_and_keeps_the_targets():
    x, y = torch.randn(6, 20, 40, generator=torch.Generator().manual_seed(0)), torch.arange(6) % 3
    plain = multimix.Mixer(SpecMix(1.0), num_classes=3, per_sample=True, seed=4)(x.clone(), y)
    mixer = multimix.Mixer(SpecMix(1.0), num_classes=3, per_sample=True, seed=4)
    out = SpecAugment(2, 8, 2, 5, seed=1)(mixer(x.clone(), y))
    assert isinstance(out, multimix.MixedBatch) and torch.equal(out.targets, plain.targets)
    expected = SpecAugment(2, 8, 2, 5, seed=1)(plain.inputs.clone())
    assert torch.equal(out.inputs, expected)


def test_zero_width_or_no_masks_change_nothing_and_inf_survives():
    x = torch.randn(3, 8, 10)
    x[0, 0, 0] = float("inf")
    original = x.clone()
    assert torch.equal(SpecAugment(0, 5, 0, 5, seed=0)(x), original)
    assert torch.equal(SpecAugment(3, 0, 3, 0, seed=0)(x), original)


def test_autograd_inputs_are_masked_out_of_place_and_resume_repeats_masks():
    x = torch.randn(4, 8, 12, requires_grad=True)
    augment = SpecAugment(1, 4, 1, 3, seed=2)
    state = augment.state_dict()
    out = augment(x)
    assert out is not x
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).float())  # gradient 0 exactly where masked
    augment.load_state_dict(state)
    torch.testing.assert_close(augment(x.detach().clone()), out.detach())


def test_no_host_device_sync_on_meta():
    x = torch.empty(8, 1, 64, 100, device="meta")
    mixer = multimix.Mixer(SpecMix(1.0), num_classes=4, per_sample=True, seed=0)
    out = SpecAugment(2, 20, 2, 10, seed=0)(mixer(x, torch.zeros(8, dtype=torch.long, device="meta")))
    assert out.inputs.device.type == "meta" and out.inputs.shape == x.shape


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: SpecAugment(-1), ValueError, r"time_masks must be an int >= 0, got -1"),
        (lambda: SpecAugment(2, 1.5), ValueError, r"time_width must be an int >= 0, got 1.5"),
        (lambda: SpecAugment(value="zero"), TypeError, r"value must be a float .*got str 'zero'"),
        (lambda: SpecAugment(inplace=1), TypeError, r"inplace must be a bool, got int 1"),
        (lambda: SpecAugment(seed=1, generator=torch.Generator()), ValueError, r"pass seed= or generator=, not both"),
        (lambda: SpecAugment(seed=True), TypeError, r"seed must be an int, got bool True"),
        (lambda: SpecAugment(generator=0), TypeError, r"generator must be a torch.Generator, got int"),
        (lambda: SpecAugment(seed=0)(torch.randn(4, 10)), ValueError,
         r"inputs must have at least 3 dimensions \(B, F, T\) or \(B, C, F, T\), got shape \(4, 10\)"),
        (lambda: SpecAugment(seed=0)(torch.randn(1, 1, 1, 2, 2)), ValueError, r"at most 4 dimensions"),
        (lambda: SpecAugment(seed=0)(torch.zeros(2, 3, 4, dtype=torch.long)), TypeError, r"floating-point tensor"),
        (lambda: SpecAugment(seed=0)(torch.randn(1, 4, 5).expand(3, 4, 5)), ValueError, r"share memory"),
        (lambda: SpecAugment(seed=0).load_state_dict({}), TypeError, r"state must be what SpecAugment.state_dict"),
        (lambda: SpecAugment(seed=0).load_state_dict({"generator": torch.zeros(3)}), TypeError,
         r"state\['generator'\] must be the uint8 tensor of Generator.get_state"),
    ],
)  # fmt: skip
def test_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_generator_state_that_does_not_load_changes_nothing():
    augment = SpecAugment(seed=0)
    before = augment.generator.get_state()
    with pytest.raises(ValueError, match=r"state\['generator'\] is not a CPU generator state"):
        augment.load_state_dict({"generator": torch.zeros(7, dtype=torch.uint8)})
    assert torch.equal(augment.generator.get_state(), before)


def test_an_empty_spectrogram_passes_through_unchanged():
    """SpecAugment masks nothing on an empty axis (the mixers' refusal of empty sample axes is not its)."""
    for shape in ((4, 8, 0), (4, 0, 8)):
        spec = torch.rand(shape)
        assert torch.equal(SpecAugment(seed=0)(spec), spec)
