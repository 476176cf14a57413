"""Image recipe: CIFAR-10 (embedded subset by default), PreAct ResNet-18 or a small CNN, mixup/CutMix vs ERM.

    multimix run image                         # embedded CIFAR-10 subset, CPU-sized defaults
    multimix run image --compare erm,mixup
    multimix run image --data cifar10 --model preact_resnet18 --epochs 200 --device cuda

Batches are augmented (random crop with 4-pixel padding, horizontal flip) and mixed
on the device, after the loader: the mixer writes into the fresh batch in place.
"""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from multimix_recipes import data_file, models
from multimix_recipes.engine import Task, mixer_for, pick_device
from PIL import Image
from torch.utils.data import TensorDataset

import multimix
from multimix.image import CutMix, Mixup

NAMED = ("cifar10", "cifar100", "fashion_mnist")
MEAN_STD = {3: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), 1: ((0.2860,), (0.3530,))}


def _decode(data: bytes, size: int | None = None) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _as_dataset(images: list[np.ndarray], labels: list[int], limit: int | None, seed: int) -> TensorDataset:
    order = list(range(len(images)))
    if limit is not None and limit < len(order):
        order = sorted(random.Random(seed).sample(order, limit))
    x = torch.from_numpy(np.stack([images[i] for i in order])).permute(0, 3, 1, 2).contiguous()
    return TensorDataset(x, torch.tensor([labels[i] for i in order]))


def load_embedded(config: dict[str, Any]) -> tuple[TensorDataset, TensorDataset, list[str]]:
    """The CIFAR-10 subset shipped in the package (20,000 train / 5,000 test JPEGs)."""
    parts: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    with tarfile.open(data_file("cifar10-subset.tar.gz")) as archive:
        members = sorted((m for m in archive.getmembers() if m.isfile()), key=lambda m: m.name)
        classes = sorted({Path(m.name).parts[1] for m in members})
        for member in members:
            split, label = Path(member.name).parts[:2]
            parts[split][0].append(_decode(archive.extractfile(member).read()))
            parts[split][1].append(classes.index(label))
    train = _as_dataset(*parts["train"], config["train_limit"], config["seed"])
    return train, _as_dataset(*parts["test"], config["test_limit"], config["seed"]), classes


def load_named(name: str, config: dict[str, Any]) -> tuple[TensorDataset, TensorDataset, list[str]]:
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
        datasets.append(_as_dataset(list(data), [int(t) for t in split.targets], limit, config["seed"]))
    return datasets[0], datasets[1], list(train_set.classes)


def load_folder(root: Path, config: dict[str, Any]) -> tuple[TensorDataset, TensorDataset, list[str]]:
    """``root/{train,test}/<class>/*`` or ``root/<class>/*`` (then a seeded 80/20 split); resized to 32x32."""
    suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    splits = {"train": root / "train", "test": root / "test"}
    if not all(p.is_dir() for p in splits.values()):
        splits = {"all": root}
    classes = sorted(d.name for d in next(iter(splits.values())).iterdir() if d.is_dir())
    found: dict[str, list[tuple[Path, int]]] = {
        split: [(f, k) for k, c in enumerate(classes) for f in sorted((path / c).glob("*"))
                if f.suffix.lower() in suffixes]
        for split, path in splits.items()
    }  # fmt: skip
    if sum(len(v) for v in found.values()) == 0:
        raise ValueError(f"--data {root} has no images in <class>/ subfolders ({sorted(suffixes)})")
    if "all" in found:
        files = found.pop("all")
        random.Random(config["seed"]).shuffle(files)
        cut = int(0.8 * len(files))
        found = {"train": files[:cut], "test": files[cut:]}
    sets = []
    for split, limit in (("train", config["train_limit"]), ("test", config["test_limit"])):
        images = [_decode(f.read_bytes(), 32) for f, _ in found[split]]
        sets.append(_as_dataset(images, [k for _, k in found[split]], limit, config["seed"]))
    return sets[0], sets[1], classes


def load_data(config: dict[str, Any]) -> tuple[TensorDataset, TensorDataset, list[str]]:
    data = config["data"]
    if data == "embedded":
        return load_embedded(config)
    if data in NAMED:
        return load_named(data, config)
    path = Path(data)
    if not path.is_dir():
        raise ValueError(f"--data {data!r} is neither a dataset name ({['embedded', *NAMED]}) nor an existing folder")
    return load_folder(path, config)


def augment(x: torch.Tensor) -> torch.Tensor:
    """Random crop with 4-pixel zero padding and a horizontal flip, per sample (global torch RNG)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    offsets = torch.randint(0, 9, (n, 2)).tolist()
    crops = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    flip = (torch.rand(n) < 0.5).view(n, 1, 1, 1).to(x.device)
    return torch.where(flip, crops.flip(3), crops)


def build_mixer(config: dict[str, Any], num_classes: int) -> multimix.Mixer | None:
    alpha = config["alpha"]
    return mixer_for(config, num_classes, {
        "mixup": lambda: Mixup(alpha),
        "cutmix": lambda: CutMix(alpha),
        "mixup+cutmix": lambda: [Mixup(alpha), CutMix(alpha)],
    })  # fmt: skip


def build(config: dict[str, Any]) -> Task:
    """Data, model and mixer for one run."""
    train_set, test_set, classes = load_data(config)
    device = pick_device(config["device"])
    channels = train_set.tensors[0].shape[1]
    model = models.build(config["model"], channels, len(classes), device)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in MEAN_STD[channels])
    mixer = build_mixer(config, len(classes))

    def prepare(x: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = x.to(device, non_blocking=True).float().div_(255).sub_(mean).div_(std)
        return x.contiguous(memory_format=memory_format)

    def train_loss(batch: Any, device: torch.device) -> torch.Tensor:
        x, y = prepare(augment(batch[0]), device), batch[1].to(device)
        if mixer is None:
            return F.cross_entropy(model(x), y)
        out = mixer(x, y)
        return multimix.soft_cross_entropy(model(out.inputs), out.targets)

    def test_logits(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return model(prepare(batch[0], device)), batch[1]

    return Task(model, train_set, test_set, train_loss, test_logits, mixer=mixer, class_names=classes)
