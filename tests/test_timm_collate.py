"""timm 1.0's full interface: ``multi_label`` and uint8 in ``multimix.timm.Mixup``, and ``FastCollateMixup``.

Each is held to timm's own class on the same arguments: exact values where the plan can be
made identical (lam, partners and boxes injected into both, lam dyadic so float32 blends
are exact before rounding), and otherwise the same shapes, dtypes, label-weight rules and
statistics of many draws.
"""

import inspect

import numpy as np
import pytest
import timm.data.mixup as timm_mixup
import torch
from conftest import flip_index
from timm.data.loader import PrefetchLoader
from timm_cases import fixed_boxes, timm_boxes
from torch.utils.data import DataLoader

import multimix.image
import multimix.timm
from multimix.plan import MixPlan


def batch_plan(batch, lam, choice=0) -> MixPlan:
    return MixPlan(index=flip_index(batch), lam=torch.full((batch,), lam, dtype=torch.float64), choice=choice)


def elem_plan(index, lam, choices) -> MixPlan:
    return MixPlan(index=torch.as_tensor(index), lam=torch.as_tensor(lam, dtype=torch.float64), per_sample=True,
                   choices=None if choices is None else torch.as_tensor(choices, dtype=torch.long))  # fmt: skip


# ----------------------------------------------------------------------------- Mixup: multi_label and uint8


@pytest.mark.parametrize("name", ["Mixup", "FastCollateMixup"])
def test_signature_takes_every_timm_argument_in_timms_order_with_timms_defaults(name):
    theirs = inspect.signature(getattr(timm_mixup, name)).parameters
    ours = inspect.signature(getattr(multimix.timm, name)).parameters
    positional = [(p.name, p.default) for p in ours.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == [(p.name, p.default) for p in theirs.values() if p.name != "self"]
    assert [p.name for p in ours.values() if p.kind is p.KEYWORD_ONLY] == ["seed", "generator"]


@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_multi_label_equals_timm(monkeypatch, mode, smoothing):
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [1, 1, 1, 0, 1], [0, 0, 0, 0, 0]])  # multi-hot, ints
    args = {"mixup_alpha": 0.8, "mode": mode, "label_smoothing": smoothing, "num_classes": 5, "multi_label": True}
    reference = timm_mixup.Mixup(**args)
    lam = np.array([0.3, 0.6, 0.8, 1.0], dtype=np.float32)
    if mode == "batch":
        monkeypatch.setattr(reference, "_params_per_batch", lambda: (0.3, False))
        plan = batch_plan(4, 0.3)
    else:
        monkeypatch.setattr(reference, "_params_per_elem", lambda n: (lam.copy(), np.zeros(n, bool)))
        plan = elem_plan(flip_index(4), lam, None)
    ref_x, ref_y = reference(x.clone(), y)
    ours = multimix.timm.Mixup(**args, seed=0)
    monkeypatch.setattr(ours.mixer, "draw", lambda n: plan)
    out_x, out_y = ours(x, y)
    torch.testing.assert_close(out_x, ref_x)
    torch.testing.assert_close(out_y, ref_y)  # smoothed toward 0.5 (not s / C), then mixed
    assert out_y.dtype == ref_y.dtype == torch.float32
    monkeypatch.undo()  # the real draws again, which honour mixup_enabled
    ours.mixup_enabled = reference.mixup_enabled = False
    torch.testing.assert_close(ours(x, y)[1], reference(x, y)[1])
    torch.testing.assert_close(ours(x, y)[1], y * (1 - smoothing) + smoothing / 2)


def test_multi_label_false_is_timms_default():
    x = torch.randn(4, 3, 8, 8)
    explicit = multimix.timm.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=5, multi_label=False, seed=3)
    default = multimix.timm.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=5, seed=3)
    assert explicit.multi_label is False and "multi_label=False" in repr(explicit)
    torch.testing.assert_close(explicit(x.clone(), torch.arange(4)), default(x.clone(), torch.arange(4)))


def test_multi_label_errors():
    ours = multimix.timm.Mixup(num_classes=3, multi_label=True, seed=0)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"mixes dense multi-hot targets \(B, num_classes=3\), got \(2,\)"):
        ours(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"target rows must have width num_classes=3, got shape \(2, 4\)"):
        ours(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"target rows must hold values in \[0, 1\]"):
        ours(x, torch.full((2, 3), 2.0))
    with pytest.raises(TypeError, match=r"multi_label must be a bool, got str 'yes'"):
        multimix.timm.Mixup(multi_label="yes")


