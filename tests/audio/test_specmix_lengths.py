"""SpecMix with lengths: its bands fall on frames valid in clip and partner; its label weight is the share kept."""

from __future__ import annotations

import pytest
import torch
from conftest import looped, vectorised

import multimix
from multimix.audio import SpecMix

FREQ, T, PAD = 12, 40, -100.0
LENGTHS = torch.tensor([10, 40, 25, 0, 33, 18])


def padded(lengths=LENGTHS):
    """Clip i holds the value i + 1 on its valid frames and PAD after them: a cell's value names its source."""
    x = torch.full((len(lengths), FREQ, T), PAD)
    for i, n in enumerate(lengths.tolist()):
        x[i, :, :n] = i + 1
    return x


def mixed(per_sample=True, seed=0, lengths=LENGTHS, adapter=None, **options):
    mixer = multimix.Mixer(adapter or SpecMix(1.0, **options), num_classes=6, per_sample=per_sample, seed=seed)
    return mixer(padded(lengths), torch.arange(len(lengths)), lengths=lengths)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_bands_fall_on_valid_frames_and_the_label_weight_is_the_share_of_them_kept(per_sample, seed):
    out = mixed(per_sample, seed, time_bands=2, freq_bands=2)
    for i, n in enumerate(LENGTHS.tolist()):
        clip = out.inputs[i]
        assert (clip[:, n:] == PAD).all()  # padding frames take nothing from the partner
        assert not out.region.time_mask[i, n:].any()
        own = (clip[:, :n] == i + 1).double().mean() if n else torch.tensor(1.0, dtype=torch.float64)
        assert float(out.lam[i]) == pytest.approx(float(own), abs=1e-6)
    assert (out.lam < 1).any()  # the bands took something


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_the_partners_padding_is_neither_pasted_nor_labelled(per_sample, seed):
    """Every cell a clip takes from its partner holds the partner's sound, so the partner's label weight (1 - lam)
    is the share of the clip's frames that shows it (a shorter partner's padding was pasted and counted)."""
    out = mixed(per_sample, seed, time_bands=2, freq_bands=2)
    for i, n in enumerate(LENGTHS.tolist()):
        if n == 0:
            continue
        clip, partner = out.inputs[i, :, :n], int(out.index[i])
        assert set(clip.unique().tolist()) <= {i + 1.0, partner + 1.0}  # no PAD among the valid frames
        shown = (clip == partner + 1).double().mean() if partner != i else torch.tensor(0.0, dtype=torch.float64)
        assert 1.0 - float(out.lam[i]) == pytest.approx(float(shown), abs=1e-6)
    assert (out.lam < 1).any()


def test_a_padding_mask_gives_what_the_lengths_give():
    by_lengths = mixed(seed=2)
    mask = torch.arange(T).unsqueeze(0) < LENGTHS.unsqueeze(1)
    mixer = multimix.Mixer(SpecMix(1.0), num_classes=6, per_sample=True, seed=2)
    by_mask = mixer(padded(), torch.arange(len(LENGTHS)), lengths=mask)
    assert torch.equal(by_mask.inputs, by_lengths.inputs) and torch.equal(by_mask.lam, by_lengths.lam)
    assert torch.equal(by_mask.lengths, mask) and torch.equal(by_lengths.lengths, LENGTHS)  # each clip's own


def test_bands_follow_the_valid_frames_of_a_mask_that_is_not_a_prefix():
    """Left padding: the time bands count valid frames by rank, wherever they lie."""
    mask = torch.arange(T).flip(0).unsqueeze(0) < LENGTHS.unsqueeze(1)  # valid frames at the end
    x = torch.where(mask.unsqueeze(1), torch.arange(1.0, 7.0).view(6, 1, 1), PAD).expand(6, FREQ, T).clone()
    out = multimix.Mixer(SpecMix(1.0), num_classes=6, per_sample=True, seed=1)(x, torch.arange(6), lengths=mask)
    for i in range(6):
        assert (out.inputs[i][:, ~mask[i]] == PAD).all()
        assert not (out.region.time_mask[i] & ~mask[i]).any()
        n = int(mask[i].sum())
        own = (out.inputs[i][:, mask[i]] == i + 1).double().mean() if n else torch.tensor(1.0, dtype=torch.float64)
        assert float(out.lam[i]) == pytest.approx(float(own), abs=1e-6)


