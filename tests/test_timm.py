"""timm parity: per-sample adapter switching in the Mixer, CutMix's minmax / correct_lam, and multimix.timm.Mixup.

Reference values come from timm's own ``timm.data.Mixup`` and ``mixup_target`` given the
same lam, partner map and box (injected with monkeypatch, as tests/test_image.py does).
"""

import numpy as np
import pytest
import timm.data.mixup as timm_mixup
import torch
from conftest import flip_index, looped, vectorised
from hypothesis import given, settings
from hypothesis import strategies as st
from timm_cases import fixed_boxes, timm_boxes

import multimix
import multimix.image
import multimix.timm
from multimix.image import CutMix, Mixup
from multimix.plan import MixPlan, draw_plan
from multimix.switch import Switch


def switched_plan(index, lam, choices) -> MixPlan:
    return MixPlan(
        index=torch.as_tensor(index, dtype=torch.long),
        lam=torch.as_tensor(lam, dtype=torch.float64),
        per_sample=True,
        choices=torch.as_tensor(choices, dtype=torch.long),
    )


# ----------------------------------------------------------------------------- per-sample switching (Mixer)


@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_per_sample_switch_equals_timm_elem_mode(monkeypatch, path, smoothing):
    batch = 6
    x = torch.randn(batch, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    lam = np.array([0.3, 0.6, 1.0, 0.45, 0.8, 0.2], dtype=np.float32)
    use_cutmix = np.array([True, False, True, True, False, False])
    boxes = [(1, 7, 2, 9), (0, 4, 0, 12)]  # samples 0 and 3 (sample 2 has lam 1: not mixed)
    reference = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", label_smoothing=smoothing,
                                 num_classes=5)  # fmt: skip
    monkeypatch.setattr(reference, "_params_per_elem", lambda n: (lam.copy(), use_cutmix))
    timm_boxes(monkeypatch, boxes)
    ref_x, ref_y = reference(x.clone(), y)

    mixer = multimix.Mixer([path(Mixup(0.8)), path(CutMix(1.0))], num_classes=5, per_sample=True, switch="sample",
                           label_smoothing=smoothing, seed=0)  # fmt: skip
    plan = switched_plan(flip_index(batch), torch.from_numpy(lam).double(), use_cutmix.astype(np.int64))
    monkeypatch.setattr(mixer, "draw", lambda n: plan)
    fixed_boxes(monkeypatch, boxes)
    out = mixer(x, y)
    assert out.inputs is x  # in place
    torch.testing.assert_close(out.inputs, ref_x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.targets, ref_y)
    expected_lam = [1 - 6 * 7 / 120, 0.6, 1.0, 1 - 4 * 12 / 120, 0.8, 0.2]
    torch.testing.assert_close(out.lam, torch.tensor(expected_lam))


def test_every_sample_reads_its_partners_original_value(monkeypatch):
    # Sample i holds the value 10 * i; the cycle 0 -> 1 -> 2 -> 0 crosses both adapters, so whichever
    # adapter wrote first, the other would read an overwritten partner if it read the batch itself.
    x = (10.0 * torch.arange(3.0)).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()
    plan = switched_plan([1, 2, 0], [0.5, 0.25, 0.5], [0, 1, 0])
    mixer = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=3, per_sample=True, switch="sample", seed=0)
    monkeypatch.setattr(mixer, "draw", lambda n: plan)
    fixed_boxes(monkeypatch, [(0, 1, 0, 2)])  # sample 1 takes the top row of sample 2
    out = mixer(x, torch.arange(3))
    assert out.inputs[:, 0].tolist() == [
        [[5.0, 5.0], [5.0, 5.0]],  # 0.5 * 0 + 0.5 * 10
        [[20.0, 20.0], [10.0, 10.0]],  # sample 2's original top row, not its mixed value 10
        [[10.0, 10.0], [10.0, 10.0]],  # 0.5 * 20 + 0.5 * 0: sample 0 as it was, not 5
    ]
    assert out.lam.tolist() == [0.5, 0.5, 0.5]


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 9),
    p=st.sampled_from([1.0, 0.5, 0.0]),
    seed=st.integers(0, 2**31),
    path=st.sampled_from([looped, vectorised]),
    soft_rows=st.booleans(),
)
def test_switched_targets_rows_sum_to_one_and_unmixed_samples_stay_bit_exact(batch, p, seed, path, soft_rows):
    x = torch.randn(batch, 2, 5, 6, generator=torch.Generator().manual_seed(seed % 1000))
    x[:, 0, 0, 0] = float("inf")  # unmixed samples must keep it exactly (selected, never computed)
    original = x.clone()
    y = torch.arange(batch) % 4
    targets = torch.nn.functional.one_hot(y, 4).float() if soft_rows else y
    mixer = multimix.Mixer([path(Mixup(0.5)), path(CutMix(1.0))], num_classes=4, per_sample=True, switch="sample",
                           p=p, label_smoothing=0.1, seed=seed)  # fmt: skip
    out = mixer(x, targets)
    torch.testing.assert_close(out.targets.sum(1), torch.ones(batch))
    plan = out.plan
    unmixed = ~plan.mixed
    assert torch.equal(out.inputs[unmixed], original[unmixed])
    assert (out.lam[unmixed] == 1).all()
    cut = torch.nonzero(plan.mixed & (plan.choices == 1)).flatten().tolist()  # CutMix's samples
    boxes = out.region[1].region.boxes.tolist() if cut else []  # CutMix's share of the Switch: a box per sample
    for i in torch.nonzero(plan.mixed).flatten().tolist():
        j = int(plan.index[i])
        if int(plan.choices[i]) == 0:  # Mixup: a blend of the two originals
            lam = float(plan.lam[i])
            expected = lam * original[i, :, 1:] + (1 - lam) * original[j, :, 1:]
            torch.testing.assert_close(out.inputs[i, :, 1:], expected, atol=1e-5, rtol=1e-5)
            assert float(out.lam[i]) == pytest.approx(lam, abs=1e-6)
        else:  # CutMix: the partner's original box pasted, the label weight the kept fraction
            y1, y2, x1, x2 = boxes[i]
            expected = original[i].clone()
            expected[:, y1:y2, x1:x2] = original[j, :, y1:y2, x1:x2]
            assert torch.equal(out.inputs[i], expected)
            assert float(out.lam[i]) == pytest.approx(1 - (y2 - y1) * (x2 - x1) / 30, abs=1e-6)


