"""A torchvision segmentation model trains on mixed label maps (docs/targets.md runs the CutMix version)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import multimix
from multimix.image import Mixup, ResizeMix

segmentation = pytest.importorskip("torchvision.models.segmentation")


@pytest.mark.parametrize(
    "adapter", [Mixup(1.0), pytest.param(ResizeMix(1.0), marks=pytest.mark.slow)], ids=["Mixup", "ResizeMix"]
)
def test_lraspp_trains_on_mixed_maps(adapter):
    torch.manual_seed(0)
    model = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    images, masks = torch.rand(4, 3, 32, 32), torch.zeros(4, 32, 32, dtype=torch.long)
    for i in range(4):
        masks[i, 8:24, 4 * i : 4 * i + 16] = i + 1
        images[i, :, 8:24, 4 * i : 4 * i + 16] += (i + 1) / 4
    masks[:, :2] = 255
    mixer = multimix.Mixer(adapter, num_classes=21, ignore_index=255, per_sample=True, seed=0)
    criterion = nn.CrossEntropyLoss(ignore_index=255)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        out = mixer(images.clone(), masks)
        logits = model(out.inputs)["out"]
        loss = multimix.mixed_loss(criterion, logits, out)
        if isinstance(adapter, Mixup):  # soft maps: the loss is their cross-entropy over the labelled pixels
            assert out.targets.shape == (4, 21, 32, 32)
            labelled = out.targets.sum(1) > 0
            soft = -(out.targets * logits.log_softmax(1)).sum(1)
            weight = out.targets.sum(1)
            torch.testing.assert_close(loss, soft[labelled].sum() / weight.sum())
        else:
            assert out.targets.dtype == torch.long
            torch.testing.assert_close(loss, criterion(logits, out.targets))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