def test_full_length_clips_mix_as_without_lengths():
    full = torch.full((6,), T)
    with_lengths = mixed(seed=3, lengths=full)
    plain = multimix.Mixer(SpecMix(1.0), num_classes=6, per_sample=True, seed=3)(padded(full), torch.arange(6))
    assert torch.equal(with_lengths.inputs, plain.inputs) and torch.equal(with_lengths.lam, plain.lam)


def test_frame_labels_follow_the_fitted_bands():
    """A frame in a time band is the partner's; elsewhere in the clip it keeps 1 - cut bins / F; padding keeps all."""
    mixer = multimix.Mixer(SpecMix(1.0), num_classes=3, per_sample=True, seed=0)
    frames = torch.arange(T).repeat(6, 1) % 3
    out = mixer(padded(), frames, lengths=LENGTHS)
    region, own = out.region, out.mix.weight
    kept_bins = 1 - region.freq_mask.sum(1, keepdim=True, dtype=torch.float64) / FREQ
    expected = torch.where(region.time_mask, 0.0, torch.where(region.span, kept_bins, 1.0))
    expected = torch.where(out.plan.mixed.view(-1, 1), expected, 1.0)
    torch.testing.assert_close(own.double(), expected)


@pytest.mark.parametrize("per_sample", [False, True])
def test_the_cpu_loop_the_vectorised_path_and_a_traced_step_agree(per_sample):
    mixer = multimix.Mixer(SpecMix(1.0), num_classes=6, per_sample=per_sample, seed=4)
    plan = mixer.plan_for(padded())
    y = torch.arange(6)
    outs = [multimix.Mixer(path(SpecMix(1.0)), num_classes=6, per_sample=per_sample).apply(padded(), y, plan,
                                                                                       lengths=LENGTHS)
            for path in (looped, vectorised)]  # fmt: skip
    torch._dynamo.reset()
    traced = torch.compile(mixer.apply, fullgraph=True, backend="eager")(padded(), y, plan, lengths=LENGTHS)
    for out in (outs[1], traced):
        assert torch.equal(out.inputs, outs[0].inputs) and torch.equal(out.lam, outs[0].lam)
        assert torch.equal(out.targets, outs[0].targets)


@pytest.mark.parametrize("adapter", [SpecMix(1.0, time_axis=-2), multimix.audio.SpecMixup(1.0, time_axis=-2)])
def test_lengths_with_time_on_the_second_to_last_axis_are_refused_before_the_draw(adapter):
    mixer = multimix.Mixer(adapter, num_classes=6, per_sample=True, seed=0)
    state = mixer.generator.get_state()
    with pytest.raises(ValueError, match=r"lengths / padding masks run along the last axis"):
        mixer(torch.randn(6, T, FREQ), torch.arange(6), lengths=torch.full((6,), 5))
    assert torch.equal(mixer.generator.get_state(), state)