def test_switch_draws_each_lam_from_its_own_adapters_alpha_and_follows_switch_prob():
    g = torch.Generator().manual_seed(0)
    plans = [draw_plan(64, [0.05, 50.0], g, weights=[0.75, 0.25], per_sample=True, switch="sample") for _ in range(40)]
    choices = torch.cat([plan.choices for plan in plans])
    lam = torch.cat([plan.lam for plan in plans])
    assert float(choices.float().mean()) == pytest.approx(0.25, abs=0.03)
    spread = (lam - 0.5).abs()
    assert float(spread[choices == 0].mean()) > 0.4  # Beta(0.05): near 0 or 1
    assert float(spread[choices == 1].mean()) < 0.1  # Beta(50): near 0.5


def test_switch_keeps_inplace_false_and_autograd():
    x = torch.randn(5, 3, 6, 6)
    original = x.clone()
    inplace = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=5, per_sample=True, switch="sample", seed=3)(
        x.clone(), torch.arange(5))
    copy = multimix.Mixer([Mixup(1.0, inplace=False), CutMix(1.0)], num_classes=5, per_sample=True,
                          switch="sample", seed=3)(x, torch.arange(5))  # fmt: skip
    assert copy.inputs is not x and torch.equal(x, original) and torch.equal(copy.inputs, inplace.inputs)
    grad = torch.randn(5, 3, 6, 6, requires_grad=True)
    out = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=5, per_sample=True, switch="sample", seed=0)(
        grad, torch.arange(5))
    out.inputs.sum().backward()
    torch.testing.assert_close(grad.grad.sum(), torch.tensor(float(grad.numel())))  # mixing keeps total mass


@pytest.mark.parametrize("options", [{}, {"p": 0.5}, {"label_smoothing": 0.1}, {"p": 0.0}])
def test_switch_runs_on_meta_tensors(options):
    """No read-back from the device: the whole per-sample switch runs on meta tensors."""
    mixer = multimix.Mixer([Mixup(0.8), CutMix(1.0)], num_classes=5, per_sample=True, switch="sample", seed=0,
                           **options)  # fmt: skip
    x = torch.empty(8, 3, 16, 12, device="meta")
    for _ in range(3):
        out = mixer(x, torch.zeros(8, dtype=torch.long, device="meta"))
        assert out.inputs is x and {out.targets.device, out.lam.device, out.index.device} == {torch.device("meta")}
        assert out.targets.shape == (8, 5)
        assert out.plan.choices is None if options.get("p") == 0.0 else out.plan.choices.shape == (8,)


def test_switch_errors():
    with pytest.raises(ValueError, match=r"switch must be 'batch' .* or 'sample' .*, got 'elem'"):
        multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=3, per_sample=True, switch="elem")
    with pytest.raises(ValueError, match=r"switch='sample' draws one lam per sample .*; pass per_sample=True"):
        multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=3, switch="sample")
    with pytest.raises(ValueError, match=r"switch='sample' chooses among a list of adapters"):
        multimix.Mixer({"pixel_values": Mixup(1.0)}, num_classes=3, per_sample=True, switch="sample")
    mixer = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=3, per_sample=True, switch="sample")
    with pytest.raises(ValueError, match=r"lengths= works with one adapter per batch; .* switch='batch'"):
        mixer(torch.randn(2, 1, 4, 4), torch.arange(2), lengths=torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"switch='sample' draws one lam per sample"):
        draw_plan(4, [1.0, 1.0], torch.Generator(), switch="sample")
    with pytest.raises(ValueError, match=r"Switch needs a plan with per-sample choices"):
        Switch([Mixup(1.0), CutMix(1.0)]).draw_region(torch.rand(4, 3, 4, 4), draw_plan(4, [1.0], torch.Generator()),
                                                      torch.Generator())


