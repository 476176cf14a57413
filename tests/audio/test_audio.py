import math

import pytest
import torch
from conftest import fixed_plan, looped, vectorised
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

import multimix
from multimix.audio import PadCollate, SpecMix, SpecMixup, WaveMix, logaddexp_mix
from multimix.image import CutMix, Mixup
from multimix.lengths import Validity, check_lengths

PATHS = [looped, vectorised]
PLAN = fixed_plan([2, 0, 1, 3], [0.25, 0.6, 0.0, 0.5])  # sample 3 is its own partner


def spectrogram(shape=(4, 5, 7), seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(4, 5, 7), (4, 2, 5, 7)])
def test_spec_mixup_log_domain_is_lerp(path, shape):
    x = spectrogram(shape)
    original = x.clone()
    out, lam = path(SpecMixup(1.0)).apply(x, PLAN, None)
    w = PLAN.lam.view(-1, *([1] * (len(shape) - 1))).float()
    torch.testing.assert_close(out, w * original + (1 - w) * original[PLAN.index])
    assert torch.equal(lam, PLAN.lam)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("db", [False, True])
def test_spec_mixup_power_domain_is_exp_lerp_log(path, db):
    x = spectrogram() * (10 if db else 1)
    original = x.clone().double()
    out, _ = path(SpecMixup(1.0, domain="power", db=db)).apply(x, PLAN, None)
    w = PLAN.lam.view(-1, 1, 1)
    if db:
        expected = 10 * torch.log10(w * 10 ** (original / 10) + (1 - w) * 10 ** (original[PLAN.index] / 10))
    else:
        expected = torch.log(w * original.exp() + (1 - w) * original[PLAN.index].exp())
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(out[3], original[3].float())  # its own partner: unchanged


@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(-30, 30),
    b=st.floats(-30, 30),
    lam=st.floats(0, 1),
    db=st.booleans(),
)
def test_power_domain_is_never_below_the_log_domain(a, b, lam, db):
    """Jensen: log is concave, so mixing powers gives at least the mix of logs."""
    ta, tb = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    power = float(logaddexp_mix(ta, tb, torch.tensor(lam, dtype=torch.float64), db=db))
    assert power >= lam * a + (1 - lam) * b - 1e-9
    assert power <= max(a, b) + 1e-9


def test_logaddexp_mix_handles_extreme_values():
    a, b = torch.tensor([-1e4, 1e4]), torch.tensor([1e4, -1e4])
    out = logaddexp_mix(a, b, torch.tensor(0.5))
    torch.testing.assert_close(out, torch.tensor([1e4 + math.log(0.5)] * 2))


