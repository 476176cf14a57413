"""What mixing adds to a real training step: no mixing vs timm vs multimix, interleaved.

    python benchmarks/train_step.py                       # CPU: PreAct ResNet-18, batch 32, a small BERT
    python benchmarks/train_step.py --device cuda         # PreAct-18 at 128 and 512, BERT-base 64x128, bf16
    python benchmarks/train_step.py --device cuda --adapters --bert none   # CutMix, ResizeMix, FMix, SaliencyMix

Each step is forward, backward and an SGD update on data already on the device (as
the recipes keep CIFAR-10), so the only difference between methods is the mixing
call and the soft-target loss. Methods run round-robin, ``--steps`` steps each per
round, so drift on a noisy machine hits them alike; the figure is the median over
rounds of the time per step, and the overhead is relative to the unmixed step.
On CUDA: bf16 autocast and channels_last, and each timed block ends with a synchronize.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import timm.data.mixup as timm_mixup
import torch
import torch.nn.functional as F
import transformers

import multimix
from multimix.image import CutMix, FMix, Mixup, ResizeMix, SaliencyMix
from multimix.text import HiddenMix
from multimix_recipes.models import PreActResNet18

NUM_CLASSES = 10


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(steps: dict[str, Callable[[], None]], rounds: int, per_round: int, device: torch.device) -> dict:
    """Median over rounds of the mean time per step (ms) of each method, run round-robin."""
    for step in steps.values():  # warm-up: allocator, cuDNN autotuning, lazy init
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            sync(device)
            times[name].append((time.perf_counter() - start) / per_round * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def image_steps(batch: int, device: torch.device, adapters: bool = False) -> dict[str, Callable[[], None]]:
    """One SGD step of PreAct ResNet-18 on 32x32 images per method (``adapters``: multimix CutMix, ResizeMix,
    FMix and SaliencyMix instead of timm and Mixup, each per batch and per sample)."""
    torch.manual_seed(0)
    model = PreActResNet18(3, NUM_CLASSES).to(device)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, 32, 32, device=device).to(memory_format=fmt)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def train(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float(), targets) if targets.dim() == 1 else (
            multimix.soft_cross_entropy(logits, targets))  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timm_step(mixer: timm_mixup.Mixup) -> Callable[[], None]:
        return lambda: train(*mixer(x.clone(), y))

    def ours(adapter: multimix.Adapter, per_sample: bool) -> Callable[[], None]:
        mixer = multimix.Mixer(adapter, num_classes=NUM_CLASSES, per_sample=per_sample, seed=0)
        return lambda: train(*mixer(x.clone(), y))

    def timm_mixer(cutmix: bool, mode: str = "batch") -> timm_mixup.Mixup:
        return timm_mixup.Mixup(mixup_alpha=0.0 if cutmix else 1.0, cutmix_alpha=1.0 if cutmix else 0.0,
                                mode=mode, num_classes=NUM_CLASSES)  # fmt: skip

    if adapters:
        return {"no mixing": lambda: train(x.clone(), y)} | {
            f"multimix {type(adapter).__name__} {'per-sample' if per_sample else 'batch'}": ours(adapter, per_sample)
            for per_sample in (False, True)
            for adapter in (CutMix(1.0), ResizeMix(1.0), FMix(1.0), SaliencyMix(1.0))
        }
    return {
        "no mixing": lambda: train(x.clone(), y),
        "timm Mixup batch": timm_step(timm_mixer(False)),
        "multimix Mixup batch": ours(Mixup(1.0), False),
        "multimix Mixup per-sample": ours(Mixup(1.0), True),
        "timm CutMix batch": timm_step(timm_mixer(True)),
        "multimix CutMix batch": ours(CutMix(1.0), False),
        "multimix CutMix per-sample": ours(CutMix(1.0), True),
        "timm Mixup per-sample (elem)": timm_step(timm_mixer(False, "elem")),
    }


def text_steps(batch: int, length: int, size: str, device: torch.device) -> dict[str, Callable[[], None]]:
    """One AdamW step of a BERT classifier (random init from a config), plain vs HiddenMix through wrap."""
    dims = {"base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
            "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)}[size]
    torch.manual_seed(0)
    config = transformers.BertConfig(**dims, num_labels=NUM_CLASSES, attn_implementation="sdpa")
    base = transformers.BertForSequenceClassification(config).to(device)
    wrapped = multimix.wrap(base, HiddenMix(0.4, layers=(7, 9, 12) if size == "base" else (2, 3)), seed=0)
    optimizer = torch.optim.AdamW(base.parameters(), lr=1e-5)
    ids = torch.randint(1000, config.vocab_size, (batch, length), device=device)
    mask = torch.ones(batch, length, dtype=torch.long, device=device)
    mask[: batch // 2, length // 2 :] = 0  # half the batch is padded: the masks must be united
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def step(model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return run

    return {"BERT no mixing": step(base), "BERT multimix.wrap HiddenMix": step(wrapped)}


def report(title: str, results: dict[str, float]) -> None:
    baseline = next(iter(results.values()))
    print(f"\n{title}\n{'method':<40}{'ms/step':>10}{'overhead':>10}")
    for name, ms in results.items():
        print(f"{name:<40}{ms:>10.2f}{100 * (ms / baseline - 1):>+9.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default=None, help="comma-separated image batch sizes (CPU: 32; CUDA: 128,512)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the round-robin (CPU: 5; CUDA: 15)")
    parser.add_argument("--steps", type=int, default=None, help="steps per method per round (CPU: 2; CUDA: 20)")
    parser.add_argument("--bert", choices=["base", "small", "none"], default=None, help="CPU: small; CUDA: base")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adapters", action="store_true", help="CutMix, ResizeMix, FMix, SaliencyMix instead")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
    batches = [int(b) for b in (args.batches or ("128,512" if cuda else "32")).split(",")]
    rounds, steps = args.rounds or (15 if cuda else 5), args.steps or (20 if cuda else 2)
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} threads"
    print(f"training steps on {where}; torch {torch.__version__}; {rounds} rounds x {steps} steps per method")
    for batch in batches:
        results = interleaved(image_steps(batch, device, args.adapters), rounds, steps, device)
        report(f"PreAct ResNet-18, 32x32, batch {batch}", results)
    bert = args.bert or ("base" if cuda else "small")
    if bert != "none":
        batch, length = (64, 128) if bert == "base" else (16, 64)
        results = interleaved(text_steps(batch, length, bert, device), rounds, steps, device)
        report(f"BERT-{bert} from a config, {batch}x{length}", results)


if __name__ == "__main__":
    main()
