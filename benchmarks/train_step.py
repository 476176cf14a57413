"""What mixing adds to a real training step: no mixing vs timm vs multimix, interleaved.

    python benchmarks/train_step.py                       # CPU: PreAct ResNet-18, batch 32, a small BERT
    python benchmarks/train_step.py --device cuda         # PreAct-18 at 128 and 512, BERT-base 64x128, bf16
    python benchmarks/train_step.py --device cuda --adapters --bert none   # CutMix, ResizeMix, FMix, SaliencyMix
    python benchmarks/train_step.py --bert none --rounds 8 --steps 3      # CPU: the image step alone

Each step is forward, backward and an SGD update on data already on the device (as
the recipes keep CIFAR-10), so the only difference between methods is the mixing
call and the soft-target loss. Methods run round-robin, ``--steps`` steps each per
round, so drift on a noisy machine hits them alike; ms/step is the median over rounds,
and the overhead the median over rounds of each round's time against the unmixed step's
in the same round (so a round slowed by other work on the machine does not skew it).
On CUDA: bf16 autocast and channels_last, and each timed block ends with a synchronize.
Raw rows (one per method and round) go to ``benchmarks/results/`` (``--no-csv``: print only).

``--compile MODE`` times the step compiled whole instead (PreAct ResNet-18 only), three ways:
the compiled step without mixing (ERM, one-hot targets), timm's eager mixer feeding that
same compiled step, and multimix with ``mixer.apply`` inside the compiled step
(``mixer.plan_for`` on the host before it; adapters ``inplace=False``, as CUDA graphs need).
Backward runs through AOTAutograd and the SGD step is eager (fused on CUDA). On CUDA each
step's syncs are counted too (``torch.cuda.set_sync_debug_mode``):

    python benchmarks/train_step.py --device cuda --compile reduce-overhead             # CUDA graphs
    python benchmarks/train_step.py --device cuda --compile max-autotune-no-cudagraphs
    python benchmarks/train_step.py --compile default --batches 32,64 --rounds 8   # CPU: inductor's C++ code
    python benchmarks/train_step.py --compile default --backend aot_eager --batches 4 --size 8   # a quick CPU check
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from collections.abc import Callable

import timm.data.mixup as timm_mixup
import torch
import torch.nn.functional as F
import transformers
from _results import append
from host import cuda_syncs

import multimix
from multimix.image import CutMix, FMix, Mixup, ResizeMix, SaliencyMix
from multimix.text import HiddenMix
from multimix_recipes.models import PreActResNet18

NUM_CLASSES = 10
COLUMNS = ["date", "mode", "backend", "model", "size", "batch", "dtype", "method", "round", "steps", "ms", "syncs",
           "sync_error_mode"]  # fmt: skip
EAGER_COLUMNS = ["date", "model", "size", "batch", "dtype", "method", "round", "steps", "ms"]
MODES = ("max-autotune-no-cudagraphs", "reduce-overhead", "default", "max-autotune")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def per_round_ms(steps: dict[str, Callable[[], None]], rounds: int, per_round: int, device: torch.device,
                 warmup: int = 1) -> dict[str, list[float]]:  # fmt: skip
    """Each method's mean time per step (ms) in each round, run round-robin after ``warmup`` calls of each."""
    for _ in range(warmup):  # allocator, cuDNN autotuning, lazy init; compiling and CUDA graph recording
        for step in steps.values():
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
    return times


def save(benchmark: str, device: torch.device, columns: list[str], times: dict[str, list[float]],
         fixed: dict[str, object], per_method: dict[str, dict[str, object]] | None = None) -> None:  # fmt: skip
    """Append one row per method and round of ``times`` (ms per step) to the results file, and say where."""
    day, extra = datetime.date.today().isoformat(), per_method or {}
    rows = [{"date": day, **fixed, "method": name, "round": k, "ms": f"{ms:.4f}", **extra.get(name, {})}
            for name, values in times.items() for k, ms in enumerate(values)]  # fmt: skip
    print(f"raw rows appended to {append(benchmark, device, rows, columns)}")


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


