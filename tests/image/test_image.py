import numpy as np
import pytest
import timm.data.mixup as timm_mixup
import torch
from conftest import fixed_plan, flip_index, looped, roll_index, vectorised
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.transforms import v2

import multimix
from multimix.image import CutMix, Mixup, sample_boxes
from multimix.image.boxes import Boxes
from multimix.targets import mix_targets, soft_targets


def test_mixup_exact_values():
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    out, lam = Mixup(1.0).apply(x, fixed_plan([1, 0, 3, 2], [0.25, 0.5, 1.0, 0.0]), None)
    assert out[:, 0, 0, 0].tolist() == [0.75, 0.5, 2.0, 2.0]  # 0.25*0 + 0.75*1, 0.5*1 + 0.5*0, 2, 0*3 + 1*2
    assert lam.tolist() == [0.25, 0.5, 1.0, 0.0]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("batch", [4, 6])
def test_mixup_batch_mode_equals_timm(monkeypatch, smoothing, batch):
    x = torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (batch,), generator=torch.Generator().manual_seed(1))
    reference = timm_mixup.Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=smoothing, num_classes=5)
    monkeypatch.setattr(reference, "_params_per_batch", lambda: (0.3, False))
    ref_x = x.clone()
    ref_x, ref_y = reference(ref_x, y)
    plan = fixed_plan(flip_index(batch), 0.3, per_sample=False)
    out, lam = Mixup(1.0).apply(x, plan, None)
    torch.testing.assert_close(out, ref_x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(mix_targets(soft_targets(y, 5, label_smoothing=smoothing), plan.index, lam), ref_y)


def test_mixup_per_sample_equals_timm_elem_mode(monkeypatch):
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6)
    lams = np.array([0.1, 0.9, 0.5, 1.0, 0.3, 0.7], dtype=np.float32)
    reference = timm_mixup.Mixup(mixup_alpha=1.0, mode="elem", label_smoothing=0.0, num_classes=6)
    monkeypatch.setattr(reference, "_params_per_elem", lambda n: (lams, np.zeros(n, dtype=bool)))
    ref_x = x.clone()
    ref_x, ref_y = reference(ref_x, y)
    plan = fixed_plan(flip_index(6), torch.from_numpy(lams).double())
    out, lam = Mixup(1.0).apply(x, plan, None)
    torch.testing.assert_close(out, ref_x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(mix_targets(soft_targets(y, 6), plan.index, lam), ref_y)


def test_cutmix_equals_timm_with_the_same_box(monkeypatch):
    x = torch.randn(4, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    box = (2, 9, 3, 7)  # yl, yh, xl, xh
    reference = timm_mixup.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=4)
    monkeypatch.setattr(reference, "_params_per_batch", lambda: (0.5, True))
    monkeypatch.setattr(timm_mixup, "rand_bbox", lambda *args, **kwargs: box)
    ref_x = x.clone()
    ref_x, ref_y = reference(ref_x, y)
    plan = fixed_plan(flip_index(4), 0.5, per_sample=False)
    boxes = torch.tensor([box] * 4)
    kept = torch.full((4,), 1 - 7 * 4 / 120, dtype=torch.float64)
    out, lam = CutMix(1.0).apply(x, plan, Boxes(boxes, kept))
    assert torch.equal(out, ref_x)
    torch.testing.assert_close(mix_targets(soft_targets(y, 4), plan.index, lam), ref_y)


def test_mixup_equals_torchvision(monkeypatch):
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([4, 3, 2, 1, 0])
    reference = v2.MixUp(alpha=1.0, num_classes=5)
    monkeypatch.setattr(reference, "make_params", lambda flat_inputs: {"lam": 0.35})
    ref_x, ref_y = reference(x.clone(), y)
    plan = fixed_plan(roll_index(5), 0.35, per_sample=False)
    out, lam = Mixup(1.0).apply(x, plan, None)
    torch.testing.assert_close(out, ref_x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(mix_targets(soft_targets(y, 5), plan.index, lam), ref_y)


def test_cutmix_equals_torchvision_with_its_own_box(monkeypatch):
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 4])
    boxes, kept = sample_boxes(torch.tensor([0.4], dtype=torch.float64), 16, 16, torch.Generator().manual_seed(7))
    y1, y2, x1, x2 = boxes[0].tolist()
    reference = v2.CutMix(alpha=1.0, num_classes=5)
    params = {"box": (x1, y1, x2, y2), "lam_adjusted": float(kept[0])}
    monkeypatch.setattr(reference, "make_params", lambda flat_inputs: params)
    ref_x, ref_y = reference(x.clone(), y)
    plan = fixed_plan(roll_index(5), 0.4, per_sample=False)
    out, lam = CutMix(1.0).apply(x, plan, Boxes(boxes.expand(5, 4), kept.expand(5)))
    assert torch.equal(out, ref_x)
    torch.testing.assert_close(mix_targets(soft_targets(y, 5), plan.index, lam), ref_y)


