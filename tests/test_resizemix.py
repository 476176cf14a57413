"""ResizeMix against torch's nearest resize pasted into the box: every path, layout and dtype."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from adapter_cases import PLAN, images, run
from conftest import fixed_plan, looped, vectorised

from multimix import resizemix
from multimix.image import ResizeMix
from multimix.resizemix import Resized, _box_scale, _nearest_index, _source_maps


@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("per_sample", [True, False])
def test_resizemix_equals_interpolate_nearest_pasted_into_the_box(path, per_sample):
    x = images()
    plan = fixed_plan(PLAN.index, PLAN.lam if per_sample else 0.4, per_sample=per_sample)
    out, lam, region = run(path(ResizeMix(1.0)), x, plan)
    expected = x.clone()
    for i, (y1, y2, x1, x2) in enumerate(region.boxes.tolist()):
        if bool(plan.mixed[i]) and y2 > y1 and x2 > x1:
            partner = x[plan.index[i]].unsqueeze(0)
            expected[i, :, y1:y2, x1:x2] = F.interpolate(partner, size=(y2 - y1, x2 - x1), mode="nearest")[0]
        area = (y2 - y1) * (x2 - x1) / (16 * 20)
        assert float(lam[i]) == (1.0 - area if bool(plan.mixed[i]) else 1.0)
        tau = 0.1 + float(plan.lam[i]) * 0.7  # OpenMixup's scope rule: the box side is tau of the image side
        assert y2 - y1 <= int(16 * tau) and x2 - x1 <= int(20 * tau)
    assert torch.equal(out, expected)


def test_resizemix_region_drawn_for_the_loop_applies_vectorised():
    """A per-sample region drawn for the CPU loop still applies on the vectorised path, identically; its source
    maps are computed where the boxes are, so it runs on meta without a read-back."""
    x, plan = images(), fixed_plan(PLAN.index, PLAN.lam, per_sample=True)
    adapter = looped(ResizeMix(1.0))
    region = adapter.draw_region(x, plan, torch.Generator().manual_seed(0))
    looped_out, _ = adapter.apply(x.clone(), plan, region)
    vectorised_out, _ = vectorised(adapter).apply(x.clone(), plan, region)
    assert torch.equal(vectorised_out, looped_out) and not torch.equal(looped_out, x)
    meta_plan, meta_region = plan.to(torch.device("meta"), region)
    assert adapter.apply(torch.empty(x.shape, device="meta"), meta_plan, meta_region)[0].device.type == "meta"
    for by_hand in (region, region._replace(scale=None)):  # CPU boxes, with or without a scale, go along
        assert adapter.apply(torch.empty(x.shape, device="meta"), meta_plan, by_hand)[0].device.type == "meta"
    with pytest.raises(ValueError, match=r"no scale and its boxes are on meta.*Resized\(boxes, kept, scale=...\)"):
        adapter.apply(torch.empty(x.shape, device="meta"), meta_plan, meta_region._replace(scale=None))


def test_source_maps_are_the_float32_nearest_rule_for_every_box():
    """The device's source maps: inside each box, the partner pixel _nearest_index picks; outside, no rows."""
    for size in (224, 37, 5):
        sides = torch.arange(0, size + 1)
        starts = torch.tensor([(7 * n) % (size - int(n) + 1) for n in sides])  # boxes of every side, anywhere
        boxes = torch.stack([starts, starts + sides, starts, starts + sides], dim=1)
        rows, cols, row_source, col_source = _source_maps(boxes, _box_scale(boxes, size, size), size, size)
        assert torch.equal(rows, cols) and torch.equal(row_source, col_source)
        for start, side, inside, source in zip(starts.tolist(), sides.tolist(), rows, row_source, strict=True):
            assert inside.tolist() == [start <= k < start + side for k in range(size)]
            expected = np.zeros(size, dtype=np.int64)
            expected[start : start + side] = _nearest_index(size, side) if side else []
            assert np.array_equal(source.numpy(), expected), (size, side)


