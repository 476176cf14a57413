"""Label maps follow the pixels: the region that moves the pixels moves the labels; blends mix them by lam."""

from __future__ import annotations

import pytest
import torch
from conftest import fixed_plan, looped
from torch import nn

import multimix
from multimix.image import CutMix, FMix, Mixup, ResizeMix, SaliencyMix
from multimix.image.boxes import Boxes
from multimix.switch import Switch

C, IGNORE = 5, 255

REGIONS = {
    "CutMix": lambda: CutMix(1.0),
    "CutMix-minmax": lambda: CutMix(1.0, minmax=(0.3, 0.7)),
    "ResizeMix": lambda: ResizeMix(1.0),
    "FMix": lambda: FMix(1.0),
    "SaliencyMix": lambda: SaliencyMix(1.0),
}


def labelled(shape=(6, 3, 12, 10), seed=0):
    """Images whose channel 0 is the label map itself: a mixed pixel shows the label it carries."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (shape[0], *shape[2:]), generator=g)
    labels[0, :2] = IGNORE
    x = torch.rand(shape, generator=g)
    x[:, 0] = labels.float()
    return x, labels


@pytest.mark.parametrize("name", list(REGIONS))
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("p", [1.0, 0.5])
@pytest.mark.parametrize("loop", [False, True])
def test_every_pixel_carries_the_label_of_the_pixel_it_shows(name, per_sample, p, loop):
    adapter = REGIONS[name]()
    if loop:
        adapter = looped(adapter)
    mixer = multimix.Mixer(adapter, num_classes=C, ignore_index=IGNORE, per_sample=per_sample, p=p, seed=2)
    for _ in range(3):
        x, y = labelled()
        out = mixer(x, y)
        assert out.targets.dtype == torch.long and out.targets.shape == y.shape
        assert torch.equal(out.inputs[:, 0].long(), out.targets)
        assert out.plan.any_mixed and not torch.equal(out.targets, y)


@pytest.mark.parametrize("name", ["CutMix", "ResizeMix", "FMix"])
def test_video_maps_follow_every_frame(name):
    mixer = multimix.Mixer(REGIONS[name](), num_classes=C, ignore_index=IGNORE, per_sample=True, seed=0)
    x, y = labelled((4, 3, 3, 12, 10))
    out = mixer(x, y)
    assert out.targets.shape == (4, 3, 12, 10) and torch.equal(out.inputs[:, 0].long(), out.targets)


def test_cutmix_map_on_a_fixed_plan():
    """A hand-placed box: the box of each map is its partner's, the rest its own."""
    y = torch.arange(3 * 4 * 4).view(3, 4, 4) % C
    plan = fixed_plan([1, 2, 0], [0.75, 0.75, 1.0])
    boxes = torch.tensor([[0, 2, 1, 3], [2, 4, 2, 4], [0, 0, 0, 0]])
    region = Boxes(boxes, torch.tensor([0.75, 0.75, 1.0], dtype=torch.float64))
    mixer = multimix.Mixer(CutMix(1.0), num_classes=C)
    out = mixer.apply(torch.rand(3, 3, 4, 4), y, plan.with_region(region))
    expected = y.clone()
    expected[0, 0:2, 1:3] = y[1, 0:2, 1:3]
    expected[1, 2:4, 2:4] = y[2, 2:4, 2:4]
    assert torch.equal(out.targets, expected)