def test_torchvision_box_rule():
    """Our boxes follow torchvision's rule: centre r, half side int(0.5 * sqrt(1 - lam) * side), clipped."""
    g = torch.Generator().manual_seed(0)
    lam = torch.tensor([0.2, 0.5, 0.9, 0.0, 1.0], dtype=torch.float64)
    boxes, kept = sample_boxes(lam, 20, 30, g)
    g = torch.Generator().manual_seed(0)
    u = torch.rand(2, 5, generator=g, dtype=torch.float64)  # the centres: uniform over the pixels, one draw
    cy, cx = (u[0] * 20).floor().long(), (u[1] * 30).floor().long()
    for k in range(5):
        half_h, half_w = int(0.5 * (1 - lam[k]) ** 0.5 * 20), int(0.5 * (1 - lam[k]) ** 0.5 * 30)
        expected = [max(cy[k] - half_h, 0), min(cy[k] + half_h, 20), max(cx[k] - half_w, 0), min(cx[k] + half_w, 30)]
        assert boxes[k].tolist() == [int(v) for v in expected]
    assert kept[4] == 1.0


@settings(max_examples=200, deadline=None)
@given(lam=st.floats(0, 1), seed=st.integers(0, 2**31), h=st.integers(1, 300), w=st.integers(1, 300))
def test_one_box_is_the_numpy_rule_on_the_same_uniforms(lam, seed, h, w):
    """The batch's one box (plain floats) is the vectorised NumPy rule applied to the same two uniforms."""
    one, one_kept = sample_boxes(torch.tensor([lam], dtype=torch.float64), h, w, torch.Generator().manual_seed(seed))
    u = torch.rand(2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
    sides = np.array([h, w])
    centre, half = np.floor(u * sides), np.floor(0.5 * np.sqrt(1.0 - np.float64(lam)) * sides)
    low, high = np.maximum(centre - half, 0), np.minimum(centre + half, sides)
    assert one.tolist() == [[int(low[0]), int(high[0]), int(low[1]), int(high[1])]]
    assert float(one_kept[0]) == 1.0 - (high[0] - low[0]) * (high[1] - low[1]) / (h * w)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 9),
    per_sample=st.booleans(),
    seed=st.integers(0, 2**31),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    path=st.sampled_from([looped, vectorised]),
)
def test_cutmix_lam_is_the_kept_fraction(batch, per_sample, seed, h, w, path):
    # Sample i holds the value i everywhere, so what was kept is countable.
    x = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1).expand(batch, 2, h, w).contiguous()
    mixer = multimix.Mixer(path(CutMix(1.0)), num_classes=batch, per_sample=per_sample, seed=seed)
    out = mixer(x, torch.arange(batch))
    for i in range(batch):
        kept = float((out.inputs[i] == i).float().mean())
        assert kept == pytest.approx(float(out.lam[i]), abs=1e-6)
        assert float(out.targets[i, i]) == pytest.approx(float(out.lam[i]), abs=1e-6)
    torch.testing.assert_close(out.targets.sum(1), torch.ones(batch))
    if not per_sample:
        assert (out.region[0] == out.region[0][0]).all()  # one box for the batch


@pytest.mark.parametrize("adapter_cls", [Mixup, CutMix])
@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_dtype_and_memory_format_are_kept(adapter_cls, path, dtype, channels_last):
    adapter = path(adapter_cls(0.5))
    x = torch.randn(5, 3, 8, 8).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    out = multimix.Mixer(adapter, num_classes=3, per_sample=True, seed=0)(x, torch.randint(0, 3, (5,)))
    assert out.inputs is x and out.inputs.dtype == dtype
    assert out.inputs.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert out.targets.dtype == torch.float32 and out.lam.dtype == torch.float32


@pytest.mark.parametrize("adapter_cls", [Mixup, CutMix])
@pytest.mark.parametrize("path", [looped, vectorised])
def test_inplace_false_leaves_the_input_alone(adapter_cls, path):
    x = torch.randn(6, 3, 8, 8)
    original = x.clone()
    inplace = multimix.Mixer(path(adapter_cls(1.0)), num_classes=6, per_sample=True, seed=3)(x.clone(), torch.arange(6))
    copy = multimix.Mixer(path(adapter_cls(1.0, inplace=False)), num_classes=6, per_sample=True, seed=3)(
        x, torch.arange(6)
    )
    assert copy.inputs is not x and torch.equal(x, original)
    assert torch.equal(copy.inputs, inplace.inputs)


