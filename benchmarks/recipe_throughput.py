"""The image recipe's training throughput against a plain step of the same model, side by side.

    python benchmarks/recipe_throughput.py                       # GPU: PreAct ResNet-18, batch 512
    python benchmarks/recipe_throughput.py --device cpu --images 1024 --batch-size 64

"recipe" is ``multimix run image`` itself (engine, augmentation, mixing, optimizer,
schedule), timed on its second epoch; "plain" is the same model, optimizer and precision
on data already normalised on the device (random batches, no augmentation, no mixing,
cross-entropy on hard labels): the rate the recipe is measured against.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from multimix_recipes import engine, models
from multimix_recipes.config import resolve
from multimix_recipes.image import train as image


def recipe_rate(config: dict) -> float:
    with tempfile.TemporaryDirectory() as out:
        torch.manual_seed(config["seed"])
        task = image.build(config)
        metrics = engine.train(task, {**config, "epochs": 2}, Path(out))
    return metrics["epochs"][-1]["train_samples_per_second"]


def plain_rate(config: dict, steps: int) -> float:
    device = engine.pick_device(config["device"])
    model = models.build(config["model"], 3, 10, device).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config["compile"]:
        model = torch.compile(model)
    n, batch = config["train_limit"], config["batch_size"]
    x = torch.randn(n, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (n,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if engine.use_bf16(config, device) \
        else nullcontext  # fmt: skip

    def step() -> None:
        index = torch.randint(0, n, (batch,), device=device)
        with autocast():
            loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(min(steps, 5)):  # warm-up (cuDNN autotuning, compilation)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=None, help="training images per epoch (default: all on GPU)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--method", default="mixup")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    gpu = engine.pick_device(args.device).type == "cuda"
    images = args.images or (50000 if gpu else 1024)
    batch = args.batch_size or (512 if gpu else 64)
    config = resolve("image", None, {
        "device": args.device, "method": args.method, "batch_size": batch, "train_limit": images,
        "val_size": max(1, min(1000, images // 8)),  # the validation split comes out of train_limit
        "test_limit": 1000, "model": "preact_resnet18" if gpu else "small_cnn", "progress": False,
        "optimizer": "sgd", "lr": 0.01, "schedule": "constant", "compile": args.compile,
    })  # fmt: skip
    recipe = recipe_rate(config)
    plain = plain_rate(config, steps=images // batch)
    device = torch.cuda.get_device_name() if gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(f"model {config['model']}, batch {batch}, {images} images/epoch, method {args.method}, {device}")
    print(f"| recipe images/s | plain step images/s | recipe / plain |\n|---:|---:|---:|\n"
          f"| {recipe:,.0f} | {plain:,.0f} | {recipe / plain:.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()
