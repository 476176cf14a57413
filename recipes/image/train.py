"""Image recipe: CIFAR-10 (embedded), PreAct ResNet-18 or a small CNN, mixup/CutMix vs ERM.

    multimix run image                         # embedded CIFAR-10, CPU-sized defaults (train_limit 10,000)
    multimix run image --compare erm,mixup,regmixup --set seeds=0,1,2
    multimix run image --compare erm,mixup,mixup-dominant,regmixup     # calibration: ECE before and after T
    multimix run image --config recipes/image/cifar10-paper.yaml    # the mixup paper's 200-epoch run

The images stay uint8 on the device (when they fit) and each batch is augmented there
(random crop with 4-pixel padding and a horizontal flip, one batched gather), then
normalised and mixed on the device. A seeded ``val_size`` images of the training data are
held out as the validation split (the engine fits the temperature on it).
"""

from __future__ import annotations

import functools
import io
import random
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import multimix
from multimix.image import CutMix, FMix, Mixup, ResizeMix, SaliencyMix
from multimix.text import HiddenMix
from multimix_recipes import data_file, models
from multimix_recipes.data import TensorData, load_source, require_classes, split_folders, split_off, to_device
from multimix_recipes.engine import Task, mixer_for, pick_device
from multimix_recipes.step import SplitLoss, stand_in

NAMED = ("cifar10", "cifar100", "fashion_mnist")
MEAN_STD = {3: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), 1: ((0.2860,), (0.3530,))}


Source = Callable[[], bytes]  # reads one image file's bytes


def _decode(read: Source, name: str, size: int) -> np.ndarray:
    """One image as ``(size, size, 3)`` uint8; a file PIL cannot decode is an error naming it."""
    try:
        image = Image.open(io.BytesIO(read())).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"--data: cannot decode the image {name} ({error}); remove or replace it") from error
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _as_dataset(files: list[tuple[str, Source, int]], limit: int | None, seed: int, size: int) -> TensorData:
    """Decode ``files`` ``(name, read, label)`` (only the seeded ``limit`` of them) into uint8 ``(N, 3, H, W)``."""
    order = list(range(len(files)))
    if limit is not None and limit < len(order):
        order = sorted(random.Random(seed).sample(order, limit))
    x = torch.from_numpy(np.stack([_decode(files[i][1], files[i][0], size) for i in order]))
    return TensorData((x.permute(0, 3, 1, 2).contiguous(), torch.tensor([files[i][2] for i in order])))


@functools.lru_cache(maxsize=1)
def _embedded_files() -> tuple[dict[str, list[tuple[str, bytes]]], list[str]]:
    """The JPEGs of the embedded CIFAR-10, read once per process: split -> [(name, bytes)], classes."""
    splits: dict[str, list[tuple[str, bytes]]] = {"train": [], "test": []}
    with tarfile.open(data_file("cifar10.tar.gz"), "r|gz") as archive:
        for member in archive:
            if member.isfile():
                splits[Path(member.name).parts[0]].append((member.name, archive.extractfile(member).read()))
    classes = sorted({Path(name).parts[1] for name, _ in splits["train"]})
    return splits, classes


def load_embedded(config: dict[str, Any]) -> tuple[TensorData, TensorData, list[str]]:
    """CIFAR-10 shipped with the recipes: 50,000 train / 10,000 test JPEGs (``train_limit``/``test_limit`` of them)."""
    splits, classes = _embedded_files()
    sets = []
    for split, limit in (("train", config["train_limit"]), ("test", config["test_limit"])):
        files = [(name, functools.partial(bytes, data), classes.index(Path(name).parts[1]))
                 for name, data in splits[split]]  # fmt: skip
        sets.append(_as_dataset(files, limit, config["seed"], config["image_size"]))
    return sets[0], sets[1], classes


def load_named(name: str, config: dict[str, Any]) -> tuple[TensorData, TensorData, list[str]]:
    """CIFAR-10/100 or Fashion-MNIST through torchvision (downloaded into ``data_root``)."""
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100,
           "fashion_mnist": torchvision.datasets.FashionMNIST}[name]  # fmt: skip
    root = Path(config["data_root"]).expanduser()
    try:
        train_set = cls(root, train=True, download=True)
        test_set = cls(root, train=False, download=True)
    except (OSError, RuntimeError) as error:
        raise ValueError(
            f"could not download {name} into {root} ({error}); offline, use the embedded data "
            "(--data embedded) or a local image folder (--data PATH)"
        ) from error
    datasets = []
    for split, limit in ((train_set, config["train_limit"]), (test_set, config["test_limit"])):
        data = np.asarray(split.data)
        if data.ndim == 3:  # grey images: (N, H, W) -> (N, H, W, 1)
            data = data[..., None]
        order = list(range(len(data)))
        if limit is not None and limit < len(order):
            order = sorted(random.Random(config["seed"]).sample(order, limit))
        x = torch.from_numpy(data[order]).permute(0, 3, 1, 2).contiguous()
        datasets.append(TensorData((x, torch.tensor([int(split.targets[i]) for i in order]))))
    return datasets[0], datasets[1], list(train_set.classes)


