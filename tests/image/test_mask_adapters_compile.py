"""ResizeMix, FMix and SaliencyMix: ``apply`` traced whole by torch.compile gives eager's pixels and label lam.

The plan and region are drawn beforehand on the host (what ``draw_region`` is for), so
``apply`` is tensor ops only: no read-back, no NumPy, no shape that depends on a value.
Traced with ``backend="eager"``, which checks the capture without compiling kernels.
"""

import warnings

import pytest
import torch
from adapter_cases import images
from conftest import looped
from torch._dynamo.testing import CompileCounter

import multimix
from multimix.image import FMix, ResizeMix, SaliencyMix

ADAPTERS = {
    "ResizeMix": ResizeMix,
    "FMix": FMix,
    "FMix soft edge": lambda alpha, inplace: FMix(alpha, max_soft=0.2, inplace=inplace),
    "SaliencyMix": SaliencyMix,
}


@pytest.mark.parametrize("name", list(ADAPTERS))
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("inplace", "p"), [(True, 1.0), (False, 0.6)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_apply_traced_whole_equals_eager(name, per_sample, inplace, p, memory_format):
    """Eager runs the CPU loop (forced); traced, the adapter takes its vectorised path: the same bits."""
    adapter = looped(ADAPTERS[name](1.0, inplace=inplace))
    mixer = multimix.Mixer(adapter, num_classes=6, per_sample=per_sample, p=p, seed=3)
    x = images().contiguous(memory_format=memory_format)
    plan = mixer.draw(x.shape[0])
    region = adapter.draw_region(x, plan, mixer.generator)
    assert plan.any_mixed and plan.all_mixed == (p == 1.0)
    expected, expected_lam = adapter.apply(x.clone(), plan, region)
    torch._dynamo.reset()  # a fresh trace for each case (no recompile limit across cases)
    compiled = torch.compile(lambda batch: adapter.apply(batch, plan, region), fullgraph=True, backend="eager")
    batch = x.clone()
    with warnings.catch_warnings():  # nothing traced with a warning (such as a cache wrapper dynamo steps through)
        warnings.simplefilter("error")
        out, lam = compiled(batch)
    assert torch.equal(out, expected) and torch.equal(lam, expected_lam) and not torch.equal(out, x)
    assert (out.data_ptr() == batch.data_ptr()) == inplace and torch.equal(batch, out if inplace else x)
    assert out.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("name", list(ADAPTERS))
@pytest.mark.parametrize("per_sample", [False, True])
def test_one_trace_serves_every_draw(name, per_sample):
    """Plans and regions of other draws (another box size, another share of the mask) reuse the first trace:
    no shape and no guard of the trace depends on a drawn value."""
    mixer = multimix.Mixer(ADAPTERS[name](1.0, inplace=False), num_classes=6, per_sample=per_sample, seed=4)
    adapter, x = mixer.adapters[0], images()
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(adapter.apply, fullgraph=True, backend=counter)
    for _ in range(3):
        plan = mixer.draw(x.shape[0])
        region = adapter.draw_region(x, plan, mixer.generator)
        expected, expected_lam = adapter.apply(x, plan, region)
        out, lam = compiled(x, plan, region)
        assert torch.equal(out, expected) and torch.equal(lam, expected_lam) and not torch.equal(out, x)
    assert counter.frame_count == 1