# ----------------------------------------------------------------------------- CutMix(minmax, correct_lam)


def batch_plan(batch, lam) -> MixPlan:
    return MixPlan(index=flip_index(batch), lam=torch.full((batch,), lam, dtype=torch.float64))


@pytest.mark.parametrize("per_sample", [False, True])
def test_cutmix_minmax_equals_timm_on_the_same_box(monkeypatch, per_sample):
    x = torch.randn(4, 3, 10, 20, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    mixer = multimix.Mixer(CutMix(1.0, minmax=(0.2, 0.8)), num_classes=4, per_sample=per_sample, seed=5)
    plan = MixPlan(index=flip_index(4), lam=torch.full((4,), 0.5, dtype=torch.float64), per_sample=per_sample)
    monkeypatch.setattr(mixer, "draw", lambda n: plan)
    original = x.clone()
    out = mixer(x, y)
    boxes = out.region.boxes.tolist()
    for y1, y2, x1, x2 in boxes:  # timm's ranges: sides int(0.2 * side) .. int(0.8 * side) - 1, inside the image
        assert 2 <= y2 - y1 <= 7 and 4 <= x2 - x1 <= 15 and y1 >= 0 and y2 <= 10 and x1 >= 0 and x2 <= 20
    if per_sample:  # timm's pair of samples (i, 3 - i) in elem mode, each with its own box
        reference = timm_mixup.Mixup(mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8), mode="elem", label_smoothing=0.0,
                                     num_classes=4)  # fmt: skip
        monkeypatch.setattr(reference, "_params_per_elem", lambda n: (np.full(n, 0.5, np.float32), np.ones(n, bool)))
    else:
        reference = timm_mixup.Mixup(mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8), label_smoothing=0.0, num_classes=4)
        monkeypatch.setattr(reference, "_params_per_batch", lambda: (0.5, True))
    queue = list(boxes)
    monkeypatch.setattr(timm_mixup, "rand_bbox_minmax", lambda shape, minmax, count=None: queue.pop(0))
    ref_x, ref_y = reference(original, y)
    assert torch.equal(out.inputs, ref_x)
    torch.testing.assert_close(out.targets, ref_y)  # lam from the box's area, as timm


def test_cutmix_minmax_sides_are_uniform_over_timms_range():
    g = torch.Generator().manual_seed(0)
    boxes, kept = multimix.image.sample_boxes(torch.full((4000,), 0.5, dtype=torch.float64), 10, 30, g,
                                              minmax=(0.2, 0.8))  # fmt: skip
    heights, widths = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
    assert set(heights.tolist()) == set(range(2, 8)) and set(widths.tolist()) == set(range(6, 24))
    assert float(heights.double().mean()) == pytest.approx(4.5, abs=0.1)
    assert int(boxes[:, 0].min()) == 0 and int(boxes[:, 1].max()) == 10 and int(boxes[:, 3].max()) == 30
    torch.testing.assert_close(kept, 1 - (heights * widths).double() / 300)


def test_cutmix_correct_lam_false_equals_timm(monkeypatch):
    x = torch.randn(4, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    box = (0, 3, 6, 10)  # a box clipped at the border: 12 pixels of the 30 the lam 0.7 asked for
    reference = timm_mixup.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False, label_smoothing=0.1,
                                 num_classes=4)  # fmt: skip
    monkeypatch.setattr(reference, "_params_per_batch", lambda: (0.7, True))
    timm_boxes(monkeypatch, [box])
    ref_x, ref_y = reference(x.clone(), y)
    mixer = multimix.Mixer(CutMix(1.0, correct_lam=False), num_classes=4, label_smoothing=0.1, seed=0)
    monkeypatch.setattr(mixer, "draw", lambda n: batch_plan(4, 0.7))
    fixed_boxes(monkeypatch, [box])
    out = mixer(x, y)
    assert torch.equal(out.inputs, ref_x)
    torch.testing.assert_close(out.targets, ref_y)
    torch.testing.assert_close(out.lam, torch.full((4,), 0.7))  # the drawn lam, not the kept 0.88