def compiled_steps(batch: int, device: torch.device, mode: str, backend: str, size: int = 32,
                   mix: str = "mixup") -> dict[str, Callable[[], None]]:  # fmt: skip
    """One SGD step of PreAct ResNet-18 per method with the loss compiled whole (``fullgraph=True``, static shapes):
    ERM, timm's eager mixer feeding the same compiled step, and multimix with ``mixer.apply`` inside it."""
    torch._dynamo.reset()  # a fresh cache per batch size: each is its own static-shape graph
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = PreActResNet18(3, NUM_CLASSES).to(device, memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=cuda)
    x = torch.rand(batch, 3, size, size, device=device).to(memory_format=fmt)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    one_hot = F.one_hot(y, NUM_CLASSES).float()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    cutmix, name = mix == "cutmix", "CutMix" if mix == "cutmix" else "Mixup"
    # out of place: a CUDA graph does not record a write into one of its inputs (docs/compile.md)
    mixer = multimix.Mixer((CutMix if cutmix else Mixup)(1.0, inplace=False), num_classes=NUM_CLASSES, seed=0)
    timm_mixer = timm_mixup.Mixup(mixup_alpha=float(not cutmix), cutmix_alpha=float(cutmix), num_classes=NUM_CLASSES)

    def soft_loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(inputs)
        return multimix.soft_cross_entropy(logits, targets)

    def mixed_loss(inputs: torch.Tensor, labels: torch.Tensor, plan: multimix.MixPlan) -> torch.Tensor:
        out = mixer.apply(inputs, labels, plan)
        return soft_loss(out.inputs, out.targets)

    options = {"backend": backend, "fullgraph": True, "dynamic": False, "mode": mode if backend == "inductor" else None}
    compiled_soft, compiled_mixed = torch.compile(soft_loss, **options), torch.compile(mixed_loss, **options)
    graphs = mode == "reduce-overhead"

    def train(loss_of: Callable[..., torch.Tensor], *args: object) -> None:
        if graphs:  # a new iteration: the last step's graph outputs (loss, gradients) have been consumed
            torch.compiler.cudagraph_mark_step_begin()
        loss = loss_of(*args)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def ours() -> None:  # the plan is drawn on the host, outside the compiled step
        inputs = x.clone()
        train(compiled_mixed, inputs, y, mixer.plan_for(inputs, y))

    return {
        "compiled ERM": lambda: train(compiled_soft, x.clone(), one_hot),
        f"timm {name} eager + compiled step": lambda: train(compiled_soft, *timm_mixer(x.clone(), y)),
        f"multimix {name} inside the compiled step": ours,
    }


def sync_check(step: Callable[[], None]) -> tuple[int, str]:
    """The syncs torch reports in one call of ``step``, and whether a call passes ``set_sync_debug_mode("error")``."""
    count, verdict = cuda_syncs(step), "passed"
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    except RuntimeError as error:
        verdict = "raised: " + str(error).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return count, verdict


def run_compiled(args: argparse.Namespace, device: torch.device, batches: list[int], rounds: int, steps: int) -> None:
    """Time the compiled steps per batch size; rows are appended after each size, so a run cut short keeps them."""
    cuda = device.type == "cuda"
    fixed = {"mode": args.compile, "backend": args.backend, "model": "preact_resnet18", "size": args.size,
             "dtype": "bf16 autocast" if cuda and torch.cuda.is_bf16_supported() else "float32"}  # fmt: skip
    print(f"compiled whole: mode {args.compile}" + ("" if args.backend == "inductor" else f", backend {args.backend}"))
    for batch in batches:
        contenders = compiled_steps(batch, device, args.compile, args.backend, args.size, args.mix)
        start = time.perf_counter()
        times = per_round_ms(contenders, rounds, steps, device, warmup=3)  # the third call replays a CUDA graph
        seconds = time.perf_counter() - start
        checks = {name: sync_check(step) for name, step in contenders.items()} if cuda else {}
        report(f"PreAct ResNet-18, {args.size}x{args.size}, batch {batch}, compiled ({args.compile}); "
               f"overhead vs compiled ERM; {seconds:.0f} s with compiling", times)  # fmt: skip
        for name, (count, verdict) in checks.items():
            print(f"{name:<40}syncs per step: {count}; under set_sync_debug_mode('error'): {verdict}")
        if not args.no_csv:
            save("train_step_compiled", device, COLUMNS, times, {**fixed, "batch": batch, "steps": steps},
                 {name: dict(zip(COLUMNS[-2:], check, strict=True)) for name, check in checks.items()})  # fmt: skip


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