def uint8_batch(batch: int = 6) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, 8, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def test_uint8_batch_cutmix_equals_timm_which_takes_uint8_there(monkeypatch):
    x, y = uint8_batch(), torch.tensor([0, 1, 2, 3, 4, 5])
    reference = timm_mixup.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=6)
    monkeypatch.setattr(reference, "_params_per_batch", lambda: (0.6, True))
    timm_boxes(monkeypatch, [(2, 8, 1, 6)])
    ref_x, ref_y = reference(x.clone(), y)
    ours = multimix.timm.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=6, seed=0)
    monkeypatch.setattr(ours.mixer, "draw", lambda n: batch_plan(6, 0.6))
    fixed_boxes(monkeypatch, [(2, 8, 1, 6)])
    out_x, out_y = ours(x, y)
    assert out_x is x and out_x.dtype == torch.uint8 and torch.equal(out_x, ref_x)
    torch.testing.assert_close(out_y, ref_y)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_uint8_mixup_is_timms_float_result_rounded_with_the_drawn_lam(monkeypatch, mode):
    """timm's batch mixup raises on uint8, and its pair and elem modes truncate the pixels and cast lam to uint8
    (targets of lam 0); here uint8 is mixed in float32 and rounded, the targets those of the float batch."""
    x, y = uint8_batch(), torch.tensor([0, 1, 2, 3, 4, 5])
    lam = np.array([0.25, 0.5, 0.75, 0.625, 1.0, 0.375], dtype=np.float32)  # dyadic: float32 blends are exact
    if mode == "pair":
        lam[3:] = lam[:3][::-1]
    reference = timm_mixup.Mixup(mixup_alpha=1.0, mode=mode, num_classes=6)
    monkeypatch.setattr(reference, "_params_per_batch", lambda: (0.25, False))
    monkeypatch.setattr(reference, "_params_per_elem", lambda n: (lam[:n].copy(), np.zeros(n, bool)))
    ref_x, ref_y = reference(x.float(), y)
    ours = multimix.timm.Mixup(mixup_alpha=1.0, mode=mode, num_classes=6, seed=0)
    plan = batch_plan(6, 0.25) if mode == "batch" else \
        elem_plan(flip_index(6), lam, None)  # fmt: skip
    monkeypatch.setattr(ours.mixer, "draw", lambda n: plan)
    out_x, out_y = ours(x, y)
    assert out_x is x and out_x.dtype == torch.uint8
    assert torch.equal(out_x, ref_x.round().to(torch.uint8))  # half to even, as timm's collate rounds
    torch.testing.assert_close(out_y, ref_y)


# ----------------------------------------------------------------------------- FastCollateMixup

LAM = np.array([0.25, 0.5, 0.75, 0.625, 1.0, 0.375, 0.125, 0.875], dtype=np.float32)  # sample 4: the coin said no
CUT = np.array([True, False, False, True, True, False, True, False])
BOXES = [(0, 4, 1, 6), (3, 8, 0, 10), (2, 5, 5, 9)]


def random_samples(batch=8, as_tensor=False, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (3, 8, 10), dtype=np.uint8) for _ in range(batch)]
    return [(torch.from_numpy(image) if as_tensor else image, i % 5) for i, image in enumerate(images)]


def copied(samples):
    return [(image.copy() if isinstance(image, np.ndarray) else image.clone(), label) for image, label in samples]