@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("per_sample", [True, False])
def test_resizemix_channels_last_equals_contiguous(path, per_sample):
    plan = fixed_plan(PLAN.index, PLAN.lam if per_sample else 0.4, per_sample=per_sample)
    x = images()
    contiguous, _, _ = run(path(ResizeMix(1.0)), x, plan)
    channels_last, _, _ = run(path(ResizeMix(1.0)), x.contiguous(memory_format=torch.channels_last), plan)
    assert torch.equal(channels_last, contiguous) and not torch.equal(contiguous, x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8])
@pytest.mark.parametrize("per_sample", [True, False])
def test_resizemix_loop_equals_the_vectorised_gathers_in_every_dtype(dtype, per_sample):
    """The CPU paths (NumPy take per sample, one batched resize per batch) and the device gathers agree bit for bit."""
    plan = fixed_plan(PLAN.index, PLAN.lam if per_sample else 0.4, per_sample=per_sample)
    x = (images() * 255).to(dtype)
    looped_out, looped_lam, region = run(looped(ResizeMix(1.0)), x, plan)
    vectorised_out, vectorised_lam = vectorised(ResizeMix(1.0)).apply(x.clone(), plan, region._replace(box=None))
    assert looped_out.dtype == dtype and torch.equal(looped_out, vectorised_out) and not torch.equal(looped_out, x)
    assert torch.equal(looped_lam, vectorised_lam)


def test_nearest_index_is_torchs_float32_rule_at_every_box_size():
    """The source rows and columns of every ResizeMix path are those F.interpolate(mode="nearest") picks in float32."""
    for size in (224, 37, 5):
        line = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)
        for out in range(1, size + 1):
            expected = F.interpolate(line, size=(1, out), mode="nearest").flatten().long().numpy()
            assert np.array_equal(_nearest_index(size, out), expected), (size, out)


@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("per_sample", [True, False])
def test_resizemix_float64_takes_the_float32_rule_pixels(path, per_sample):
    """torch's CPU kernel indexes float64 in double precision and picks other pixels for a 224-wide box of 184;
    every ResizeMix path takes the float32 rule's pixels, so CPU and device agree in float64 too."""
    line = torch.arange(224.0).view(1, 1, 1, 224)
    in_double = F.interpolate(line.double(), size=(1, 184), mode="nearest")
    assert not torch.equal(in_double, F.interpolate(line, size=(1, 184), mode="nearest").double())
    x = torch.arange(2 * 224 * 224, dtype=torch.float64).view(2, 1, 224, 224)  # exact in float32
    box = (20, 204, 30, 214)
    kept = torch.full((2,), 1 - 184 * 184 / 224**2, dtype=torch.float64)
    region = Resized(torch.tensor([box, box]), kept, box=None if per_sample else box)
    out, _ = path(ResizeMix(1.0)).apply(x.clone(), fixed_plan([1, 0], 0.5, per_sample=per_sample), region)
    expected = x.clone()
    for i, j in ((0, 1), (1, 0)):
        resized = F.interpolate(x[j : j + 1].float(), size=(184, 184), mode="nearest")
        expected[i, :, 20:204, 30:214] = resized[0].double()
    assert torch.equal(out, expected)


@pytest.mark.parametrize("per_sample", [True, False])
def test_resizemix_video_loop_equals_the_vectorised_gathers(per_sample):
    """(B, C, T, H, W): every frame of a clip gets the same box, resized from the partner's same frame."""
    plan = fixed_plan(PLAN.index, PLAN.lam if per_sample else 0.4, per_sample=per_sample)
    x = torch.rand(6, 3, 4, 16, 20, generator=torch.Generator().manual_seed(2))
    looped_out, _, region = run(looped(ResizeMix(1.0)), x, plan)
    vectorised_out, _ = vectorised(ResizeMix(1.0)).apply(x.clone(), plan, region._replace(box=None))
    assert torch.equal(looped_out, vectorised_out) and not torch.equal(looped_out, x)
    for t in range(4):  # frame by frame, the 4-D result
        frame, _, _ = run(looped(ResizeMix(1.0)), x[:, :, t].contiguous(), plan)
        assert torch.equal(looped_out[:, :, t], frame)


