"""Data for the engine: tensors indexed a batch at a time, on the device when they fit.

:class:`TensorData` holds a nested tuple of tensors with one row per sample (images as
uint8, waveforms and their lengths, labels). The engine moves it to the GPU once when it
fits (CIFAR-10 is 150 MB as uint8) and then takes batches by indexing there: no loader,
no per-sample Python. Otherwise batches are gathered on the CPU, pinned and copied with
``non_blocking=True``. Other datasets go through a ``DataLoader`` with workers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["SPLIT_NAMES", "TensorData", "epoch_batches", "fits_on", "group_split", "load_source", "require_classes",
           "split_folders", "split_off", "to_device"]


def _map(fn: Callable[[torch.Tensor], Any], tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map(fn, t) for t in tree)
    if isinstance(tree, dict):
        return {k: _map(fn, v) for k, v in tree.items()}
    return tree


def _leaves(tree: Any) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (list, tuple)):
        return [leaf for t in tree for leaf in _leaves(t)]
    return []


def to_device(tree: Any, device: torch.device) -> Any:
    """Every tensor of ``tree`` on ``device``: pinned and ``non_blocking`` from the CPU to a GPU."""
    if device.type == "cuda":
        return _map(lambda t: t if t.device == device else t.pin_memory().to(device, non_blocking=True), tree)
    return _map(lambda t: t.to(device), tree)


class TensorData(Dataset):
    """A dataset of tensors sharing their first dimension, e.g. ``(images, labels)``.

    Args:
        tensors: a tensor or a nested tuple of tensors, each of shape ``(N, ...)``.
    """

    def __init__(self, tensors: Any) -> None:
        leaves = _leaves(tensors)
        if not leaves or len({len(t) for t in leaves}) != 1:
            raise ValueError(f"tensors must share their first dimension, got {[tuple(t.shape) for t in leaves]}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(_leaves(self.tensors)[0])

    def __getitem__(self, index: int) -> Any:
        return _map(lambda t: t[index], self.tensors)

    def take(self, index: torch.Tensor) -> Any:
        """The batch of rows ``index`` (a 1-D index tensor, on this data's device)."""
        return _map(lambda t: t[index], self.tensors)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in _leaves(self.tensors))

    @property
    def device(self) -> torch.device:
        return _leaves(self.tensors)[0].device

    def to(self, device: torch.device) -> TensorData:
        return TensorData(_map(lambda t: t.to(device), self.tensors))


def fits_on(data: Dataset, device: torch.device, share: float = 0.25) -> bool:
    """Whether ``data`` is a :class:`TensorData` taking at most ``share`` of the device's free memory."""
    if not isinstance(data, TensorData):
        return False
    if device.type != "cuda":
        return True  # already in memory: indexing it is the fastest loader there is
    free, _ = torch.cuda.mem_get_info(device)
    return data.nbytes <= share * free


def epoch_batches(
    data: Dataset,
    batches: list[torch.Tensor],
    device: torch.device,
    collate: Callable | None = None,
    workers: int = 0,
) -> Iterator[Any]:
    """The epoch's batches (lists of row indices), on ``device``."""
    if isinstance(data, TensorData):
        if data.device == device:
            for index in batches:
                yield data.take(index.to(device, non_blocking=True))
        else:
            for index in batches:
                yield to_device(data.take(index), device)
        return
    loader = DataLoader(data, batch_sampler=[b.tolist() for b in batches], collate_fn=collate,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=False)  # fmt: skip
    for batch in loader:
        yield to_device(batch, device)


