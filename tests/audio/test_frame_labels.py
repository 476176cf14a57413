"""Frame labels (B, T) and frame rows (B, T, C) along the spectrogram's time axis follow the audio mix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import fixed_plan
from torch import nn

import multimix
from multimix.audio import SpecMix, SpecMixup, WaveMix
from multimix.audio.specmix import Bands
from multimix.targets import label_weights

C, FREQ, T = 3, 8, 20


def encoded(seed=0, batch=6):
    """Spectrograms whose every bin of frame t holds that frame's label: a frame's mean shows its label mix."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (batch, T), generator=g)
    return labels.float().unsqueeze(1).expand(batch, FREQ, T).clone(), labels


def expected_label(targets):
    """``sum_c c * p_c`` of soft frame labels ``(B, C, T)``."""
    return (targets * torch.arange(C, dtype=targets.dtype).view(1, C, 1)).sum(1)


def test_specmix_frames_on_fixed_bands():
    """A time band hands whole frames over; a frequency band of k bins gives every other frame (1 - k / F) own."""
    x, y = encoded(batch=2)
    plan = fixed_plan([1, 0], [0.5, 1.0])
    time = torch.tensor([[[2, 5]], [[0, 0]]])
    freq = torch.tensor([[[0, 2]], [[0, 0]]])
    fmask = torch.zeros(2, FREQ, dtype=torch.bool)
    fmask[0, :2] = True
    tmask = torch.zeros(2, T, dtype=torch.bool)
    tmask[0, 2:5] = True
    bands = Bands(time, freq, torch.tensor([0.0, 1.0], dtype=torch.float64), fmask, tmask)
    out = multimix.Mixer(SpecMix(1.0), num_classes=C).apply(x.clone(), y, plan.with_region(bands))
    expected = torch.zeros(2, C, T)
    for t in range(T):
        own = 0.0 if 2 <= t < 5 else 1 - 2 / FREQ
        expected[0, y[0, t], t] += own
        expected[0, y[1, t], t] += 1 - own
        expected[1, y[1, t], t] = 1.0
    torch.testing.assert_close(out.targets, expected)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("p", [1.0, 0.5])
def test_specmix_frame_labels_follow_the_bins(per_sample, p):
    mixer = multimix.Mixer(SpecMix(1.0), num_classes=C, per_sample=per_sample, p=p, seed=1)
    for _ in range(3):
        x, y = encoded()
        out = mixer(x, y)
        assert out.targets.shape == (6, C, T)
        torch.testing.assert_close(expected_label(out.targets), out.inputs.mean(1))


def test_specmix_on_time_major_spectrograms():
    x, y = encoded()
    out = multimix.Mixer(SpecMix(1.0, time_axis=-2), num_classes=C, per_sample=True, seed=3)(
        x.transpose(1, 2).contiguous(), y
    )
    torch.testing.assert_close(expected_label(out.targets), out.inputs.mean(2))


def test_specmixup_and_wavemix_lerp_frames_by_lam():
    x, y = encoded()
    out = multimix.Mixer(SpecMixup(1.0), num_classes=C, per_sample=True, seed=0)(x, y)
    lam = out.lam.view(-1, 1, 1)
    onehot = F.one_hot(y, C).permute(0, 2, 1).float()
    torch.testing.assert_close(out.targets, lam * onehot + (1 - lam) * onehot[out.index])
    waves, lengths = torch.randn(6, 800), torch.tensor([800, 400, 600, 700, 800, 100])
    frames = torch.randint(0, C, (6, 10))  # the model's frames, not the samples: any count
    out = multimix.Mixer(WaveMix(1.0), num_classes=C, per_sample=True, seed=0)(waves, frames, lengths=lengths)
    lam = out.lam.view(-1, 1, 1)  # the duration-weighted label lam WaveMix applied
    onehot = F.one_hot(frames, C).permute(0, 2, 1).float()
    torch.testing.assert_close(out.targets, lam * onehot + (1 - lam) * onehot[out.index])
    assert torch.equal(out.lengths, torch.maximum(lengths, lengths[out.index]))