def test_resizemix_loop_writes_are_seen_by_autograd():
    """The CPU loop writes through NumPy; the batch's version still moves, so a graph that saved it refuses to run."""
    x = images()
    weight = torch.ones_like(x, requires_grad=True)
    saved = (weight * x).sum()  # autograd keeps x for the gradient of weight
    adapter = looped(ResizeMix(1.0))
    plan = fixed_plan(PLAN.index, PLAN.lam, per_sample=True)
    out, _ = adapter.apply(x, plan, adapter.draw_region(x, plan, torch.Generator().manual_seed(0)))
    assert out is x
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        saved.backward()


@pytest.mark.parametrize("per_sample", [True, False])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_resizemix_gradient_equals_the_interpolate_reference(per_sample, memory_format):
    """Under autograd (out of place, vectorised) the gradient is that of F.interpolate pasted into each box."""
    plan = fixed_plan(PLAN.index, PLAN.lam if per_sample else 0.4, per_sample=per_sample)
    weight = torch.rand(6, 3, 16, 20, generator=torch.Generator().manual_seed(4))
    x = images().contiguous(memory_format=memory_format).requires_grad_()
    out, _, region = run(ResizeMix(1.0), x, plan)
    (out * weight).sum().backward()
    reference = images().requires_grad_()
    expected = reference.clone()
    for i, (y1, y2, x1, x2) in enumerate(region.boxes.tolist()):
        if bool(plan.mixed[i]) and y2 > y1 and x2 > x1:
            partner = reference[int(plan.index[i])].unsqueeze(0)
            expected[i, :, y1:y2, x1:x2] = F.interpolate(partner, size=(y2 - y1, x2 - x1), mode="nearest")[0]
    (expected * weight).sum().backward()
    torch.testing.assert_close(x.grad, reference.grad)


def _record_calls(monkeypatch, name: str, resized: int) -> list[int]:
    """Record how many images each call of ``multimix.resizemix.<name>`` resizes (its argument ``resized``)."""
    calls, function = [], getattr(resizemix, name)

    def recorded(*args):
        calls.append(len(args[resized]))
        return function(*args)

    monkeypatch.setattr(resizemix, name, recorded)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.uint8])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "video"])