def _image_folder(path: Path) -> tuple[list[tuple[str, Source, int]], list[str]]:
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(path))
    except (FileNotFoundError, RuntimeError) as error:
        raise ValueError(f"--data {path} has no images in <class>/ subfolders ({error})") from error
    files = [(p, Path(p).read_bytes, k) for p, k in folder.samples]
    return files, folder.classes


def load_split_folders(root: Path, config: dict[str, Any]) -> tuple[TensorData, TensorData, list[str], Any]:
    """An image folder through torchvision's ``ImageFolder``: train, test, classes and its own validation split.

    ``root/train/<class>/`` beside ``root/val/<class>/`` (or ``valid/``, ``validation/``) and/or
    ``root/test/<class>/`` keeps the folder's split: ``test/`` is the test set (``val/`` when there
    is no ``test/``), and a ``val/`` beside a ``test/`` is the validation split (else None: one is
    carved out of train). ``root/<class>/*`` alone is split 80/20 by the seed. Images are resized
    to ``image_size``.
    """
    splits = split_folders(root)
    size, seed = config["image_size"], config["seed"]
    if splits is None:
        files, classes = _image_folder(root)
        random.Random(seed).shuffle(files)
        cut = int(0.8 * len(files))
        return (_as_dataset(files[:cut], config["train_limit"], seed, size),
                _as_dataset(files[cut:], config["test_limit"], seed, size), classes, None)  # fmt: skip
    train, classes = _image_folder(splits["train"])
    held = {}
    for split in ("val", "test"):
        if split in splits:
            held[split], split_classes = _image_folder(splits[split])
            if split_classes != classes:
                raise ValueError(f"--data {root}: {splits[split].name}/ has classes {split_classes}, train/ has "
                                 f"{classes}; give both the same <class>/ folders")  # fmt: skip
    test = held.pop("test") if "test" in held else held.pop("val")  # val/ alone is the held-out test set
    val = _as_dataset(held["val"], None, seed, size) if "val" in held else None
    return (_as_dataset(train, config["train_limit"], seed, size),
            _as_dataset(test, config["test_limit"], seed, size), classes, val)  # fmt: skip


def load_folder(root: Path, config: dict[str, Any]) -> tuple[TensorData, TensorData, list[str]]:
    """Train, test and classes of an image folder (:func:`load_split_folders` without its validation split)."""
    return load_split_folders(root, config)[:3]


def load_data(config: dict[str, Any]) -> tuple[TensorData, TensorData, TensorData, list[str]]:
    """Train, validation (the folder's own, or a seeded ``val_size`` carved out of the training data), test, classes."""
    train, test, classes, val = load_source(config, lambda c: (*load_embedded(c), None),
                                            lambda name, c: (*load_named(name, c), None), NAMED,
                                            load_split_folders)  # fmt: skip
    require_classes(classes, config["data"])
    if val is not None:
        return train, val, test, classes
    keep, held = split_off(len(train), config["val_size"], config["seed"])
    return TensorData(train.take(keep)), TensorData(train.take(held)), test, classes


def crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Crop each image of ``x`` ``(B, C, H, W)`` from its zero-padded copy at ``offsets`` ``(B, 2)``
    (row, column in ``0..2*pad``) and mirror it where ``flips`` ``(B,)`` is true: one gather, no loop.

    The result has the shape of ``x`` and is ``channels_last`` in memory (what convolutions want on a GPU).
    """
    if x.ndim != 4:
        raise ValueError(f"x must be images (B, C, H, W), got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    if offsets.shape != (n, 2) or flips.shape != (n,):
        raise ValueError(f"offsets must be ({n}, 2) and flips ({n},) for {n} images, got "
                         f"{tuple(offsets.shape)} and {tuple(flips.shape)}")  # fmt: skip
    padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # (B, H + 2p, W + 2p, C)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def draw_crops(n: int, device: torch.device, pad: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop offsets ``(n, 2)`` and flips ``(n,)`` for :func:`crop_flip`, drawn on the host and placed on ``device``.

    The draws come from the global torch CPU generator (checkpointed, so a resumed run
    draws the same) and are copied to the device once per batch.
    """
    return to_device((torch.randint(0, 2 * pad + 1, (n, 2)), torch.rand(n) < 0.5), device)