@pytest.mark.parametrize("mode", ["lerp", "union"])
def test_frame_rows_mix_by_mode_and_score_by_position(mode):
    """Multi-label frame rows (sound event detection): lerp of the rows, or their union (maximum)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, FREQ, T, generator=g)
    rows = (torch.rand(4, T, C, generator=g) > 0.5).float()
    mixer = multimix.Mixer(SpecMix(1.0), num_classes=C, per_sample=True, multi_label=True, label_mode=mode, seed=0)
    out = mixer(x, rows)
    own = out.mix.weight.float().unsqueeze(-1)  # each frame's own share
    partner = rows[out.index]
    if mode == "lerp":
        expected = own * rows + (1 - own) * partner
    else:
        expected = torch.maximum((own > 0) * rows, (own < 1) * partner)
    torch.testing.assert_close(out.targets, expected)
    logits = torch.randn(4, T, C, generator=g)
    bce = nn.BCEWithLogitsLoss()
    weights = (own, 1 - own) if mode == "lerp" else ((own > 0).float(), (own < 1).float())
    per_position = weights[0] * F.binary_cross_entropy_with_logits(logits, rows, reduction="none") + weights[
        1
    ] * F.binary_cross_entropy_with_logits(logits, partner, reduction="none")
    torch.testing.assert_close(multimix.mixed_loss(bce, logits, out), per_position.mean())


def test_frame_labels_with_ignored_frames_score_only_valid_ones():
    x, y = encoded(batch=4)
    y[:, -5:] = -100  # padding frames
    x[:, :, -5:] = 0.0
    out = multimix.Mixer(SpecMixup(1.0), num_classes=C, per_sample=True, seed=0)(x, y)
    assert torch.equal(out.targets[..., -5:], torch.zeros(4, C, 5))
    logits = torch.randn(4, C, T)
    lam, partner = out.lam.view(-1, 1), y[out.index]
    ce = nn.CrossEntropyLoss(reduction="none")
    reference = (lam * ce(logits, y) + (1 - lam) * ce(logits, partner)).sum() / (
        lam * (y != -100) + (1 - lam) * (partner != -100)
    ).sum()
    torch.testing.assert_close(multimix.mixed_loss(nn.CrossEntropyLoss(), logits, out), reference)


def test_frame_labels_of_another_length_are_refused():
    mixer = multimix.Mixer(SpecMix(1.0), num_classes=C, seed=0)
    x, _ = encoded()
    state = mixer.generator.get_state()
    with pytest.raises(ValueError, match=r"label maps must have the inputs' positions, shape \(B, 20\), got \(6, 19\)"):
        mixer(x, torch.zeros(6, 19, dtype=torch.long))
    with pytest.raises(ValueError, match=r"rows must have the inputs' positions, shape \(B, 20, 3\), got \(6, 20, 4\)"):
        mixer(x, torch.zeros(6, T, 4))
    assert torch.equal(mixer.generator.get_state(), state)


@pytest.mark.parametrize("mode", ["lerp", "dominant", "original", "union"])
def test_smoothed_frame_rows_are_the_smoothed_rows_of_each_source_weighed_by_mode(mode):
    """With label smoothing, each source's rows are smoothed as timm smooths class rows, then weighed by the mode."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, FREQ, T, generator=g)
    rows = F.one_hot(torch.randint(0, C, (4, T), generator=g), C).float()
    mixer = multimix.Mixer(SpecMix(1.0), num_classes=C, per_sample=True, label_mode=mode, label_smoothing=0.1, seed=0)
    out = mixer(x, rows)
    smooth = rows * 0.9 + 0.1 / C
    own, other = (w.float().unsqueeze(-1) for w in label_weights(out.mix.weight, mode))
    combine = torch.maximum if mode == "union" else torch.add
    torch.testing.assert_close(out.targets, combine(own * smooth, other * smooth[out.index]))
    if mode != "union":
        torch.testing.assert_close(out.targets.sum(-1), torch.ones(4, T))