def test_cutmix_options_keep_unmixed_samples_and_defaults():
    x = torch.randn(6, 1, 8, 8)
    original = x.clone()
    out = multimix.Mixer(CutMix(1.0, correct_lam=False), num_classes=6, per_sample=True, p=0.5, seed=1)(
        x, torch.arange(6))
    unmixed = ~out.plan.mixed
    assert unmixed.any() and torch.equal(out.inputs[unmixed], original[unmixed]) and (out.lam[unmixed] == 1).all()
    torch.testing.assert_close(out.lam[~unmixed].double(), out.plan.lam[~unmixed], atol=1e-6, rtol=0)
    assert repr(CutMix(1.0)) == "CutMix(alpha=1.0, inplace=True)"
    assert repr(CutMix(1.0, minmax=(0.2, 0.8))) == "CutMix(alpha=1.0, minmax=(0.2, 0.8), inplace=True)"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"minmax": (0.8, 0.2)}, ValueError, r"minmax must be \(low, high\) .*0 <= low <= high <= 1.*got \(0.8, 0.2\)"),
        ({"minmax": 0.5}, ValueError, r"minmax must be \(low, high\) box side ratios .*got 0.5"),
        ({"minmax": (0.2, 1.5)}, ValueError, r"got \(0.2, 1.5\)"),
        ({"correct_lam": "no"}, TypeError, r"correct_lam must be a bool, got str 'no'"),
        ({"minmax": (0.2, 0.8), "correct_lam": False}, ValueError, r"with minmax .* leave correct_lam=True"),
    ],
)
def test_cutmix_option_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        CutMix(1.0, **kwargs)


# ----------------------------------------------------------------------------- multimix.timm.Mixup (drop-in)


def pair_plan(lam_per_pair, choices_per_pair, batch) -> MixPlan:
    """timm's pair mode as a plan: sample i with B - 1 - i, one lam and one adapter per pair."""
    lam = np.concatenate([lam_per_pair, lam_per_pair[::-1]]).astype(np.float64)
    choices = np.concatenate([choices_per_pair, choices_per_pair[::-1]]).astype(np.int64)
    return switched_plan(flip_index(batch), lam, choices)


@pytest.mark.parametrize("use_cutmix", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("minmax", [None, (0.2, 0.8)])
def test_batch_mode_equals_timm(monkeypatch, use_cutmix, smoothing, minmax):
    x = torch.randn(6, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 4, 2])
    box = (3, 10, 0, 5)  # clipped at the bottom border
    args = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "cutmix_minmax": minmax, "label_smoothing": smoothing,
            "num_classes": 5}  # fmt: skip
    reference = timm_mixup.Mixup(**args)
    monkeypatch.setattr(reference, "_params_per_batch", lambda: (0.35, use_cutmix))
    timm_boxes(monkeypatch, [box])
    ref_x, ref_y = reference(x.clone(), y)
    ours = multimix.timm.Mixup(**args, seed=0)
    plan = MixPlan(flip_index(6), torch.full((6,), 0.35, dtype=torch.float64), choice=int(use_cutmix))
    monkeypatch.setattr(ours.mixer, "draw", lambda n: plan)
    fixed_boxes(monkeypatch, [box])
    out_x, out_y = ours(x, y)
    assert out_x is x
    torch.testing.assert_close(out_x, ref_x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out_y, ref_y)


@pytest.mark.parametrize("correct_lam", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_elem_mode_equals_timm(monkeypatch, correct_lam, smoothing):
    x = torch.randn(8, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0])
    lam = np.array([0.3, 1.0, 0.6, 0.45, 0.9, 0.2, 0.5, 0.75], dtype=np.float32)  # sample 1: prob's coin said no
    use_cutmix = np.array([True, True, False, True, False, True, False, False])
    boxes = [(0, 6, 5, 10), (2, 5, 2, 9), (7, 10, 0, 10)]  # samples 0, 3 and 5
    args = {"mixup_alpha": 0.5, "cutmix_alpha": 1.0, "mode": "elem", "correct_lam": correct_lam,
            "label_smoothing": smoothing, "num_classes": 7}  # fmt: skip
    reference = timm_mixup.Mixup(**args)
    monkeypatch.setattr(reference, "_params_per_elem", lambda n: (lam.copy(), use_cutmix))
    timm_boxes(monkeypatch, boxes)
    ref_x, ref_y = reference(x.clone(), y)
    ours = multimix.timm.Mixup(**args, seed=0)
    plan = switched_plan(flip_index(8), lam.astype(np.float64), use_cutmix.astype(np.int64))
    monkeypatch.setattr(ours.mixer, "draw", lambda n: plan)
    fixed_boxes(monkeypatch, boxes)
    out_x, out_y = ours(x, y)
    torch.testing.assert_close(out_x, ref_x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out_y, ref_y)