def fixed_draws(monkeypatch, reference, ours, mode, use_cutmix):
    """The same lam, partners, adapters and boxes for timm's collate and ours (timm's pairing i <-> B - 1 - i)."""
    if mode == "batch":
        monkeypatch.setattr(reference, "_params_per_batch", lambda: (0.375, use_cutmix))
        monkeypatch.setattr(ours.mixer, "draw", lambda n: batch_plan(8, 0.375, choice=int(use_cutmix)))
        timm_boxes(monkeypatch, BOXES[:1])
        fixed_boxes(monkeypatch, BOXES[:1])
        return
    count = 8 if mode == "elem" else 4
    monkeypatch.setattr(reference, "_params_per_elem", lambda n: (LAM[:n].copy(), CUT[:n].copy()))
    index, lam, cut = flip_index(8), np.ones(8), np.zeros(8, dtype=np.int64)
    lam[:count], cut[:count] = LAM[:count], CUT[:count]
    if mode == "half":  # the second half lends its samples and stays itself
        index[4:] = torch.arange(4, 8)
    if mode == "pair":  # both samples of a pair get its lam, adapter and box
        lam[4:], cut[4:] = lam[:4][::-1], cut[:4][::-1]
    monkeypatch.setattr(ours.mixer, "draw", lambda n: elem_plan(index, lam, cut))
    timm_boxes(monkeypatch, BOXES)
    # CutMix's samples in ascending order: elem 0, 3, 6; half 0, 3; pair 0, 3, 4 (3's pair), 7 (0's pair)
    fixed_boxes(monkeypatch, BOXES[:2] + BOXES[1::-1] if mode == "pair" else BOXES)


@pytest.mark.parametrize(("mode", "use_cutmix"), [("batch", False), ("batch", True), ("elem", None),
                                                   ("pair", None), ("half", None)])  # fmt: skip
@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_collate_equals_timm_on_the_same_draws(monkeypatch, mode, use_cutmix, as_tensor, smoothing):
    samples = random_samples(as_tensor=as_tensor)
    args = {"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "mode": mode, "label_smoothing": smoothing, "num_classes": 5}
    reference = timm_mixup.FastCollateMixup(**args)
    ours = multimix.timm.FastCollateMixup(**args, seed=0)
    fixed_draws(monkeypatch, reference, ours, mode, use_cutmix)
    ref_x, ref_y = reference(copied(samples))  # timm's half mode pastes into the samples themselves
    before = copied(samples)
    out_x, out_y = ours(samples)
    assert out_x.dtype == torch.uint8 and out_x.shape == ref_x.shape == ((4 if mode == "half" else 8), 3, 8, 10)
    assert torch.equal(out_x, ref_x)
    assert out_y.dtype == ref_y.dtype == torch.float32
    torch.testing.assert_close(out_y, ref_y)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (a, _), (b, _) in zip(samples, before, strict=True))


def test_collate_multi_label_equals_timm(monkeypatch):
    rng = np.random.default_rng(1)
    samples = [(image, rng.integers(0, 2, 5).astype(np.float32)) for image, _ in random_samples()]
    args = {"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "mode": "elem", "label_smoothing": 0.1, "num_classes": 5,
            "multi_label": True}  # fmt: skip
    reference = timm_mixup.FastCollateMixup(**args)
    ours = multimix.timm.FastCollateMixup(**args, seed=0)
    fixed_draws(monkeypatch, reference, ours, "elem", None)
    ref_x, ref_y = reference(copied(samples))
    out_x, out_y = ours(samples)
    assert torch.equal(out_x, ref_x)
    torch.testing.assert_close(out_y, ref_y)
    with pytest.raises(ValueError, match=r"multi_label=True mixes dense multi-hot targets"):
        ours(random_samples())


@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_collate_unmixed_equals_timm(mode):
    samples = random_samples(as_tensor=mode == "pair")
    for off in ({"prob": 0.0}, {"enabled": False}):
        args = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": mode, "num_classes": 5, "prob": off.get("prob", 1.0)}
        reference = timm_mixup.FastCollateMixup(**args)
        ours = multimix.timm.FastCollateMixup(**args, seed=0)
        ours.mixup_enabled = reference.mixup_enabled = off.get("enabled", True)
        ref_x, ref_y = reference(copied(samples))
        out_x, out_y = ours(samples)
        assert torch.equal(out_x, ref_x)
        torch.testing.assert_close(out_y, ref_y)  # smoothed one-hot rows (timm's default label_smoothing=0.1)


def constant_samples(batch):
    """Sample i is an image of the constant 3 + 31 * i (distinct, so each pixel says whose it is), label i."""
    return [(np.full((3, 6, 9), 3 + 31 * i, dtype=np.uint8), i) for i in range(batch)]


