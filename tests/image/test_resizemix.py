"""ResizeMix against torch's nearest resize pasted into the box: every path, layout and dtype."""

import pytest
import torch
import torch.nn.functional as F
from adapter_cases import PLAN, images, run
from conftest import fixed_plan, looped, vectorised

from multimix.image import ResizeMix
from multimix.image.resizemix import Resized, _source_maps


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


def test_resizemix_region_without_a_scale_takes_it_from_the_boxes():
    """A region made by hand (boxes and kept only) gets each box's scale computed where its boxes are: the same
    pixels on both paths, and on meta without a read-back."""
    x, plan = images(), fixed_plan(PLAN.index, PLAN.lam, per_sample=True)
    adapter = ResizeMix(1.0)
    region = adapter.draw_region(x, plan, torch.Generator().manual_seed(0))
    expected, _ = vectorised(adapter).apply(x.clone(), plan, region)
    for path in (looped, vectorised):
        out, _ = path(ResizeMix(1.0)).apply(x.clone(), plan, Resized(region.boxes, region.kept))
        assert torch.equal(out, expected) and not torch.equal(out, x)
    meta_plan, meta_region = plan.to(torch.device("meta"), region._replace(scale=None))
    assert adapter.apply(torch.empty(x.shape, device="meta"), meta_plan, meta_region)[0].device.type == "meta"


def nearest_sources(size: int, side: int) -> torch.Tensor:
    """The positions ``F.interpolate(mode="nearest")`` reads, in float32, to resize a line of ``size`` to ``side``."""
    line = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)
    return F.interpolate(line, size=(1, side), mode="nearest").flatten().long()


def test_source_maps_are_the_float32_nearest_rule_for_every_box():
    """The source maps: inside each box, the partner pixel torch's float32 nearest resize picks; outside, no rows."""
    for size in (224, 37, 5):
        sides = torch.arange(0, size + 1)
        starts = torch.tensor([(7 * n) % (size - int(n) + 1) for n in sides])  # boxes of every side, anywhere
        boxes = torch.stack([starts, starts + sides, starts, starts + sides], dim=1)
        rows, cols, row_source, col_source = _source_maps(Resized(boxes, torch.ones(len(boxes))), size, size)
        assert torch.equal(rows, cols) and torch.equal(row_source, col_source)
        for start, side, inside, source in zip(starts.tolist(), sides.tolist(), rows, row_source, strict=True):
            assert inside.tolist() == [start <= k < start + side for k in range(size)]
            expected = torch.zeros(size, dtype=torch.long)
            if side:
                expected[start : start + side] = nearest_sources(size, side)
            assert torch.equal(source, expected), (size, side)


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
    """The CPU loop (a gather per sample) and the vectorised gathers agree bit for bit, in every dtype."""
    plan = fixed_plan(PLAN.index, PLAN.lam if per_sample else 0.4, per_sample=per_sample)
    x = (images() * 255).to(dtype)
    looped_out, looped_lam, region = run(looped(ResizeMix(1.0)), x, plan)
    vectorised_out, vectorised_lam = vectorised(ResizeMix(1.0)).apply(x.clone(), plan, region)
    assert looped_out.dtype == dtype and torch.equal(looped_out, vectorised_out) and not torch.equal(looped_out, x)
    assert torch.equal(looped_lam, vectorised_lam)


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
    region = Resized(torch.tensor([box, box]), kept)
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
    vectorised_out, _ = vectorised(ResizeMix(1.0)).apply(x.clone(), plan, region)
    assert torch.equal(looped_out, vectorised_out) and not torch.equal(looped_out, x)
    for t in range(4):  # frame by frame, the 4-D result
        frame, _, _ = run(looped(ResizeMix(1.0)), x[:, :, t].contiguous(), plan)
        assert torch.equal(looped_out[:, :, t], frame)


def test_resizemix_loop_writes_are_seen_by_autograd():
    """The CPU loop writes the batch in place; its version moves, so a graph that saved it refuses to run."""
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