@pytest.mark.parametrize("adapter_cls", [Mixup, CutMix])
def test_inputs_that_need_grad_are_mixed_out_of_place_with_gradients(adapter_cls):
    x = torch.randn(4, 3, 6, 6, requires_grad=True)
    out = multimix.Mixer(adapter_cls(1.0), num_classes=4, per_sample=True, seed=0)(x, torch.arange(4))
    assert out.inputs is not x
    out.inputs.sum().backward()
    torch.testing.assert_close(x.grad.sum(), torch.tensor(float(x.numel())))  # mixing preserves total mass


@pytest.mark.parametrize("adapter_cls", [Mixup, CutMix])
def test_video_inputs(adapter_cls):
    x = torch.randn(4, 3, 2, 6, 6)
    original = x.clone()
    out = multimix.Mixer(adapter_cls(1.0), num_classes=4, seed=0)(x, torch.arange(4))
    lam = out.lam.view(-1, 1, 1, 1, 1)
    if adapter_cls is Mixup:
        torch.testing.assert_close(out.inputs, lam * original + (1 - lam) * original[out.index])
        return
    expected = original.clone()
    for i, (y1, y2, x1, x2) in enumerate(out.region[0].tolist()):
        if out.plan.mixed[i]:  # the same box in every frame
            expected[i, :, :, y1:y2, x1:x2] = original[out.index[i], :, :, y1:y2, x1:x2]
    assert torch.equal(out.inputs, expected)


def test_sample_boxes_errors():
    g = torch.Generator()
    with pytest.raises(ValueError, match=r"lam must be a \(N,\) CPU tensor of values in \[0, 1\]"):
        sample_boxes(torch.tensor([1.5]), 4, 4, g)
    with pytest.raises(ValueError, match=r"height must be an int >= 1, got 0"):
        sample_boxes(torch.tensor([0.5]), 0, 4, g)


@pytest.mark.parametrize("adapter_cls", [Mixup, CutMix])
def test_image_adapters_check_dimensions_and_lengths(adapter_cls):
    mixer = multimix.Mixer(adapter_cls(1.0), num_classes=3)
    with pytest.raises(
        ValueError, match=r"inputs must have at least 4 dimensions \(B, C, H, W\) or .*got shape \(3, 8, 8\)"
    ):
        mixer(torch.randn(3, 8, 8), torch.arange(3))
    with pytest.raises(ValueError, match=r"inputs must have at most 5 dimensions .*got shape \(1, 1, 1, 1, 1, 1\)"):
        mixer(torch.randn(1, 1, 1, 1, 1, 1), torch.arange(1))
    with pytest.raises(ValueError, match=rf"{adapter_cls.__name__} does not take lengths; they are for audio adapters"):
        mixer(torch.randn(2, 1, 4, 4), torch.arange(2), lengths=torch.ones(2, dtype=torch.long))


def test_adapter_argument_errors():
    with pytest.raises(ValueError, match=r"alpha must be finite and > 0 .*got -1.0"):
        Mixup(-1.0)
    with pytest.raises(ValueError, match=r"alpha must be finite and > 0 .*got inf"):
        CutMix(float("inf"))
    with pytest.raises(TypeError, match=r"inplace must be a bool, got str 'yes'"):
        Mixup(1.0, inplace="yes")
    adapter = Mixup(1.0)
    with pytest.raises(ValueError, match=r"alpha must be finite and > 0"):
        adapter.alpha = 0
    assert adapter.alpha == 1.0


def test_bf16_mixup_labels_the_lam_it_applied():
    """In bfloat16 the partner's weight 1 - lam is rounded before the blend: the label follows the rounded weight."""
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    mixer = multimix.Mixer(Mixup(1.0, inplace=False), num_classes=4, per_sample=True, seed=0)
    out = mixer(x.bfloat16(), torch.arange(8) % 4)
    drawn = out.plan.lam
    applied = 1.0 - (1.0 - drawn).to(torch.bfloat16).double()
    assert torch.equal(out.lam, applied.float())
    assert (applied - drawn).abs().max() > 1e-4  # bf16 rounding: the drawn lam would be off by this much
    partner = x.bfloat16().double()[out.index]
    want = x.bfloat16().double() + (1.0 - applied).view(-1, 1, 1, 1) * (partner - x.bfloat16().double())
    torch.testing.assert_close(out.inputs.double(), want, atol=1e-2, rtol=0)  # bf16 output rounding only
    torch.testing.assert_close(out.targets.sum(1), torch.ones(8))


def test_bf16_mixup_loop_applies_the_rounded_weight_as_the_vectorised_path():
    """The CPU loop rounds 1 - lam to bfloat16 as the vectorised blend does: same pixels, same label lam."""
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)).bfloat16()
    mixers = [multimix.Mixer(path(Mixup(1.0, inplace=False)), num_classes=4, per_sample=True, seed=1)
              for path in (looped, vectorised)]  # fmt: skip
    outs = [mixer(x, torch.arange(6) % 4) for mixer in mixers]
    assert torch.equal(outs[0].inputs, outs[1].inputs) and torch.equal(outs[0].lam, outs[1].lam)