def augment(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop with ``pad``-pixel zero padding and a horizontal flip per sample, batched on ``x``'s device."""
    return crop_flip(x, *draw_crops(x.shape[0], x.device, pad), pad)


def build_mixer(config: dict[str, Any], num_classes: int) -> multimix.Mixer | None:
    """The run's Mixer (None for ERM); ``mixup-dominant`` is mixup with the larger share's label (engine.mixer_for)."""
    alpha = config["alpha"]
    return mixer_for(config, num_classes, {
        "mixup": lambda: Mixup(alpha),
        "regmixup": lambda: Mixup(config["regmixup_alpha"]),
        "cutmix": lambda: CutMix(alpha),
        "mixup+cutmix": lambda: [Mixup(alpha), CutMix(alpha)],
        "resizemix": lambda: ResizeMix(alpha),
        "fmix": lambda: FMix(alpha),
        "saliencymix": lambda: SaliencyMix(alpha),
    })  # fmt: skip


# Manifold mixup (Verma et al., ICML 2019) mixes at the input or after the first stages, one drawn per step.
MANIFOLD_LAYERS = {"preact_resnet18": [0, "layers.1", "layers.3"], "small_cnn": [0, "features.2", "features.6"]}


def build(config: dict[str, Any]) -> Task:
    """Data, model and mixer for one run."""
    train_set, val_set, test_set, classes = load_data(config)
    device = pick_device(config["device"])
    channels = train_set.tensors[0].shape[1]
    model = models.build(config["model"], channels, len(classes), device)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in MEAN_STD[channels])
    mixer, network = build_mixer(config, len(classes)), model
    if config["method"] == "manifold":  # the hidden states are mixed inside the model by multimix.wrap
        name = type(model).__name__
        layers = MANIFOLD_LAYERS["preact_resnet18" if name == "PreActResNet18" else "small_cnn"]
        model = multimix.wrap(model, HiddenMix(config["alpha"], layers=layers), num_classes=len(classes),
                              per_sample=config["per_sample"], label_smoothing=config["label_smoothing"],
                              seed=config["seed"])  # fmt: skip
        mixer = model.mixer

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255).sub_(mean).div_(std)
        return x.contiguous(memory_format=memory_format)

    def smoothed(y: torch.Tensor) -> torch.Tensor:  # every method's clean targets carry label_smoothing
        return multimix.soft_targets(y, len(classes), label_smoothing=config["label_smoothing"])

    def draw(batch: Any) -> tuple[tuple[torch.Tensor, torch.Tensor], Any, torch.Tensor | None]:
        """The step's host part: crop offsets and flips, the mixing plan (for the normalised float images), and
        the clean targets where the loss takes them (soft_targets checks the labels: on the CPU it reads them)."""
        images, labels = batch
        crops = draw_crops(images.shape[0], images.device)
        plan = None if mixer is None else mixer.plan_for(stand_in(images.shape, images.device), labels)
        clean = smoothed(labels) if mixer is None or config["method"] == "regmixup" else None
        return crops, plan, clean

    def loss(module: torch.nn.Module, batch: Any, draws: Any) -> torch.Tensor:
        """The step's traced part: crop and flip, normalise, mix by the plan, forward, loss."""
        (offsets, flips), plan, clean_targets = draws
        x, y = prepare(crop_flip(batch[0], offsets, flips)), batch[1]
        if mixer is None:
            return multimix.soft_cross_entropy(module(x), clean_targets)
        if config["method"] == "regmixup":  # the mixer writes in place: keep the clean batch, one forward for both
            clean = x.clone()
            out = mixer.apply(x, y, plan)
            clean_logits, mixed_logits = module(torch.cat([clean, out.inputs])).split(len(y))
            return multimix.regmixup_loss(clean_logits, clean_targets, mixed_logits, out.targets,
                                          config["regmixup_eta"])  # fmt: skip
        out = mixer.apply(x, y, plan)
        return multimix.soft_cross_entropy(module(out.inputs), out.targets)

    def manifold_loss(module: torch.nn.Module, batch: Any) -> torch.Tensor:  # the wrapped model mixes and scores
        return module(prepare(augment(batch[0])), labels=batch[1]).loss

    train_loss = manifold_loss if config["method"] == "manifold" else SplitLoss(draw, loss)

    def test_logits(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return model(prepare(batch[0])), batch[1]

    return Task(model, train_set, test_set, train_loss, test_logits, mixer=mixer, class_names=classes,
                val_set=val_set, network=network)  # fmt: skip
