"""Box draws pinned for multimix's CutMix and timm's, so the two mix the same pixels (timm parity tests)."""

import timm.data.mixup as timm_mixup
import torch

import multimix.image.mixup_cutmix


def fixed_boxes(monkeypatch, boxes):
    """Make CutMix draw ``boxes`` (a list of (y1, y2, x1, x2), taken in order by samples with lam < 1)."""
    queue = list(boxes)

    def sample(lam, height, width, generator, **kwargs):
        taken = [queue.pop(0) if value < 1 else (0, 0, 0, 0) for value in lam.tolist()]
        drawn = torch.tensor(taken, dtype=torch.long).view(-1, 4)
        area = (drawn[:, 1] - drawn[:, 0]) * (drawn[:, 3] - drawn[:, 2])
        return drawn, 1.0 - area.double() / (height * width)

    monkeypatch.setattr(multimix.image.mixup_cutmix, "_draw_boxes", sample)  # where CutMix looks it up


def timm_boxes(monkeypatch, boxes):
    """Make timm's cutmix_bbox_and_lam return ``boxes`` in order, lam corrected to the area as timm does."""
    queue = list(boxes)

    def bbox_and_lam(img_shape, lam, ratio_minmax=None, correct_lam=True, count=None):
        yl, yh, xl, xh = queue.pop(0)
        if correct_lam or ratio_minmax is not None:
            lam = 1.0 - (yh - yl) * (xh - xl) / float(img_shape[-2] * img_shape[-1])
        return (yl, yh, xl, xh), lam

    monkeypatch.setattr(timm_mixup, "cutmix_bbox_and_lam", bbox_and_lam)