@pytest.mark.parametrize("db", [False, True])
@pytest.mark.parametrize("per_sample", [False, True])
def test_power_domain_backpropagates_to_a_trainable_front_end(db, per_sample):
    """The gradient of the power-domain mix is the one of its formula, log(lam e^a + (1 - lam) e^b), on the CPU too
    (whose in-place route overwrote tensors autograd keeps)."""
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(4, 8, 10, dtype=torch.float64, generator=generator, requires_grad=True)
    mixer = multimix.Mixer(SpecMixup(1.0, domain="power", db=db), num_classes=4, per_sample=per_sample, seed=0)
    out = mixer(source * 10, torch.arange(4))
    (out.inputs * torch.linspace(-1, 1, 10, dtype=torch.float64)).sum().backward()
    scale = math.log(10) / 10 if db else 1.0
    lam, x = out.lam.view(4, 1, 1), source.detach().clone().requires_grad_(True)
    spec = x * 10 * scale
    expected = torch.logaddexp(spec + lam.log(), spec[out.index] + (1 - lam).log()) / scale
    (expected * torch.linspace(-1, 1, 10, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(source.grad, x.grad)


@pytest.mark.parametrize("trainable", ["a", "b"])
def test_logaddexp_mix_backpropagates_to_either_side(trainable):
    """A trainable front end's output mixed with a fixed bank (or the other way round) on the CPU."""
    generator = torch.Generator().manual_seed(1)
    a, b = (torch.randn(3, 5, dtype=torch.float64, generator=generator) * 5 for _ in range(2))
    lam = torch.tensor([[0.2], [0.5], [0.9]], dtype=torch.float64)
    (a if trainable == "a" else b).requires_grad_(True)
    logaddexp_mix(a, b, lam).sum().backward()
    leaf = a if trainable == "a" else b
    x, y = a.detach().clone().requires_grad_(trainable == "a"), b.detach().clone().requires_grad_(trainable == "b")
    torch.logaddexp(x + lam.log(), y + (1 - lam).log()).sum().backward()
    torch.testing.assert_close(leaf.grad, (x if trainable == "a" else y).grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("domain", ["log", "power"])
def test_spec_mixup_loop_equals_the_vectorised_path_in_every_dtype(dtype, domain):
    """Both paths weigh each sample by the same dtype-rounded weights (the loop used host floats and a fused add)."""
    x = (torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(0)) * 30 - 40).to(dtype)
    x[1, :, :3] = -math.inf  # silence, log 0
    for per_sample in (False, True):
        plan = multimix.Mixer(SpecMixup(1.0), num_classes=4, per_sample=per_sample, p=0.75, seed=1).draw(4)
        a, _ = looped(SpecMixup(1.0, domain=domain)).apply(x.clone(), plan, None)
        b, _ = vectorised(SpecMixup(1.0, domain=domain)).apply(x.clone(), plan, None)
        assert torch.equal(a, b)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_spec_mixup_log_domain_labels_the_share_its_rounded_weights_hold(path, dtype):
    """In the log domain each side has its own weight; rounded to bfloat16 they need not sum to 1 (lam 0.0085 kept
    0.0078125 of the sample): the label is own / (own + other) of the rounded weights; float32 keeps the drawn lam."""
    lam = torch.tensor([0.0085, 0.6, 0.3, 0.97], dtype=torch.float64)
    plan = fixed_plan([2, 0, 1, 3], lam.tolist())
    x = spectrogram().to(dtype)
    mixed, label = path(SpecMixup(1.0)).apply(x.clone(), plan, None)
    own, other = lam.to(dtype).double(), (1 - lam).to(dtype).double()
    partner = x[[2, 0, 1, 3]]
    torch.testing.assert_close(mixed, x * own.to(dtype).view(4, 1, 1) + partner * other.to(dtype).view(4, 1, 1))
    want = own / (own + other) if dtype != torch.float32 else lam
    torch.testing.assert_close(label.double(), want, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("domain", ["log", "power"])
def test_spec_mixup_low_precision(dtype, domain):
    x = spectrogram().to(dtype)
    reference = x.float()
    out, _ = SpecMixup(1.0, domain=domain).apply(x, PLAN, None)
    expected, _ = SpecMixup(1.0, domain=domain).apply(reference, PLAN, None)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.02)


@pytest.mark.parametrize("path", PATHS)
def test_silence_mixes_without_nan(path):
    """log 0 = -inf: the power domain mixes it exactly, the log domain gives -inf; never NaN."""
    x = spectrogram()
    x[0, 1, :] = -math.inf  # sample 0 silent in one band; its partner (2) is not
    x[1, 1, :] = -math.inf  # sample 1 silent there too, and its partner is sample 0: both silent
    plan = fixed_plan([2, 0, 1, 3], [0.25, 0.6, 0.3, 0.5])
    original = x.clone()
    power, _ = path(SpecMixup(1.0, domain="power")).apply(x.clone(), plan, None)
    torch.testing.assert_close(power[0, 1], math.log(0.75) + original[2, 1])
    assert torch.equal(power[1, 1], torch.full((7,), -math.inf))
    log, _ = path(SpecMixup(1.0)).apply(x.clone(), plan, None)
    assert torch.equal(log[0, 1], torch.full((7,), -math.inf)) and not log.isnan().any()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_spec_mix_lam_is_the_kept_fraction(path, per_sample):
    n, f, t = 6, 16, 40
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1).expand(n, f, t).contiguous()
    mixer = multimix.Mixer(path(SpecMix(1.0, max_time_width=12)), num_classes=n, per_sample=per_sample, seed=2)
    out = mixer(x, torch.arange(n))
    for i in range(n):
        assert float((out.inputs[i] == i).float().mean()) == pytest.approx(float(out.lam[i]), abs=1e-6)
    widths = out.region.time[..., 1] - out.region.time[..., 0]
    assert (widths <= 12).all()
    if not per_sample:
        assert (out.region.time == out.region.time[0]).all()


def test_spec_mix_paths_agree_and_bands_are_time_and_frequency():
    x = spectrogram((5, 2, 12, 30))
    plan = fixed_plan([1, 2, 3, 4, 0], [0.5, 0.7, 0.3, 0.9, 0.6])
    adapter = SpecMix(1.0, time_bands=1, freq_bands=1)
    region = adapter.draw_region(x, plan, torch.Generator().manual_seed(0))
    a, lam_a = looped(SpecMix(1.0)).apply(x.clone(), plan, region)
    b, lam_b = vectorised(SpecMix(1.0)).apply(x.clone(), plan, region)
    assert torch.equal(a, b) and torch.equal(lam_a, lam_b)
    (t1, t2), (f1, f2) = region.time[0, 0].tolist(), region.freq[0, 0].tolist()
    assert torch.equal(a[0][..., t1:t2], x[1][..., t1:t2]) and torch.equal(a[0][..., f1:f2, :], x[1][..., f1:f2, :])
    cut = (t2 - t1) * 12 + (f2 - f1) * 30 - (t2 - t1) * (f2 - f1)
    assert float(lam_a[0]) == pytest.approx(1 - cut / 360)


@pytest.mark.parametrize("path", PATHS)
def test_wave_mix_with_lengths_by_hand(path):
    x = torch.stack([torch.ones(6), torch.full((6,), 2.0)])
    x[0, 4:] = 7.0  # padding garbage must not leak into the mix
    valid = Validity.of(check_lengths(torch.tensor([4, 6]), 2, 6), 6)
    plan = fixed_plan([1, 0], [0.25, 0.5])
    out, lam = path(WaveMix(1.0)).apply(x, plan, None, valid)
    assert out[0].tolist() == [1.75, 1.75, 1.75, 1.75, 1.5, 1.5]  # 0.25 * 1 + 0.75 * 2, then 0.75 * 2
    assert out[1].tolist() == [1.5, 1.5, 1.5, 1.5, 1.0, 1.0]  # 0.5 * 2 + 0.5 * 1, then 0.5 * 2
    # duration-weighted: 0.25 * 4 / (0.25 * 4 + 0.75 * 6); 0.5 * 6 / (0.5 * 6 + 0.5 * 4)
    torch.testing.assert_close(lam, torch.tensor([1 / 5.5, 0.6], dtype=torch.float64))


@pytest.mark.parametrize("path", PATHS)
def test_wave_mix_energy_label_weight_by_hand(path):
    x = torch.stack([torch.ones(4), torch.full((4,), 3.0)])
    plan = fixed_plan([1, 0], [0.5, 0.5])
    _, lam = path(WaveMix(1.0, label_weight="energy")).apply(
        x, plan, None, Validity.of(check_lengths(torch.tensor([4, 2]), 2, 4), 4)
    )
    # energies 4 and 18: 0.25 * 4 / (0.25 * 4 + 0.25 * 18)
    torch.testing.assert_close(lam, torch.tensor([4 / 22, 18 / 22], dtype=torch.float64))


def test_wave_mix_lengths_and_masks_through_the_mixer():
    waves = torch.randn(5, 2, 50)
    lengths = torch.tensor([50, 10, 30, 0, 25])
    a = multimix.Mixer(WaveMix(1.0), num_classes=5, per_sample=True, seed=1)(
        waves.clone(), torch.arange(5), lengths=lengths
    )
    mask = torch.arange(50) < lengths[:, None]
    b = multimix.Mixer(WaveMix(1.0), num_classes=5, per_sample=True, seed=1)(
        waves.clone(), torch.arange(5), lengths=mask
    )
    torch.testing.assert_close(a.inputs, b.inputs)
    expected = torch.where(a.plan.mixed, torch.maximum(lengths, lengths[a.index]), lengths)
    assert torch.equal(a.lengths, expected)
    assert torch.equal(b.lengths, torch.arange(50) < expected[:, None])
    torch.testing.assert_close(a.targets.sum(1), torch.ones(5))


def test_spectrogram_lengths_are_united():
    spec = spectrogram((4, 5, 10))
    lengths = torch.tensor([10, 3, 7, 5])
    out = multimix.Mixer(SpecMixup(1.0), num_classes=4, seed=0)(spec, torch.arange(4), lengths=lengths)
    assert torch.equal(out.lengths, torch.where(out.plan.mixed, torch.maximum(lengths, lengths[out.index]), lengths))


@pytest.mark.parametrize("per_sample", [False, True])
def test_same_seed_same_plan_across_audio_and_image_adapters(per_sample):
    plans = []
    for adapter, x in [
        (SpecMixup(0.5), spectrogram((8, 5, 7))),
        (SpecMix(0.5), spectrogram((8, 5, 7))),
        (WaveMix(0.5), torch.randn(8, 100)),
        (Mixup(0.5), torch.randn(8, 3, 4, 4)),
        (CutMix(0.5), torch.randn(8, 3, 4, 4)),
    ]:
        plans.append(multimix.Mixer(adapter, num_classes=8, per_sample=per_sample, seed=5)(x, torch.arange(8)).plan)
    for plan in plans[1:]:
        assert torch.equal(plan.index, plans[0].index) and torch.equal(plan.lam, plans[0].lam)


def test_pad_collate_in_dataloader_workers():
    clips = [(torch.randn(100 + 10 * i), i % 3) for i in range(12)]
    mixer = multimix.Mixer(WaveMix(1.0), num_classes=3, per_sample=True, seed=0)
    loader = DataLoader(clips, batch_size=4, collate_fn=PadCollate(mixer), num_workers=2)
    batches = list(loader)
    assert [b.inputs.shape[1] for b in batches] == [130, 170, 210]
    for batch, start in zip(batches, (0, 4, 8), strict=True):
        raw = torch.tensor([100 + 10 * (start + k) for k in range(4)])
        assert torch.equal(batch.lengths, torch.where(batch.plan.mixed, torch.maximum(raw, raw[batch.index]), raw))


@pytest.mark.parametrize(
    ("adapter", "x", "lengths", "error", "match"),
    [
        (
            WaveMix(1.0),
            torch.randn(3, 10),
            torch.tensor([1, 2]),
            ValueError,
            r"lengths must have shape \(3,\) .*got \(2,\)",
        ),
        (
            WaveMix(1.0),
            torch.randn(3, 10),
            torch.tensor([1, -2, 3]),
            ValueError,
            r"lengths must lie in \[0, 10\] .*got values in \[-2, 3\]",
        ),
        (WaveMix(1.0), torch.randn(3, 10), torch.tensor([1, 2, 11]), ValueError, r"lengths must lie in \[0, 10\]"),
        (
            WaveMix(1.0),
            torch.randn(3, 10),
            torch.tensor([1.0, 2.0, 3.0]),
            TypeError,
            r"lengths \(B,\) must be integers",
        ),
        (WaveMix(1.0), torch.randn(3, 10), torch.ones(3, 9), ValueError, r"a padding mask must have shape \(3, 10\)"),
        (WaveMix(1.0), torch.randn(3, 10), torch.full((3, 10), 2), ValueError, r"a padding mask must hold only 0/1"),
        (
            WaveMix(1.0),
            torch.randn(3),
            None,
            ValueError,
            r"inputs must have at least 2 dimensions \(B, T\) or \(B, C, T\)",
        ),
        (WaveMix(1.0), torch.randn(3, 1, 1, 10), None, ValueError, r"inputs must have at most 3 dimensions"),
        (SpecMixup(1.0), torch.randn(3, 10), None, ValueError, r"at least 3 dimensions \(B, F, T\) or \(B, C, F, T\)"),
        (
            SpecMix(1.0, max_time_width=11),
            torch.randn(3, 4, 10),
            None,
            ValueError,
            r"max_time_width=11 is larger than the time axis of inputs \(10\); use <= 10",
        ),
        (
            SpecMix(1.0, max_freq_width=5),
            torch.randn(3, 4, 10),
            None,
            ValueError,
            r"max_freq_width=5 is larger than the frequency axis of inputs \(4\)",
        ),
    ],
)
def test_audio_input_errors_change_nothing(adapter, x, lengths, error, match):
    original = x.clone()
    mixer = multimix.Mixer(adapter, num_classes=3, seed=0)
    with pytest.raises(error, match=match):
        mixer(x, torch.arange(x.shape[0]) % 3, lengths=lengths)
    assert torch.equal(x, original)


def test_audio_constructor_errors():
    with pytest.raises(ValueError, match=r"domain must be 'log' or 'power', got 'linear'"):
        SpecMixup(1.0, domain="linear")
    with pytest.raises(TypeError, match=r"db must be a bool, got str"):
        SpecMixup(1.0, db="yes")
    with pytest.raises(ValueError, match=r"time_bands must be an int >= 1, got 0"):
        SpecMix(1.0, time_bands=0)
    with pytest.raises(ValueError, match=r"label_weight must be 'duration', 'energy' or 'lam', got 'rms'"):
        WaveMix(1.0, label_weight="rms")
    with pytest.raises(TypeError, match=r"mixer must be a multimix.Mixer, got str"):
        PadCollate("mixer")
    with pytest.raises(ValueError, match=r"samples is empty"):
        PadCollate(multimix.Mixer(WaveMix(1.0), num_classes=2))([])
    with pytest.raises(ValueError, match=r"lengths= works with tensor batches"):
        multimix.Mixer({"wave": WaveMix(1.0)}, num_classes=2)(
            {"wave": torch.randn(2, 5), "labels": torch.arange(2)}, lengths=torch.tensor([5, 5])
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("make", "shape", "lengths"),
    [
        (lambda: SpecMix(1.0), (4, 2, 6, 9), None),
        (lambda: WaveMix(1.0), (4, 2, 30), torch.tensor([30, 12, 20, 5])),
        (lambda: WaveMix(1.0, label_weight="energy"), (4, 30), None),
    ],
)
def test_audio_low_precision_matches_float32(dtype, path, make, shape, lengths):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    low = multimix.Mixer(path(make()), num_classes=4, per_sample=True, seed=3)(
        x.to(dtype), torch.arange(4), lengths=lengths
    )
    full = multimix.Mixer(path(make()), num_classes=4, per_sample=True, seed=3)(
        x.clone(), torch.arange(4), lengths=lengths
    )
    assert low.inputs.dtype == dtype
    torch.testing.assert_close(low.inputs.float(), full.inputs, atol=0.05, rtol=0.02)
    torch.testing.assert_close(low.lam, full.lam, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("label_weight", ["lam", "duration"])
def test_bf16_wavemix_without_lengths_labels_the_lam_it_applied_and_blends_as_mixup(label_weight):
    """Without lengths WaveMix is Mixup's blend: in bfloat16 its label follows the rounded weight, as Mixup's."""
    waves = torch.randn(8, 2, 64, generator=torch.Generator().manual_seed(0)).bfloat16()
    labels = torch.arange(8) % 4
    wave = multimix.Mixer(WaveMix(1.0, label_weight=label_weight, inplace=False), num_classes=4, per_sample=True,
                          seed=3)(waves, labels)  # fmt: skip
    image = multimix.Mixer(Mixup(1.0, inplace=False), num_classes=4, per_sample=True, seed=3)(
        waves.unsqueeze(-1), labels
    )
    applied = 1.0 - (1.0 - wave.plan.lam).to(torch.bfloat16).double()
    assert torch.equal(wave.lam, applied.float())
    assert (applied - wave.plan.lam).abs().max() > 1e-4  # the drawn lam would be off by this much
    assert torch.equal(wave.lam, image.lam)
    assert torch.equal(wave.inputs, image.inputs.squeeze(-1))
    torch.testing.assert_close(wave.targets, image.targets, rtol=0, atol=0)


@pytest.mark.parametrize("lengths", [None, "lengths", "mask"])
@pytest.mark.parametrize("label_weight", ["lam", "duration"])
def test_bf16_wavemix_loop_blends_by_the_weight_it_labels(lengths, label_weight):
    """On the CPU loop (clips of 16,000 samples) a bfloat16 blend applies 1 - lam rounded to bfloat16, as the
    vectorised path does, and labels that weight: the loop gives the vectorised path's inputs and labels."""
    g = torch.Generator().manual_seed(4)
    waves, labels = torch.randn(4, 16000, generator=g).bfloat16(), torch.tensor([0, 1, 2, 1])
    valid = torch.tensor([16000, 9000, 12000, 16000])
    given = {None: None, "lengths": valid, "mask": torch.arange(16000) < valid[:, None]}[lengths]
    outs = []
    for path in (looped, vectorised):
        mixer = multimix.Mixer(path(WaveMix(1.0, label_weight=label_weight, inplace=False)), num_classes=3,
                               per_sample=True, seed=5)  # fmt: skip
        outs.append(mixer(waves, labels, lengths=given))
    loop, vector = outs
    applied = 1.0 - (1.0 - loop.plan.lam).to(torch.bfloat16).double()
    if label_weight == "lam" or lengths is None:
        assert torch.equal(loop.lam, applied.float())
    torch.testing.assert_close(loop.lam, vector.lam, rtol=0, atol=1e-7)
    if lengths is None:
        assert torch.equal(loop.inputs, vector.inputs)  # both lerp with the same bf16 weight
    else:  # the loop multiplies and adds (two roundings to bf16), the vectorised path lerps (one)
        torch.testing.assert_close(loop.inputs.float(), vector.inputs.float(), rtol=0, atol=2e-2)


def test_float32_wavemix_loop_with_lengths_weighs_each_source_by_the_drawn_lam_exactly():
    """In float32 the loop's own weight is lam itself, not 1 - (1 - lam): the result is lam * x + (1 - lam) * partner,
    each source silenced beyond its length, bit for bit."""
    g = torch.Generator().manual_seed(6)
    waves, valid = torch.randn(4, 6000, generator=g), torch.tensor([6000, 3000, 4500, 6000])
    out = multimix.Mixer(looped(WaveMix(1.0, label_weight="lam", inplace=False)), num_classes=3, per_sample=True,
                         seed=6)(waves, torch.tensor([0, 1, 2, 1]), lengths=valid)  # fmt: skip
    lam, index = out.plan.lam.tolist(), out.index.tolist()
    for i, j in enumerate(index):
        want = waves[i].clone()
        want[valid[i] :] = 0
        want.mul_(lam[i])
        want[: valid[j]].add_(waves[j][: valid[j]], alpha=1.0 - lam[i])
        assert torch.equal(out.inputs[i], want), i


@pytest.mark.parametrize("adapter", [SpecMixup(1.0, inplace=False), SpecMixup(1.0, domain="power", inplace=False),
                                     SpecMix(1.0, inplace=False)])  # fmt: skip
@pytest.mark.parametrize("path", [looped, vectorised])
def test_a_new_spectrogram_batch_keeps_the_inputs_memory_layout(adapter, path):
    """(B, C, F, T) spectrograms kept channels_last (SpecMix's select took the gathered partner's layout)."""
    x = torch.randn(4, 2, 8, 16).to(memory_format=torch.channels_last)
    out = multimix.Mixer(path(adapter), num_classes=4, per_sample=True, seed=0)(x, torch.arange(4))
    assert out.inputs is not x and out.inputs.is_contiguous(memory_format=torch.channels_last)