@pytest.mark.parametrize("switch", ["batch", "sample"])
def test_frame_labels_are_refused_when_the_adapters_label_different_positions(switch):
    """SpecMixup's frame labels (B, T) cannot follow FMix's (F, T) mask: refused at once, not on the calls that
    happen to draw FMix (a RuntimeError after the draw)."""
    mixer = multimix.Mixer([multimix.audio.SpecMixup(1.0), multimix.image.FMix(1.0)], num_classes=3, per_sample=True,
                           switch=switch, seed=0)  # fmt: skip
    state = mixer.generator.get_state()
    with pytest.raises(ValueError, match=r"targets: label maps follow .* \(0: SpecMixup \(20,\), 1: FMix \(40, 20\)\)"):
        mixer(torch.randn(6, 40, 20), torch.randint(0, 3, (6, 20)))
    assert torch.equal(mixer.generator.get_state(), state)
    assert mixer(torch.randn(6, 40, 20), torch.randint(0, 3, (6,))).targets.shape == (6, 3)  # class labels mix
    rows = torch.softmax(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), 1)
    torch.testing.assert_close(mixer(torch.randn(6, 40, 20), rows).targets.sum(1), torch.ones(6))  # and rows
    same_class = multimix.Mixer([SpecMix(1.0), SpecMix(1.0, time_axis=-2)], num_classes=3, seed=0)
    with pytest.raises(ValueError, match=r"\(0: SpecMix \(20,\), 1: SpecMix \(40,\)\)"):
        same_class(torch.randn(6, 40, 20), torch.randint(0, 3, (6, 20)))


def test_dict_fields_share_specmix_bands_only_where_they_fit():
    """SpecMix's bands span frequency as well as time: one SpecMix object over fields of 40 and 80 mel bins draws
    bands for each (it shared the 40-bin bands and failed); over two fields of one shape it shares them."""
    specmix = SpecMix(1.0)
    mixer = multimix.Mixer({"mel40": specmix, "mel80": specmix}, num_classes=3, per_sample=True, seed=0)
    out = mixer({"mel40": torch.randn(4, 40, 20), "mel80": torch.randn(4, 80, 20), "labels": torch.arange(4) % 3})
    assert out.inputs["mel80"].shape == (4, 80, 20)
    a, b = torch.arange(4.0).view(4, 1, 1).expand(4, 40, 20), torch.arange(4.0).view(4, 1, 1).expand(4, 40, 20)
    twin = multimix.Mixer({"a": specmix, "b": specmix}, num_classes=3, per_sample=True, seed=0)
    out = twin({"a": a.clone(), "b": b.clone(), "labels": torch.arange(4) % 3})
    assert torch.equal(out.inputs["a"], out.inputs["b"]) and not torch.equal(out.inputs["a"], a)


def test_a_switch_is_the_mixers_only_adapter():
    from multimix.switch import Switch

    for adapters in ([multimix.image.Mixup(1.0), Switch([multimix.image.Mixup(1.0), multimix.image.CutMix(1.0)])],
                     {"x": Switch([multimix.image.Mixup(1.0), multimix.image.CutMix(1.0)])}):  # fmt: skip
        with pytest.raises(ValueError, match=r"a Switch chooses an adapter per sample and must be the Mixer's only"):
            multimix.Mixer(adapters, num_classes=3, per_sample=True)


def test_bands_given_by_hand_stay_where_they_are_on_the_valid_frames():
    """A region built by hand has no draws to fit: its bands are kept, cut to each clip's frames."""
    from conftest import fixed_plan

    from multimix.audio.specmix import Bands

    lengths = torch.tensor([10, 40])
    time, freq = torch.tensor([[[5, 20]], [[5, 20]]]), torch.tensor([[[0, 3]], [[0, 3]]])
    fmask = torch.zeros(2, FREQ, dtype=torch.bool)
    fmask[:, :3] = True
    tmask = torch.zeros(2, T, dtype=torch.bool)
    tmask[:, 5:20] = True
    bands = Bands(time, freq, torch.zeros(2, dtype=torch.float64), fmask, tmask)
    plan = fixed_plan([1, 0], [0.5, 0.5]).with_region(bands)
    out = multimix.Mixer(SpecMix(1.0), num_classes=6).apply(padded(lengths), torch.arange(2), plan, lengths=lengths)
    assert (out.inputs[0, :, 10:] == PAD).all() and (out.inputs[0, 3:, 5:10] == 2).all()
    own = 1 - (5 * FREQ + 3 * 10 - 5 * 3) / (FREQ * 10)  # 5 frames of the clip's 10, and 3 bins elsewhere
    assert float(out.lam[0]) == pytest.approx(own)

