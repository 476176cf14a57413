"""The vectorised GPU path gives what the CPU path gives on the same plan."""

import pytest
import torch
from conftest import looped

import multimix
from multimix.image import CutMix, FMix, Mixup, ResizeMix, SaliencyMix

pytestmark = pytest.mark.gpu  # skipped without CUDA by tests/conftest.py


@pytest.mark.parametrize("adapter_cls", [Mixup, CutMix])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_matches_cpu(adapter_cls, per_sample, dtype):
    x = torch.randn(9, 3, 16, 16).to(dtype)
    y = torch.randint(0, 5, (9,))
    cpu = multimix.Mixer(adapter_cls(1.0), num_classes=5, per_sample=per_sample, seed=0)(x.clone(), y)
    gpu_x = x.cuda().to(memory_format=torch.channels_last)
    gpu = multimix.Mixer(adapter_cls(1.0), num_classes=5, per_sample=per_sample, seed=0)(gpu_x, y.cuda())
    assert gpu.inputs is gpu_x and gpu.inputs.is_contiguous(memory_format=torch.channels_last)
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
    torch.testing.assert_close(gpu.inputs.cpu(), cpu.inputs, atol=tol, rtol=tol)
    torch.testing.assert_close(gpu.targets.cpu(), cpu.targets)
    assert gpu.lam.device.type == "cuda" and gpu.index.device.type == "cuda"


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_resizemix_gpu_equals_the_cpu_loop(per_sample, dtype, memory_format):
    """The CPU's loop and the device's gathers paste the same pixels, in either layout."""
    x = torch.rand(9, 3, 112, 112).to(dtype)
    y = torch.randint(0, 5, (9,))
    cpu = multimix.Mixer(looped(ResizeMix(1.0)), num_classes=5, per_sample=per_sample, seed=0)(x.clone(), y)
    gpu_x = x.cuda().contiguous(memory_format=memory_format)
    gpu = multimix.Mixer(ResizeMix(1.0), num_classes=5, per_sample=per_sample, seed=0)(gpu_x, y.cuda())
    assert gpu.inputs is gpu_x and gpu.inputs.is_contiguous(memory_format=memory_format)
    assert torch.equal(gpu.inputs.cpu(), cpu.inputs) and not torch.equal(cpu.inputs, x)
    torch.testing.assert_close(gpu.targets.cpu(), cpu.targets)


@pytest.mark.parametrize("adapter_cls", [ResizeMix, FMix, SaliencyMix])
@pytest.mark.parametrize("per_sample", [False, True])
def test_new_adapters_on_gpu_label_the_area_each_image_keeps(adapter_cls, per_sample):
    """Sample i holds the value i everywhere: the fraction of its pixels still i is its label weight, on the device."""
    n = 6
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 112, 112).contiguous().cuda()
    mixer = multimix.Mixer(adapter_cls(1.0), num_classes=n, per_sample=per_sample, seed=0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = mixer(x, torch.arange(n, device=x.device))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    own = (out.inputs == torch.arange(n, device=x.device).view(-1, 1, 1, 1)).double().mean((1, 2, 3))
    torch.testing.assert_close(out.lam.double(), own, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.targets.sum(1), torch.ones(n, device=x.device))


@pytest.mark.parametrize("adapter_cls", [Mixup, CutMix, ResizeMix, FMix, SaliencyMix])
@pytest.mark.parametrize("per_sample", [False, True])
def test_out_of_place_on_gpu_keeps_channels_last_without_a_sync(adapter_cls, per_sample):
    """inplace=False on the device returns a new channels_last batch with the in-place result, and never waits."""
    x = torch.rand(8, 3, 64, 64, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.arange(8, device="cuda")
    expected = multimix.Mixer(adapter_cls(1.0), num_classes=8, per_sample=per_sample, seed=0)(x.clone(), y)
    mixer = multimix.Mixer(adapter_cls(1.0, inplace=False), num_classes=8, per_sample=per_sample, seed=0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = mixer(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.inputs is not x and out.inputs.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out.inputs, expected.inputs) and not torch.equal(out.inputs, x)


@pytest.mark.parametrize("per_sample", [False, True])
def test_fmix_on_gpu_replays_from_the_mixers_seed(per_sample):
    """Per sample the noise maps are drawn on the device, seeded from the Mixer's generator: same seed, same mix."""
    x = torch.rand(8, 3, 64, 64, device="cuda")
    y = torch.arange(8, device="cuda")
    mixers = [multimix.Mixer(FMix(1.0), num_classes=8, per_sample=per_sample, seed=seed) for seed in (0, 0, 1)]
    runs = [mixer(x.clone(), y) for mixer in mixers]
    assert torch.equal(runs[0].inputs, runs[1].inputs) and torch.equal(runs[0].lam, runs[1].lam)
    assert not torch.equal(runs[0].inputs, runs[2].inputs)


@pytest.mark.parametrize("adapter_cls", [ResizeMix, FMix, SaliencyMix])
@pytest.mark.parametrize("per_sample", [False, True])
def test_new_adapters_first_call_at_a_new_size_makes_no_sync(adapter_cls, per_sample):
    """What is cached per image size and device (FMix's spectrum scale, SaliencyMix's cell table) reaches the
    device without a wait, on the very first call."""
    height = {ResizeMix: 37, FMix: 39, SaliencyMix: 41}[adapter_cls] + 2 * per_sample  # sizes no other test uses
    x = torch.rand(6, 3, height, 47, device="cuda")
    mixer = multimix.Mixer(adapter_cls(1.0), num_classes=6, per_sample=per_sample, seed=0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        mixer(x, torch.arange(6, device="cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