def overheads(times: dict[str, list[float]]) -> dict[str, float]:
    """Each method's median over rounds of its time / the first method's time in the same round, minus 1."""
    baseline = next(iter(times.values()))
    return {name: statistics.median(ms / base for ms, base in zip(values, baseline, strict=True)) - 1
            for name, values in times.items()}  # fmt: skip


def report(title: str, times: dict[str, list[float]]) -> None:
    """The median ms per step of each method (``times``: ms per round) and its paired overhead."""
    print(f"\n{title}\n{'method':<40}{'ms/step':>10}{'overhead':>10}")
    for name, overhead in overheads(times).items():
        print(f"{name:<40}{statistics.median(times[name]):>10.2f}{100 * overhead:>+9.1f}%")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default=None, help="comma-separated image batch sizes (CPU: 32; CUDA: 128,512)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the round-robin (CPU: 5; CUDA: 15)")
    parser.add_argument("--steps", type=int, default=None, help="steps per method per round (CPU: 2; CUDA: 20)")
    parser.add_argument("--bert", choices=["base", "small", "none"], default=None, help="CPU: small; CUDA: base")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adapters", action="store_true", help="CutMix, ResizeMix, FMix, SaliencyMix instead")
    parser.add_argument("--compile", choices=MODES, default=None, help="time the step compiled whole in this mode")
    parser.add_argument("--backend", default="inductor", help="with --compile: aot_eager for a CPU check (no mode)")
    parser.add_argument("--mix", choices=["mixup", "cutmix"], default="mixup", help="with --compile: the mixing")
    parser.add_argument("--size", type=int, default=32, help="with --compile: image side (8 for a quick CPU check)")
    parser.add_argument("--no-csv", action="store_true", help="print only, append no rows to benchmarks/results/")
    args = parser.parse_args(argv)
    if args.compile is not None and args.adapters:
        parser.error("--compile times Mixup or CutMix (--mix) against timm; drop --adapters")
    if args.compile is None and (args.backend, args.mix, args.size) != ("inductor", "mixup", 32):
        parser.error("--backend, --mix and --size go with --compile MODE; e.g. --compile reduce-overhead")
    if args.backend not in torch.compiler.list_backends(exclude_tags=()):
        parser.error(f"--backend {args.backend!r} is not a torch.compile backend; use inductor, or aot_eager on a CPU")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
    batches = [int(b) for b in (args.batches or ("128,512" if cuda else "32")).split(",")]
    rounds, steps = args.rounds or (15 if cuda else 5), args.steps or (20 if cuda else 2)
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} threads"
    print(f"training steps on {where}; torch {torch.__version__}; {rounds} rounds x {steps} steps per method")
    if args.compile is not None:
        run_compiled(args, device, batches, rounds, steps)
        return
    bf16 = cuda and torch.cuda.is_bf16_supported()
    runs = [(f"PreAct ResNet-18, 32x32, batch {b}", lambda b=b: image_steps(b, device, args.adapters),
             {"model": "preact_resnet18", "size": 32, "batch": b}) for b in batches]  # fmt: skip
    bert = args.bert or ("base" if cuda else "small")
    if bert != "none":
        batch, length = (64, 128) if bert == "base" else (16, 64)
        runs.append((f"BERT-{bert} from a config, {batch}x{length}", lambda: text_steps(batch, length, bert, device),
                     {"model": f"bert-{bert}", "size": length, "batch": batch}))  # fmt: skip
    for title, build, fixed in runs:  # each built just before it runs: one model in memory at a time
        times = per_round_ms(build(), rounds, steps, device)
        report(title, times)
        if not args.no_csv:
            save("train_step", device, EAGER_COLUMNS, times,
                 {**fixed, "dtype": "bf16 autocast" if bf16 else "float32", "steps": steps})  # fmt: skip


if __name__ == "__main__":
    main()