def label_weights_follow_the_pixels(images, target, mixup_alpha):
    """Each row's label weights are the share of its pixels from each sample (CutMix: the area kept), or the
    weights of its blend (Mixup: a constant image within rounding of the weighted values)."""
    values = 3 + 31 * torch.arange(target.shape[1])
    for row, weights in zip(images.long(), target, strict=True):
        assert float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
        if mixup_alpha == 0:
            share = torch.stack([(row == v).double().mean() for v in values])
            torch.testing.assert_close(weights.double(), share, atol=1e-6, rtol=0)
        else:
            assert bool((row == row.flatten()[0]).all())
            assert abs(float(row.flatten()[0]) - float((weights.double() * values).sum())) <= 0.5 + 1e-4


@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
@pytest.mark.parametrize("mixup_alpha", [0.0, 0.8])
def test_collate_label_weight_is_the_area_kept_or_the_blend_weight_as_timms(mode, mixup_alpha):
    args = {"mixup_alpha": mixup_alpha, "cutmix_alpha": 0.0 if mixup_alpha else 1.0, "mode": mode,
            "label_smoothing": 0.0, "num_classes": 8}  # fmt: skip
    np.random.seed(0)
    for collate in (timm_mixup.FastCollateMixup(**args), multimix.timm.FastCollateMixup(**args, seed=0)):
        for _ in range(10):
            label_weights_follow_the_pixels(*collate(constant_samples(8)), mixup_alpha)


def draw_statistics(collate, calls):
    """Share of rows mixed, share of the mixed that CutMix mixed, and mean min(w, 1 - w) of the own-label weight."""
    mixed = cut = 0
    spread = []
    rows = 0
    for _ in range(calls):
        images, target = collate(constant_samples(8))
        for i, row in enumerate(images):
            rows += 1
            own = float(target[i, i])
            if own > 1 - 1e-6:
                continue
            mixed += 1
            cut += len(torch.unique(row)) == 2
            spread.append(min(own, 1 - own))
    return mixed / rows, cut / max(mixed, 1), float(np.mean(spread))


@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_collate_draw_statistics_match_timms(mode):
    args = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 0.7, "switch_prob": 0.3, "mode": mode,
            "label_smoothing": 0.0, "num_classes": 8}  # fmt: skip
    np.random.seed(0)
    theirs = draw_statistics(timm_mixup.FastCollateMixup(**args), 300)
    ours = draw_statistics(multimix.timm.FastCollateMixup(**args, seed=0), 300)
    tolerance = 0.12 if mode == "batch" else 0.05  # batch mode: one coin and one switch per batch of 8
    assert ours[0] == pytest.approx(0.7, abs=tolerance) and theirs[0] == pytest.approx(0.7, abs=tolerance)
    assert ours[1] == pytest.approx(theirs[1], abs=tolerance)
    assert ours[1] == pytest.approx(0.3, abs=tolerance)
    assert ours[2] == pytest.approx(theirs[2], abs=0.03)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_collate_takes_odd_batches(mode):
    collate = multimix.timm.FastCollateMixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, label_smoothing=0.0,
                                             num_classes=8, seed=1)  # fmt: skip
    for _ in range(5):
        images, target = collate(constant_samples(5))
        kept = 2 if mode == "half" else 5
        assert images.shape == (kept, 3, 6, 9) and target.shape == (kept, 8)
        if mode == "half":  # partners come from the second half: rows 3 and 4 (timm pairs i with B - 1 - i)
            assert float(target[:, :2].sum() + target[:, 3:5].sum()) == pytest.approx(2.0)
        torch.testing.assert_close(target.sum(1), torch.ones(kept))


def test_prefetch_loader_sees_a_timm_collate_and_switches_mixing_off_in_the_workers():
    collate = multimix.timm.FastCollateMixup(mixup_alpha=1.0, label_smoothing=0.0, num_classes=8, seed=0)
    assert isinstance(collate, timm_mixup.FastCollateMixup)  # what PrefetchLoader.mixup_enabled checks
    loader = DataLoader(constant_samples(8), batch_size=4, shuffle=False, collate_fn=collate, num_workers=1,
                        persistent_workers=True)  # fmt: skip
    prefetch = PrefetchLoader(loader, mean=(0.0,) * 3, std=(1 / 255,) * 3, device=torch.device("cpu"))  # x 255 in it
    assert prefetch.mixup_enabled is True
    for images, target in prefetch:
        assert images.dtype == torch.float32 and images.shape == (4, 3, 6, 9) and target.shape == (4, 8)
        assert float(target.max()) < 1
    prefetch.mixup_enabled = False  # what timm's train.py does at --mixup-off-epoch
    assert collate.mixup_enabled is False
    labels = [int(label) for _, label in constant_samples(8)]
    for b, (images, target) in enumerate(prefetch):
        torch.testing.assert_close(target, torch.eye(8)[labels[4 * b : 4 * b + 4]])
        torch.testing.assert_close(images[:, 0, 0, 0], 3 + 31 * torch.arange(4 * b, 4 * b + 4).float())