def test_mixup_soft_maps_and_loss_on_a_fixed_plan():
    """Soft maps ``lam * onehot(y) + (1 - lam) * onehot(y[index])``, ignored sources add nothing; the loss is
    ``sum(lam [y valid] CE(y) + (1 - lam) [y' valid] CE(y')) / sum(lam [y valid] + (1 - lam) [y' valid])``."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, C, (3, 4, 4), generator=g)
    y[0, 0] = IGNORE
    y[1, :, 0] = IGNORE
    lam = torch.tensor([0.25, 0.5, 1.0])
    plan = fixed_plan([1, 0, 2], lam)
    mixer = multimix.Mixer(Mixup(1.0), num_classes=C, ignore_index=IGNORE)
    out = mixer.apply(torch.rand(3, 3, 4, 4), y, plan)
    partner = y[[1, 0, 2]]
    expected = torch.zeros(3, C, 4, 4)
    for b in range(3):
        for h in range(4):
            for w in range(4):
                for label, share in ((y[b, h, w], lam[b]), (partner[b, h, w], 1 - lam[b])):
                    if label != IGNORE:
                        expected[b, label, h, w] += share
    torch.testing.assert_close(out.targets, expected)
    logits = torch.randn(3, C, 4, 4, generator=g)
    ce = nn.CrossEntropyLoss(ignore_index=IGNORE, reduction="none")
    w = lam.view(3, 1, 1)
    valid, valid_partner = (y != IGNORE).float(), (partner != IGNORE).float()
    per_pixel = w * ce(logits, y) + (1 - w) * ce(logits, partner)
    reference = per_pixel.sum() / (w * valid + (1 - w) * valid_partner).sum()
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE)
    torch.testing.assert_close(multimix.mixed_loss(criterion, logits, out), reference)
    torch.testing.assert_close(multimix.mixed_loss(criterion, logits, out, reduction="none"), per_pixel)
    torch.testing.assert_close(multimix.mixed_loss(criterion, logits, out, reduction="sum"), per_pixel.sum())
    assert criterion.reduction == "mean"
    # with every pixel valid, the loss is soft cross-entropy of the soft maps, averaged over pixels
    full = mixer.apply(torch.rand(3, 3, 4, 4), y % C, plan)
    soft = -(full.targets * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(multimix.mixed_loss(criterion, logits, full), soft)


@pytest.mark.parametrize("name", list(REGIONS))
def test_region_loss_is_the_criterion_on_the_map_shown(name):
    mixer = multimix.Mixer(REGIONS[name](), num_classes=C, ignore_index=IGNORE, per_sample=True, seed=1)
    x, y = labelled()
    out = mixer(x, y)
    logits = torch.randn(6, C, 12, 10)
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE)
    torch.testing.assert_close(multimix.mixed_loss(criterion, logits, out), criterion(logits, out.targets))


def test_soft_fmix_shares_the_edge_pixels_by_the_mask():
    mixer = multimix.Mixer(FMix(1.0, max_soft=0.3), num_classes=C, ignore_index=IGNORE, per_sample=True, seed=0)
    x, y = labelled()
    y[0, :2] = 0
    x[:, 0] = y.float()
    out = mixer(x.clone(), y)
    assert out.targets.shape == (6, C, 12, 10)
    torch.testing.assert_close(out.targets.sum(1), torch.ones(6, 12, 10))
    shown = (out.targets * torch.arange(C).view(1, C, 1, 1)).sum(1)  # the blend of the two labels, as the pixels
    torch.testing.assert_close(shown, out.inputs[:, 0], rtol=1e-5, atol=1e-5)


def test_switch_maps_follow_each_samples_adapter():
    mixer = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=C, per_sample=True, switch="sample", seed=0)
    x, y = labelled()
    y[0, :2] = 1
    x[:, 0] = y.float()
    out = mixer(x.clone(), y)
    assert out.targets.shape == (6, C, 12, 10) and set(out.plan.choices.tolist()) == {0, 1}
    shown = (out.targets * torch.arange(C).view(1, C, 1, 1)).sum(1)
    torch.testing.assert_close(shown, out.inputs[:, 0], rtol=1e-5, atol=1e-5)
    only_cutmix = multimix.Mixer(Switch([CutMix(1.0), CutMix(0.5)]), num_classes=C, per_sample=True, seed=0)
    out = only_cutmix(x.clone(), y)
    assert out.targets.dtype == torch.long and torch.equal(out.inputs[:, 0].long(), out.targets)


@pytest.mark.parametrize(
    ("targets", "kwargs", "error", "match"),
    [
        (torch.zeros(6, 12, 9, dtype=torch.long), {}, ValueError,
         r"label maps must have the inputs' positions, shape \(B, 12, 10\), got \(6, 12, 9\)"),
        (torch.zeros(6, 12, 10), {}, TypeError,
         r"label maps \(B, 12, 10\) must hold integer class indices, got dtype torch.float32; use .long\(\)"),
        (torch.full((6, 12, 10), 7), {}, ValueError,
         r"targets holds label 7, outside \[0, num_classes=5\) and not ignore_index=255"),
        (torch.full((6, 12, 10), -100), {}, ValueError, r"targets holds label -100, outside"),
        (torch.zeros(4, 12, 10, dtype=torch.long), {}, ValueError,
         r"targets has batch size 4 but inputs have batch size 6"),
        (torch.zeros(6, 12, 10, dtype=torch.long), {"label_smoothing": 0.1}, ValueError,
         r"label_smoothing=0.1 is not folded into integer label maps"),
    ],
)  # fmt: skip
def test_bad_maps_are_refused_before_anything_changes(targets, kwargs, error, match):
    mixer = multimix.Mixer(CutMix(1.0), num_classes=C, ignore_index=IGNORE, seed=0, **kwargs)
    x, _ = labelled()
    before, state = x.clone(), mixer.generator.get_state()
    with pytest.raises(error, match=match):
        mixer(x, targets)
    with pytest.raises(error, match=match):
        mixer.plan_for(x, targets)
    assert torch.equal(x, before) and torch.equal(mixer.generator.get_state(), state)


def test_ignore_index_must_be_an_int():
    with pytest.raises(TypeError, match=r"ignore_index must be an int \(torch's default is -100\), got 2.5"):
        multimix.Mixer(CutMix(1.0), num_classes=C, ignore_index=2.5)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
@pytest.mark.parametrize(
    ("make", "shape", "label_shape"),
    [
        (lambda: Mixup(1.0), (4, 3, 8, 8), (4, 8, 8)),
        (lambda: multimix.image.FMix(1.0, max_soft=0.2), (4, 3, 8, 8), (4, 8, 8)),
        (lambda: CutMix(1.0), (4, 3, 8, 8), (4, 8, 8)),
        (lambda: multimix.audio.SpecMixup(1.0), (4, 16, 20), (4, 20)),
        (lambda: multimix.audio.SpecMix(1.0), (4, 16, 20), (4, 20)),
    ],
)
def test_narrow_integer_maps_mix_as_int64_maps_do(make, shape, label_shape, dtype):
    """PNG masks load as uint8 (ignore 255): blends scattered them as indices, which torch refuses below int32."""
    ignore = 255 if dtype == torch.uint8 else -100
    maps = torch.randint(0, 5, label_shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    maps[0, 0] = ignore
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    got = multimix.Mixer(make(), num_classes=5, ignore_index=ignore, seed=0)(x.clone(), maps).targets
    want = multimix.Mixer(make(), num_classes=5, ignore_index=ignore, seed=0)(x.clone(), maps.long()).targets
    torch.testing.assert_close(got if got.is_floating_point() else got.long(), want, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("members", "integer"),
    [
        (lambda: [Mixup(1.0), CutMix(1.0)], False),
        (lambda: [CutMix(1.0), FMix(1.0)], True),
        (lambda: [CutMix(1.0), FMix(1.0, max_soft=0.2)], False),
        (lambda: [ResizeMix(1.0), SaliencyMix(1.0)], True),
    ],
)
def test_a_switchs_label_maps_are_of_one_kind_whatever_the_draw(members, integer):
    """Integer maps when every member moves whole positions, probability maps otherwise, at every call: the kind
    followed the draw (an integer map when only CutMix samples were drawn, or none mixed)."""
    maps = torch.randint(0, C, (6, 8, 8), generator=torch.Generator().manual_seed(0))
    maps[0, :2] = IGNORE
    for seed in range(12):
        for p in (0.0, 0.3, 1.0):
            mixer = multimix.Mixer(members(), C, p=p, seed=seed, per_sample=True, switch="sample", ignore_index=IGNORE)
            out = mixer(torch.rand(6, 3, 8, 8), maps)
            if integer:
                assert out.targets.dtype == torch.int64 and out.targets.shape == maps.shape
                continue
            assert out.targets.shape == (6, C, 8, 8)
            sums = out.targets.sum(1)
            valid = (maps != IGNORE) & (maps[out.index] != IGNORE)
            torch.testing.assert_close(sums[valid], torch.ones_like(sums[valid]))
            unmixed = ~out.plan.mixed
            own = nn.functional.one_hot(maps[unmixed].clamp(max=C - 1), C).permute(0, 3, 1, 2).float()
            own[(maps[unmixed] == IGNORE).unsqueeze(1).expand_as(own)] = 0.0
            torch.testing.assert_close(out.targets[unmixed], own)