def test_pair_mode_equals_timm_when_both_samples_of_a_pair_get_its_box(monkeypatch):
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    lam = np.array([0.3, 0.8, 0.55], dtype=np.float32)
    use_cutmix = np.array([True, False, True])
    args = {"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "mode": "pair", "label_smoothing": 0.1, "num_classes": 6}
    reference = timm_mixup.Mixup(**args)
    monkeypatch.setattr(reference, "_params_per_elem", lambda n: (lam.copy(), use_cutmix))
    timm_boxes(monkeypatch, [(1, 5, 0, 6), (2, 8, 3, 7)])  # pairs (0, 5) and (2, 3)
    ref_x, ref_y = reference(x.clone(), y)
    ours = multimix.timm.Mixup(**args, seed=0)
    monkeypatch.setattr(ours.mixer, "draw", lambda n: pair_plan(lam, use_cutmix, 6))
    fixed_boxes(monkeypatch, [(1, 5, 0, 6), (2, 8, 3, 7), (2, 8, 3, 7), (1, 5, 0, 6)])  # CutMix's rows 0, 2, 3, 5
    out_x, out_y = ours(x, y)
    torch.testing.assert_close(out_x, ref_x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out_y, ref_y)


@pytest.mark.parametrize("batch", [1, 2, 7, 10])
def test_pair_mode_draws_a_matching_with_one_lam_and_adapter_per_pair(batch):
    ours = multimix.timm.Mixup(mixup_alpha=0.5, cutmix_alpha=1.0, mode="pair", prob=0.8, num_classes=3, seed=batch)
    for _ in range(20):
        plan = ours.mixer.draw(batch)
        index = plan.index
        assert torch.equal(index[index], torch.arange(batch))  # an involution: pairs mix with each other
        assert torch.equal(plan.lam[index], plan.lam)
        if plan.choices is not None:
            assert torch.equal(plan.choices[index], plan.choices)
        assert int((index == torch.arange(batch)).sum()) >= batch % 2  # the odd one out stays unmixed
        assert torch.equal(plan.lam == 1, index == torch.arange(batch))


@pytest.mark.parametrize("prob", [1.0, 0.5])
@pytest.mark.parametrize("batch", [2, 3])
def test_pair_and_half_modes_mix_the_one_pair_of_a_batch_of_two_or_three(batch, prob):
    """One pair is drawn like any other (its lam was dropped as a sample partnered with itself: nothing mixed), so
    it mixes at the coin's rate, as timm's pair mode does."""
    for cls, mode in ((multimix.timm.Mixup, "pair"), (multimix.timm.FastCollateMixup, "pair"),
                      (multimix.timm.FastCollateMixup, "half")):  # fmt: skip
        ours = cls(mixup_alpha=1.0, mode=mode, prob=prob, num_classes=4, seed=0)
        mixed = [int((ours.mixer.draw(batch).lam < 1).sum()) for _ in range(200)]
        per_call = 2 if mode == "pair" else 1  # a pair mixes both its samples; half mode its first
        assert set(mixed) == ({per_call} if prob == 1.0 else {0, per_call})
        if prob < 1.0:
            assert 70 <= mixed.count(per_call) <= 130  # about half of 200 calls


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("batch", [1, 5, 8])
def test_every_mode_mixes_odd_batches_into_rows_that_sum_to_one(mode, batch):
    ours = multimix.timm.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, prob=0.9, num_classes=4, seed=1)
    for _ in range(4):
        x = torch.randn(batch, 3, 8, 8)
        out_x, target = ours(x, torch.arange(batch) % 4)
        assert out_x is x and target.shape == (batch, 4) and target.dtype == torch.float32
        torch.testing.assert_close(target.sum(1), torch.ones(batch))
        assert float(target.min()) >= 0.1 / 4 - 1e-6  # timm's default label_smoothing=0.1


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixup_enabled_false_is_timm_unmixed(mode):
    x = torch.randn(4, 3, 8, 8)
    x[0, 0, 0, 0] = float("inf")
    original = x.clone()
    y = torch.tensor([0, 1, 2, 3])
    ours = multimix.timm.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, num_classes=4, seed=0)
    reference = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, num_classes=4)
    ours.mixup_enabled = reference.mixup_enabled = False
    assert ours.mixup_enabled is False and ours.mixer.enabled is False
    out_x, out_y = ours(x, y)
    ref_x, ref_y = reference(original.clone(), y)
    assert torch.equal(out_x, original) and torch.equal(ref_x, original)
    torch.testing.assert_close(out_y, ref_y)
    torch.testing.assert_close(out_y, timm_mixup.mixup_target(y, 4, 1.0, 0.1))
    ours.mixup_enabled = True
    assert not torch.equal(ours(x, y)[0], original)


