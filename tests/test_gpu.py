"""The vectorised GPU path gives what the CPU path gives on the same plan."""

import pytest
import torch

import multimix
from multimix.image import CutMix, Mixup

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


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
