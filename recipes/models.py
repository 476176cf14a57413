"""Small, standard classifiers for the recipes.

``PreActResNet18`` is the model of the mixup paper's CIFAR-10 experiments (He et al.,
ECCV 2016, as in facebookresearch/mixup-cifar10); ``SmallCNN`` is a VGG-style network
that trains in minutes on a CPU, for images and for log-mel spectrograms alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PreActResNet18", "SmallCNN", "build"]


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU blocks (32-64-128-256 channels), pooling, then a linear head."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for k, out in enumerate((width, width * 2, width * 4, width * 8)):
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if k > 0:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class _PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 for 32x32 inputs (11.2M parameters)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        blocks, planes = [], 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_PreActBlock(planes, width, stride), _PreActBlock(width, width, 1)]
            planes = width
        self.layers = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


MODELS = {"small_cnn": SmallCNN, "preact_resnet18": PreActResNet18}


def build(name: str, in_channels: int, num_classes: int, device: torch.device) -> nn.Module:
    """``auto`` picks PreAct ResNet-18 on a GPU and SmallCNN on a CPU."""
    if name == "auto":
        name = "preact_resnet18" if device.type == "cuda" else "small_cnn"
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {['auto', *MODELS]}")
    return MODELS[name](in_channels, num_classes)