def test_prob_is_one_coin_per_batch_in_batch_mode_and_per_sample_in_elem_mode():
    batch_mode = multimix.timm.Mixup(mixup_alpha=1.0, prob=0.3, num_classes=2, seed=0)
    mixed = [batch_mode.mixer(torch.randn(8, 1, 2, 2), torch.zeros(8, dtype=torch.long)).lam for _ in range(600)]
    whole = [bool((lam < 1).all()) for lam in mixed]
    assert all(bool((lam < 1).all()) or bool((lam == 1).all()) for lam in mixed)  # all or nothing
    assert sum(whole) / len(whole) == pytest.approx(0.3, abs=0.05)
    elem = multimix.timm.Mixup(mixup_alpha=1.0, prob=0.3, mode="elem", num_classes=2, seed=0)
    lam = torch.cat([elem.mixer(torch.randn(50, 1, 2, 2), torch.zeros(50, dtype=torch.long)).lam for _ in range(40)])
    assert float((lam < 1).float().mean()) == pytest.approx(0.3, abs=0.03)


def test_cutmix_only_and_minmax_choose_cutmix_with_timms_alpha():
    assert [type(a).__name__ for a in multimix.timm.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0).mixer.adapters] == [
        "CutMix"]
    minmax = multimix.timm.Mixup(mixup_alpha=0.0, cutmix_alpha=0.3, cutmix_minmax=(0.2, 0.8), correct_lam=False)
    (cutmix,) = minmax.mixer.adapters
    assert cutmix.alpha == 1.0 and cutmix.minmax == (0.2, 0.8) and cutmix.correct_lam  # as timm: minmax wins
    both = multimix.timm.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.25, mode="elem", seed=0)
    assert both.mixer.switch == "sample" and both.mixer.weights == [0.75, 0.25]
    choices = torch.cat([both.mixer.draw(64).choices for _ in range(30)])
    assert float(choices.float().mean()) == pytest.approx(0.25, abs=0.03)


def test_state_dict_resumes_the_same_draws():
    ours = multimix.timm.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=3, seed=4)
    state = ours.state_dict()
    first = ours(torch.randn(6, 3, 8, 8), torch.arange(6) % 3)[1]
    ours.load_state_dict(state)
    torch.testing.assert_close(ours(torch.randn(6, 3, 8, 8), torch.arange(6) % 3)[1], first)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_drop_in_runs_on_meta_tensors(mode):
    ours = multimix.timm.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, prob=0.7, num_classes=5, seed=0)
    x = torch.empty(9, 3, 16, 16, device="meta")
    for _ in range(4):
        out_x, target = ours(x, torch.zeros(9, dtype=torch.long, device="meta"))
        assert out_x is x and target.device == torch.device("meta") and target.shape == (9, 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "half"}, ValueError, r"mode must be 'batch', 'pair' or 'elem' .*got 'half' .*FastCollateMixup"),
        ({"mode": "sample"}, ValueError, r"mode must be 'batch', 'pair' or 'elem' \(timm's modes\), got 'sample'"),
        ({"mixup_alpha": -1.0}, ValueError, r"mixup_alpha must be finite and >= 0 \(0 turns it off\), got -1.0"),
        ({"cutmix_alpha": "1"}, TypeError, r"cutmix_alpha must be a real number >= 0 .*got str '1'"),
        ({"mixup_alpha": 0.0}, ValueError, r"mixup_alpha and cutmix_alpha are both 0 .*set mixup_alpha > 0"),
        ({"cutmix_minmax": (0.9, 0.1)}, ValueError, r"cutmix_minmax must be \(low, high\) .*got \(0.9, 0.1\)"),
        ({"prob": 1.5}, ValueError, r"prob must be in \[0, 1\], got 1.5"),
        ({"switch_prob": -0.1}, ValueError, r"switch_prob must be in \[0, 1\], got -0.1"),
        ({"correct_lam": "yes"}, TypeError, r"correct_lam must be a bool, got str 'yes'"),
        ({"label_smoothing": 2.0}, ValueError, r"label_smoothing must be in \[0, 1\], got 2.0"),
        ({"num_classes": 0}, ValueError, r"num_classes must be an int >= 1, got 0"),
    ],
)
def test_drop_in_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        multimix.timm.Mixup(**kwargs)


def test_drop_in_call_and_attribute_errors():
    ours = multimix.timm.Mixup(num_classes=3, seed=0)
    with pytest.raises(AttributeError, match=r"Mixup.mixup_alpha is fixed at construction, .* build a new Mixup"):
        ours.mixup_alpha = 0.2
    with pytest.raises(AttributeError, match=r"Mixup.mixup_enable is fixed at construction"):
        ours.mixup_enable = False  # a typo would otherwise leave mixing on
    with pytest.raises(AttributeError, match=r"Mixer has no attribute 'mixup_enabled'"):
        ours.mixer.mixup_enabled = False
    with pytest.raises(TypeError, match=r"mixup_enabled must be a bool, got int 0"):
        ours.mixup_enabled = 0
    with pytest.raises(ValueError, match=r"targets holds label 3, outside \[0, num_classes=3\)"):
        ours(torch.randn(2, 3, 4, 4), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match=r"x must be a floating-point or uint8 image batch .*got dtype torch.int32"):
        ours(torch.zeros(2, 3, 4, 4, dtype=torch.int32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"targets has batch size 3 but inputs have batch size 2"):
        ours(torch.randn(2, 3, 4, 4), torch.tensor([0, 1, 2]))


def test_drop_in_pickles_for_dataloader_workers():
    import pickle

    ours = multimix.timm.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="pair", num_classes=3, seed=2)
    copy = pickle.loads(pickle.dumps(ours))
    x = torch.randn(6, 3, 8, 8)
    torch.testing.assert_close(copy(x.clone(), torch.arange(6) % 3), ours(x.clone(), torch.arange(6) % 3))
    with pytest.raises(AttributeError, match=r"fixed at construction"):
        copy.mode = "elem"


