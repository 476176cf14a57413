"""Host time of each phase of a training step: the mixing call, forward + loss, backward + update.

    python benchmarks/step_phases.py --device cuda     # PreAct ResNet-18, 32x32, batch 128, bf16
    python benchmarks/step_phases.py --device cpu --batch 16 --rounds 2

No synchronisation inside a step, as in real training: on a GPU each phase's time is
what it costs the CPU to issue it, which is what bounds a step when the GPU is faster
than the host (a small model on a large GPU). Methods run round-robin, 20 steps per
round, so drift hits them alike; every method trains on the same soft-label loss
(``F.cross_entropy`` takes probability rows), so only the mixing call differs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from timm.data import mixup as timm_mixup

import multimix
from multimix.image import CutMix, Mixup
from multimix_recipes.models import PreActResNet18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = PreActResNet18(3, 10).to(device).to(memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(args.batch, 3, 32, 32, device=device).to(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch,), device=device)
    mixers = {
        "no mixing": None,
        "timm Mixup batch": timm_mixup.Mixup(mixup_alpha=1.0, num_classes=10),
        "timm CutMix batch": timm_mixup.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=10),
        "multimix Mixup batch": multimix.Mixer(Mixup(1.0), num_classes=10, seed=0),
        "multimix Mixup per-sample": multimix.Mixer(Mixup(1.0), num_classes=10, per_sample=True, seed=0),
        "multimix CutMix batch": multimix.Mixer(CutMix(1.0), num_classes=10, seed=0),
    }
    times: dict[str, list[list[float]]] = {name: [[], [], [], []] for name in mixers}
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for round_ in range(args.rounds + 1):  # round 0 warms up (cuDNN autotuning)
        for name, mixer in mixers.items():
            sync()
            start = time.perf_counter()
            for _ in range(args.steps):
                t0 = time.perf_counter()
                inputs = x.clone()
                inputs, targets = (inputs, y) if mixer is None else tuple(mixer(inputs, y))[:2]
                t1 = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                    logits = model(inputs)
                loss = F.cross_entropy(logits.float(), targets)
                t2 = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                t3 = time.perf_counter()
                if round_:
                    for phase, value in zip(times[name], (t1 - t0, t2 - t1, t3 - t2), strict=False):
                        phase.append(value)
            sync()
            if round_:
                times[name][3].append((time.perf_counter() - start) / args.steps)
    where = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"PreAct ResNet-18, batch {args.batch}, on {where}; torch {torch.__version__}; medians")
    print(f"{'method':28s} {'mix us':>8s} {'fwd+loss us':>12s} {'bwd+step us':>12s} {'step ms':>8s}")
    for name, (mix, forward, backward, step) in times.items():
        print(f"{name:28s} {statistics.median(mix) * 1e6:8.0f} {statistics.median(forward) * 1e6:12.0f} "
              f"{statistics.median(backward) * 1e6:12.0f} {statistics.median(step) * 1e3:8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
