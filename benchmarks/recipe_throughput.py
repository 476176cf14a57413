"""The image recipe's training step, eager and compiled whole, against the compiled step without mixing.

    python benchmarks/recipe_throughput.py --device cuda          # the mixup paper's config (cifar10-paper.yaml)
    python benchmarks/recipe_throughput.py --device cpu --images 256 --batch-size 32 --model small_cnn \\
        --backend aot_eager                                        # a check that it runs, on a CPU

Each contender is ``multimix run image`` itself (the engine's loop: augmentation, mixing,
forward, loss, backward, optimizer, schedule) for ``--epochs`` epochs of ``--images``
training images; the first epoch pays for compiling, the later ones are timed:

- ``eager``: the step as the README's CPU run takes it (``compile: false``);
- ``compiled``: the step compiled whole (``compile: true``: one graph for mixing, forward
  and loss, AOTAutograd's backward, CUDA graphs with inductor on a GPU, fused optimizer);
- ``compiled erm``: the same compiled step without mixing, what mixing is measured against.

It prints images/s side by side, the ratios (compiled / eager, compiled / compiled ERM),
the compile time (first epoch minus a timed one) and the optimizer steps after which
compiling has paid for itself; raw per-epoch rows are appended to
``benchmarks/results/<card>-torch<version>.csv``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from _results import append, card_name

from multimix_recipes import engine
from multimix_recipes.config import resolve
from multimix_recipes.image import train as image

COLUMNS = ["method", "step", "backend", "model", "batch", "images", "epoch", "seconds", "images_per_s"]


def epochs_of(config: dict) -> list[dict]:
    """The per-epoch history of one run of the image recipe with ``config``."""
    with tempfile.TemporaryDirectory() as out:
        torch.manual_seed(config["seed"])
        torch._dynamo.reset()
        return engine.train(image.build(config), config, Path(out))["epochs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=None, help="training images per epoch (default: all on a GPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the paper's 128 (64 on a CPU)")
    parser.add_argument("--epochs", type=int, default=3, help="the first compiles; the others are timed")
    parser.add_argument("--method", default="mixup", help="the mixing method timed against ERM")
    parser.add_argument("--model", default=None, help="default: preact_resnet18 (the paper's)")
    parser.add_argument("--backend", default="inductor", help="compile_backend (aot_eager for a check on a CPU)")
    parser.add_argument("--compile", action="store_true", help="no effect: the compiled step is always measured")
    parser.add_argument("--no-csv", action="store_true", help="print only; append nothing to benchmarks/results/")
    args = parser.parse_args()
    device = engine.pick_device(args.device)
    gpu = device.type == "cuda"
    images = args.images or (50_000 if gpu else 1024)
    batch = args.batch_size or (128 if gpu else 64)
    base = {"device": args.device, "train_limit": images, "val_size": max(1, min(1000, images // 8)),
            "test_limit": 1000, "batch_size": batch, "epochs": max(2, args.epochs), "progress": False,
            "model": args.model or "preact_resnet18", "compile_backend": args.backend}  # fmt: skip
    eager, compiled, erm = f"eager {args.method}", f"compiled {args.method}", "compiled erm"
    contenders = {eager: (args.method, "false"), compiled: (args.method, "true"), erm: ("erm", "true")}
    rows, rates, compile_seconds = [], {}, {}
    for name, (method, compiles) in contenders.items():
        config = resolve("image", "cifar10-paper", {**base, "method": method, "compile": compiles})
        history = epochs_of(config)
        timed = history[1:]
        rates[name] = statistics.median(h["train_samples_per_second"] for h in timed)
        compile_seconds[name] = history[0]["train_seconds"] - statistics.median(h["train_seconds"] for h in timed)
        rows += [{"method": method, "step": name, "backend": args.backend if compiles == "true" else "",
                  "model": config["model"], "batch": batch, "images": images, "epoch": h["epoch"],
                  "seconds": f"{h['train_seconds']:.3f}", "images_per_s": f"{h['train_samples_per_second']:.1f}"}
                 for h in history]  # fmt: skip
    where = torch.cuda.get_device_name(device) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{base['model']}, batch {batch}, train_limit {images}, method {args.method}, backend {args.backend}, "
          f"{where}; median of epochs 2-{base['epochs']}")  # fmt: skip
    print("| step | images/s | ms/step | compiled / eager | / compiled ERM |\n|---|---:|---:|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {1000 * batch / rate:.2f} | {rate / rates[eager]:.2f}x | "
              f"{rate / rates[erm]:.0%} |")  # fmt: skip
    saved = batch / rates[eager] - batch / rates[compiled]  # seconds per optimizer step
    overhead = max(compile_seconds[compiled], 0.0)
    pays = f"after {overhead / saved:,.0f} optimizer steps" if saved > 0 else "never (the compiled step is not faster)"
    print(f"compiling took about {overhead:.0f} s (first epoch minus a timed one); it pays {pays}")
    if not args.no_csv:
        print(f"raw rows appended to {append('recipe_throughput', device, rows, COLUMNS)} ({card_name(device)})")


if __name__ == "__main__":
    main()