@pytest.mark.parametrize("side", [8, 160])  # the vectorised path and the CPU loop
def test_a_switch_built_out_of_place_leaves_the_batch_unchanged(side):
    switch = Switch([Mixup(0.8), CutMix(1.0)])
    switch.inplace = False
    mixer = multimix.Mixer(switch, num_classes=3, per_sample=True, seed=0)
    x = torch.rand(6, 3, side, side, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    out = mixer(x, torch.arange(6) % 3)
    assert torch.equal(x, before) and not torch.equal(out.inputs, before)


def test_a_member_whose_samples_are_all_unmixed_draws_its_region_and_mixes_nothing():
    """Every member has a share (one traced graph for every plan), an unmixed member's drawn from a generator of its
    own (the plans' stream is what it was: Mixup draws nothing, so nothing is drawn); its samples stay as they
    were, eager and traced."""
    plan = switched_plan([1, 0, 3, 2], [0.4, 0.4, 1.0, 1.0], [0, 0, 1, 1])  # CutMix's two samples keep lam 1
    switch = Switch([Mixup(0.8), CutMix(1.0)])
    x = torch.rand(4, 3, 8, 8)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    region = switch.draw_region(x, plan, generator)
    assert torch.equal(generator.get_state(), state)
    assert region[0].any_mixed and not region[1].any_mixed and not region[1].mixed.any()
    eager, eager_lam = switch.apply(x.clone(), plan, region)
    torch._dynamo.reset()
    traced, traced_lam = torch.compile(switch.apply, fullgraph=True, backend="eager")(x.clone(), plan, region)
    for out, lam in ((eager, eager_lam), (traced, traced_lam)):
        assert torch.equal(out[2:], x[2:]) and torch.equal(lam[2:], torch.ones(2, dtype=torch.float64))
        torch.testing.assert_close(out[:2], torch.stack([0.4 * x[0] + 0.6 * x[1], 0.4 * x[1] + 0.6 * x[0]]))


def test_the_vectorised_switch_equals_the_loop_bit_for_bit_with_infinities():
    """Each member's result is the batch outside its own mixed samples: an unmixed sample holding inf stays inf."""
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x[2, 0, 0, 0] = float("inf")
    plan = switched_plan([1, 0, 3, 2], [0.4, 0.7, 1.0, 0.3], [0, 1, 0, 1])  # sample 2 (Mixup's) keeps lam 1
    results = []
    for path in (looped, vectorised):
        switch = path(Switch([Mixup(0.8), CutMix(1.0)]))
        region = switch.draw_region(x, plan, torch.Generator().manual_seed(0))
        results.append(switch.apply(x.clone(), plan, region))
    (loop, loop_lam), (vector, vector_lam) = results
    assert torch.equal(loop, vector) and torch.equal(loop_lam, vector_lam) and torch.isinf(vector[2, 0, 0, 0])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_drop_ins_mixer_gives_the_calls_multi_label_targets(smoothing):
    """mixup_fn.mixer(x, y) (for the whole MixedBatch) smooths multi-hot rows toward 0.5 as mixup_fn(x, y) does,
    and takes 0/1 integer rows too (it skipped the smoothing and refused integers)."""
    rows = torch.tensor([[0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 1]])
    x = torch.rand(4, 3, 8, 8)
    call = multimix.timm.Mixup(num_classes=3, multi_label=True, label_smoothing=smoothing, seed=0)
    direct = multimix.timm.Mixup(num_classes=3, multi_label=True, label_smoothing=smoothing, seed=0)
    _, want = call(x.clone(), rows)
    got = direct.mixer(x.clone(), rows).targets
    torch.testing.assert_close(got, want)
    assert direct.mixer.state_dict()["generator"].equal(call.mixer.state_dict()["generator"])  # the same draws
    smoothed = rows.float() * (1 - smoothing) + 0.5 * smoothing
    unmixed = multimix.timm.Mixup(num_classes=3, multi_label=True, label_smoothing=smoothing, seed=0)
    unmixed.mixup_enabled = False
    torch.testing.assert_close(unmixed.mixer(x.clone(), rows).targets, smoothed)


def test_a_subclass_keeps_attributes_of_its_own():
    """timm users subclass Mixup; only timm's settings (and typos on the drop-in itself) are refused."""

    class Warm(multimix.timm.Mixup):
        def __init__(self, *args, warmup=3, **kwargs):
            super().__init__(*args, **kwargs)
            self.warmup = warmup

    warm = Warm(num_classes=10, warmup=5, seed=0)
    warm.warmup = 6
    assert warm.warmup == 6
    with pytest.raises(AttributeError, match=r"multimix.timm.Warm.mixup_alpha is fixed at construction"):
        warm.mixup_alpha = 0.2


def test_numpy_arguments_and_whole_float_indices_are_taken_as_timm_takes_them():
    ours = multimix.timm.Mixup(num_classes=np.int64(10), correct_lam=np.bool_(True), cutmix_minmax=np.array([0.2, 0.8]),
                               seed=0)  # fmt: skip
    assert (ours.num_classes, ours.correct_lam, ours.cutmix_minmax) == (10, True, (0.2, 0.8))
    assert type(ours.num_classes) is int
    x = torch.rand(4, 3, 8, 8)
    _, from_floats = multimix.timm.Mixup(num_classes=10, seed=0)(x.clone(), torch.tensor([0.0, 1.0, 2.0, 3.0]))
    _, from_ints = multimix.timm.Mixup(num_classes=10, seed=0)(x.clone(), torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(from_floats, from_ints)
    with pytest.raises(ValueError, match=r"target\[0\] = 0.5 is not a class index \(a whole number\)"):
        ours(x.clone(), torch.tensor([0.5, 1.0, 2.0, 3.0]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64])
def test_multi_label_targets_are_float32_whatever_the_rows_dtype(dtype):
    """timm's targets are float32 (NumPy float labels collate as float64)."""
    rows = torch.tensor([[0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 1]]).to(dtype)
    mixup = multimix.timm.Mixup(num_classes=3, multi_label=True, label_smoothing=0.1, seed=0)
    mixup.mixup_enabled = np.bool_(False)
    _, targets = mixup(torch.rand(4, 3, 8, 8), rows)
    assert targets.dtype == torch.float32
    torch.testing.assert_close(targets, rows.float() * 0.9 + 0.05)
    with pytest.raises(ValueError, match=r"cutmix_minmax must be \(low, high\)"):
        multimix.timm.Mixup(cutmix_minmax=np.array(0.5))


def test_a_switchs_members_settings_changed_after_it_was_built_hold_in_every_path():
    """The vectorised path applies each member through an out-of-place view sharing the member's state: a setting
    changed later (SaliencyMix's grid, a member's inplace) holds there as in the CPU loop, after pickling too (the
    views were copies, and inplace was read once at build)."""
    import pickle

    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(6) % 3
    before = multimix.image.SaliencyMix(1.0)
    before.grid = 4
    want = multimix.Mixer([Mixup(0.8), before], num_classes=3, per_sample=True, switch="sample", seed=0)
    later = multimix.Mixer([Mixup(0.8), multimix.image.SaliencyMix(1.0)], num_classes=3, per_sample=True,
                           switch="sample", seed=0)  # fmt: skip
    later.adapters[1].grid = 4
    for mixer in (later, pickle.loads(pickle.dumps(later))):
        mixer.generator.manual_seed(0)
        want.generator.manual_seed(0)
        assert torch.equal(mixer(x.clone(), labels).inputs, want(x.clone(), labels).inputs)
    later.adapters[0].inplace = later.adapters[1].inplace = False
    for mixer in (later, pickle.loads(pickle.dumps(later))):
        batch = x.clone()
        out = mixer(batch, labels)
        assert torch.equal(batch, x) and not torch.equal(out.inputs, x)


def test_a_switch_member_with_slots_keeps_them():
    """A member class with __slots__ (values outside __dict__) mixes through the Switch's vectorised path too."""

    class Scaled(Mixup):
        __slots__ = ("scale",)

        def __init__(self, alpha):
            super().__init__(alpha)
            self.scale = 2.0

        def apply(self, x, plan, region=None, valid=None):
            out, lam = super().apply(x, plan, region, valid)
            return out * self.scale, lam

    plan = switched_plan([1, 0, 3, 2], [0.5, 0.5, 0.5, 0.5], [0, 0, 1, 1])
    x = torch.rand(4, 3, 8, 8)
    switch = Switch([Scaled(1.0), CutMix(1.0)])
    out, _ = switch.apply(x.clone(), plan, switch.draw_region(x, plan, torch.Generator().manual_seed(0)))
    torch.testing.assert_close(out[:2], 2.0 * (0.5 * x[:2] + 0.5 * x[[1, 0]]))