@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize("route", ["small box", "chunks of one partner", "large box", "past the fresh-pages limit"])
def test_resizemix_per_batch_cpu_routes_paste_the_device_paths_pixels(monkeypatch, dtype, layout, inplace, route):
    """On a CPU one box for the batch takes one of three routes: a small box (up to _SMALL_BOX_PIXELS) of a
    contiguous batch gets the mixed samples' partners resized by rows and columns (in chunks of _CHUNK_BYTES of
    rows) and one write; larger boxes and other layouts resize the batch with torch's 2-D kernel and copy per
    sample; past _FRESH_PAGES_BYTES of resized boxes each sample is resized in the in-place schedule. All paste
    the pixels of the vectorised device path; the unmixed sample keeps its own."""
    plan = fixed_plan(PLAN.index, 0.4, per_sample=False)  # sample 5 is its own partner: unmixed
    x = torch.rand(6, 3, 4, 16, 20, generator=torch.Generator().manual_seed(3)) if layout == "video" else images()
    x = (x * 255).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    adapter = looped(ResizeMix(1.0, inplace=inplace))
    region = adapter.draw_region(x, plan, torch.Generator().manual_seed(2))
    expected, expected_lam = vectorised(ResizeMix(1.0, inplace=False)).apply(x, plan, region)
    y1, y2, x1, x2 = region.box
    sources = np.ix_(_nearest_index(16, y2 - y1), _nearest_index(20, x2 - x1))
    assert ((y1 <= sources[0]) & (sources[0] < y2) & (x1 <= sources[1]) & (sources[1] < x2)).any()  # the box is
    # read as well as written: a write before its readers have read would show
    resized_bytes = x[..., y1:y2, x1:x2].numel() * x.element_size()
    monkeypatch.setattr(resizemix, "_FRESH_PAGES_BYTES", resized_bytes - (route == "past the fresh-pages limit"))
    if route == "chunks of one partner":
        monkeypatch.setattr(resizemix, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(resizemix, "_SMALL_BOX_PIXELS", (y2 - y1) * (x2 - x1) - (route == "large box"))
    partner_boxes = _record_calls(monkeypatch, "_partner_boxes", resized=1)  # (x, partners, size)
    resizes = _record_calls(monkeypatch, "_nearest_resize", resized=0)  # (images, size)
    original, batch = x.clone(), x.clone()
    out, lam = adapter.apply(batch, plan, region)
    assert (out is batch) == inplace and torch.equal(batch, out if inplace else original)
    assert torch.equal(out, expected) and torch.equal(lam, expected_lam) and not torch.equal(out, original)
    assert torch.equal(out[5], original[5]) and out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    if route == "past the fresh-pages limit":
        assert partner_boxes == [] and resizes == [1] * 5  # one resize per mixed sample
    elif layout == "channels_last" or route == "large box":
        assert partner_boxes == [] and resizes == [6]  # the batch, resized by torch's 2-D kernel
    else:
        assert resizes == [] and partner_boxes == [5]  # the 5 mixed samples' partners


@pytest.mark.parametrize("inplace", [True, False])
def test_resizemix_small_box_route_with_every_sample_mixed(monkeypatch, inplace):
    """Every sample mixed (a permutation with no fixed point): the partners' boxes go in with one copy."""
    plan = fixed_plan([1, 2, 0, 4, 5, 3], 0.4, per_sample=False)
    assert plan.all_mixed
    x = images()
    adapter = looped(ResizeMix(1.0, inplace=inplace))
    region = adapter.draw_region(x, plan, torch.Generator().manual_seed(1))
    expected, _ = vectorised(ResizeMix(1.0, inplace=False)).apply(x, plan, region)
    partner_boxes = _record_calls(monkeypatch, "_partner_boxes", resized=1)
    out, _ = adapter.apply(x.clone(), plan, region)
    assert partner_boxes == [6] and torch.equal(out, expected) and not torch.equal(out, x)


@pytest.mark.parametrize("inplace", [True, False])
def test_resizemix_small_box_route_takes_float64_columns_by_the_float32_rule(inplace):
    """torch's 1-D nearest kernel picks other float64 columns than the float32 rule for 26 -> 22; the small-box
    route (rows, then columns) gathers float64 columns by the rule, as the device does."""
    line = torch.arange(26.0).view(1, 1, 26)
    assert not torch.equal(F.interpolate(line.double(), 22, mode="nearest"), F.interpolate(line, 22).double())
    x = torch.arange(2 * 24 * 26, dtype=torch.float64).view(2, 1, 24, 26)  # exact in float32
    box = (1, 23, 2, 24)
    region = Resized(torch.tensor([box, box]), torch.full((2,), 1 - 22 * 22 / (24 * 26), dtype=torch.float64), box=box)
    out, _ = looped(ResizeMix(1.0, inplace=inplace)).apply(x.clone(), fixed_plan([1, 0], 0.5, per_sample=False), region)
    expected = x.clone()
    for i, j in ((0, 1), (1, 0)):
        expected[i, :, 1:23, 2:24] = F.interpolate(x[j : j + 1].float(), size=(22, 22), mode="nearest")[0].double()
    assert torch.equal(out, expected)
