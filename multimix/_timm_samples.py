"""Stack ``(image, label)`` samples the way timm's prefetcher collate takes them, checking each one.

:class:`multimix.timm.FastCollateMixup` is a ``DataLoader`` ``collate_fn``: its input is a
list of samples straight from a dataset, so every mistake (a float image, a size that
differs, a label that is not a class index) is reported here with the sample's position,
before anything is mixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from multimix._checks import reads_values

__all__: list[str] = []


def _image(sample: object, i: int) -> torch.Tensor | np.ndarray:
    if isinstance(sample, (str, bytes)) or not isinstance(sample, Sequence) or len(sample) != 2:
        raise ValueError(f"batch[{i}] must be an (image, label) pair, got {type(sample).__name__}")
    image = sample[0]
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        raise TypeError(f"batch[{i}][0] must be a uint8 NumPy array or tensor (C, H, W), got {type(image).__name__}")
    dtype = image.dtype
    if dtype not in (np.uint8, torch.uint8):
        raise TypeError(
            f"batch[{i}][0] has dtype {dtype}; FastCollateMixup collates uint8 images (C, H, W), as timm's "
            "transforms give them with the prefetcher; for float images mix the batch with multimix.timm.Mixup"
        )
    if image.ndim != 3:
        raise ValueError(f"batch[{i}][0] must be an image (C, H, W), got shape {tuple(image.shape)}")
    if isinstance(image, torch.Tensor) and image.device.type != "cpu":
        raise ValueError(f"batch[{i}][0] is on {image.device}; a collate_fn takes CPU samples")
    return image


def _labels(batch: Sequence[Sequence[object]]) -> torch.Tensor:
    """``default_collate`` of the labels, as timm; class indices as int64 (timm's ``fast_collate``)."""
    try:
        labels = default_collate([sample[1] for sample in batch])
    except (TypeError, RuntimeError) as error:
        raise ValueError(
            f"the labels (batch[i][1]) must be class indices or equal-sized target rows; collating them failed: {error}"
        ) from None
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"the labels (batch[i][1]) must be numbers or arrays, got {type(batch[0][1]).__name__} {batch[0][1]!r:.40}"
        )
    return class_indices(labels, "batch[{}][1]") if labels.dim() == 1 else labels


def class_indices(labels: torch.Tensor, name: str) -> torch.Tensor:
    """Class indices ``(B,)`` as int64, float ones too when they are whole numbers (timm casts them with ``.long()``);
    ``name`` names sample i with ``{}``."""
    if labels.is_floating_point() and reads_values(labels, False):  # on a device, .long() as timm: no read-back
        whole = labels == labels.round()
        if not bool(whole.all()):
            bad = int(torch.nonzero(~whole)[0])
            raise ValueError(f"{name.format(bad)} = {float(labels[bad])!r} is not a class index (a whole number)")
    return labels.long()


def stack_samples(batch: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the images of ``batch`` stacked into a new uint8 ``(B, C, H, W)`` tensor, and the collated labels."""
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence) or len(batch) == 0:
        raise ValueError(
            f"batch must be a non-empty list of (image, label) samples (what a DataLoader gives its collate_fn), "
            f"got {type(batch).__name__}{' of length 0' if isinstance(batch, Sequence) else ''}"
        )
    images = [_image(sample, i) for i, sample in enumerate(batch)]
    shape = tuple(images[0].shape)
    for i, image in enumerate(images):
        if tuple(image.shape) != shape:
            raise ValueError(f"batch[{i}][0] has shape {tuple(image.shape)} but batch[0][0] has {shape}; "
                             "resize or crop to one size before collating")  # fmt: skip
    if all(isinstance(image, np.ndarray) for image in images):
        stacked = torch.from_numpy(np.ascontiguousarray(np.stack(images)))  # transposed CHW views stack strided
    else:
        stacked = torch.stack([torch.as_tensor(image) for image in images])
    return stacked, _labels(batch)