@pytest.mark.parametrize(
    ("batch", "error", "match"),
    [
        ([], ValueError, r"batch must be a non-empty list of \(image, label\) samples"),
        ([np.zeros((3, 4, 4), np.uint8)], ValueError, r"batch\[0\] must be an \(image, label\) pair, got ndarray"),
        ([([0] * 4, 0)], TypeError, r"batch\[0\]\[0\] must be a uint8 NumPy array or tensor \(C, H, W\), got list"),
        ([(np.zeros((3, 4, 4), np.float32), 0)], TypeError,
         r"batch\[0\]\[0\] has dtype float32; FastCollateMixup collates uint8 images .*multimix.timm.Mixup"),
        ([(torch.zeros(3, 4, 4), 0)], TypeError, r"batch\[0\]\[0\] has dtype torch.float32"),
        ([(np.zeros((4, 4), np.uint8), 0)], ValueError, r"batch\[0\]\[0\] must be an image \(C, H, W\), got shape"),
        ([(np.zeros((3, 4, 4), np.uint8), 0), (np.zeros((3, 4, 5), np.uint8), 1)], ValueError,
         r"batch\[1\]\[0\] has shape \(3, 4, 5\) but batch\[0\]\[0\] has \(3, 4, 4\); resize or crop"),
        ([(np.zeros((3, 4, 4), np.uint8), 0.0), (np.zeros((3, 4, 4), np.uint8), 1.5)], ValueError,
         r"batch\[1\]\[1\] = 1.5 is not a class index"),
        ([(np.zeros((3, 4, 4), np.uint8), "cat")], TypeError, r"the labels \(batch\[i\]\[1\]\) must be numbers"),
        ([(np.zeros((3, 4, 4), np.uint8), 7)], ValueError, r"targets holds label 7, outside \[0, num_classes=5\)"),
    ],
)
def test_collate_errors(batch, error, match):
    collate = multimix.timm.FastCollateMixup(num_classes=5, seed=0)
    with pytest.raises(error, match=match):
        collate(batch)


def test_collate_mode_errors():
    with pytest.raises(ValueError, match=r"mode must be 'batch', 'pair', 'elem' or 'half' \(timm's modes\), got 'x'"):
        multimix.timm.FastCollateMixup(mode="x")
    half = multimix.timm.FastCollateMixup(mode="half", num_classes=5, seed=0)
    with pytest.raises(ValueError, match=r"mode='half' mixes the first half .*got a batch of 1 sample"):
        half([(np.zeros((3, 4, 4), np.uint8), 0)])
    with pytest.raises(AttributeError, match=r"multimix.timm.FastCollateMixup.mode is fixed at construction"):
        half.mode = "elem"


def test_transposed_numpy_samples_collate_into_a_contiguous_batch():
    """timm's ToNumpy gives CHW views of HWC arrays; np.stack keeps their strides, timm returns a contiguous batch."""
    g = np.random.default_rng(0)
    samples = [(np.ascontiguousarray(g.integers(0, 256, (8, 8, 3), dtype=np.uint8)).transpose(2, 0, 1), i)
               for i in range(4)]  # fmt: skip
    images, _ = multimix.timm.FastCollateMixup(num_classes=10, seed=0)(samples)
    reference, _ = timm_mixup.FastCollateMixup(num_classes=10)(samples)
    assert images.is_contiguous() and images.stride() == reference.stride()
    unmixed = multimix.timm.FastCollateMixup(num_classes=10, seed=0)
    unmixed.mixup_enabled = False
    assert torch.equal(unmixed(samples)[0], torch.from_numpy(np.stack([s for s, _ in samples])))