def split_off(size: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded validation split: ``(keep, held)`` sorted row indices of ``range(size)``, disjoint, ``count`` held.

    The validation split is carved out of the training data, so temperature scaling
    (and any choice of defaults) never looks at the test set.

    Raises:
        ValueError: ``count`` < 1, or leaving no training rows.
    """
    if count < 1 or count >= size:
        raise ValueError(f"val_size must be >= 1 and below the {size} training samples, got {count}; "
                         f"lower val_size or raise train_limit")  # fmt: skip
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return order[count:].sort().values, order[:count].sort().values


def group_split(groups: list[str], held_out: int, seed: int) -> list[str]:
    """The ``held_out`` groups (e.g. speakers) drawn by ``seed`` from the distinct values of ``groups``, sorted.

    Raises:
        ValueError: ``held_out`` < 1 or leaving no group to train on.
    """
    names = sorted(set(groups))
    if not 1 <= held_out < len(names):
        raise ValueError(f"held_out_speakers must be in 1..{len(names) - 1} (there are {len(names)} speakers: "
                         f"{names}), got {held_out}")  # fmt: skip
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(names[i] for i in order[:held_out])


def load_source(
    config: dict[str, Any],
    embedded: Callable[[dict[str, Any]], Any],
    named: Callable[[str, dict[str, Any]], Any],
    names: Collection[str],
    local: Callable[[Path, dict[str, Any]], Any],
    local_kind: str = "folder",
) -> Any:
    """What ``--data`` names, loaded: the embedded set, a named (downloaded) one, or a local folder or CSV file."""
    data = config["data"]
    check_source(data, names, local_kind)
    if data == "embedded":
        return embedded(config)
    if data in names:
        return named(data, config)
    return local(Path(data), config)


def check_source(data: str, names: Collection[str], local_kind: str = "folder") -> None:
    """Refuse a ``--data`` that is neither the embedded set, a dataset name nor an existing folder (or CSV file)."""
    if data == "embedded" or data in names:
        return
    path = Path(data)
    if not (path.is_dir() if local_kind == "folder" else path.is_file()):
        raise ValueError(
            f"--data {data!r} is neither a dataset name ({['embedded', *names]}) nor an existing {local_kind}"
        )


def require_classes(classes: list[str], data: str) -> list[str]:
    """``classes``, refused when fewer than two: one class trains to a perfect, meaningless score.

    Raises:
        ValueError: fewer than two classes, naming ``data`` (what ``--data`` gave).
    """
    if len(classes) < 2:
        raise ValueError(f"--data {data} holds {len(classes)} class(es) {list(classes)}; a classifier needs at "
                         "least two: add the other classes' samples")  # fmt: skip
    return classes


# folder names of a split layout (root/train/<class>/ + root/val/<class>/ ...) -> the split they hold
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def split_folders(root: Path) -> dict[str, Path] | None:
    """The folders of a split layout by split (``train`` and ``val`` and/or ``test``), or None for ``root/<class>/``.

    ``root/train/<class>/`` beside ``root/val/<class>/`` (or ``valid/``, ``validation/``, ``test/``) is the
    layout of Kaggle and torchvision's ImageFolder splits: read as classes, its split folders would
    become two classes.

    Raises:
        ValueError: split folders beside other folders, two validation folders, a train/ folder with
            no held-out split, or held-out splits with no train/.
    """
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    named = [p for p in folders if p.name.lower() in SPLIT_NAMES]
    if not named:
        return None
    others = [p.name for p in folders if p.name.lower() not in SPLIT_NAMES]
    names = [p.name for p in named]
    if others:
        raise ValueError(f"--data {root} holds the split folders {names} beside other folders {others}; keep either "
                         "train/<class>/ with val/<class>/ or test/<class>/, or only <class>/ folders")  # fmt: skip
    splits: dict[str, Path] = {}
    for path in named:
        split = SPLIT_NAMES[path.name.lower()]
        if split in splits:
            raise ValueError(f"--data {root} holds both {splits[split].name}/ and {path.name}/ as the validation "
                             "split; keep one")  # fmt: skip
        splits[split] = path
    if "train" not in splits:
        raise ValueError(f"--data {root} holds {names} but no train/ folder; add train/<class>/, or pass the "
                         "folder of classes itself")  # fmt: skip
    if len(splits) == 1:
        raise ValueError(f"--data {root} holds a train/ folder with no val/, valid/ or test/ beside it; add one, "
                         f"or pass --data {root / 'train'} to split its classes 80/20")  # fmt: skip
    return splits
