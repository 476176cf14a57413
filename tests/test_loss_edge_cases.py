"""Edge cases of losses, metrics and calibration: ignored labels, frame rows, smoothing, dtypes, one class."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import fixed_plan
from torch import nn

import multimix
from multimix.audio import SpecMix, SpecMixup, WaveMix
from multimix.image import Mixup
from multimix.losses import mixed_cross_entropy, mixed_token_cross_entropy


def frame_soft_ce(z, t, reduction="none"):
    """A per-frame soft cross-entropy: ``(B, T, C)`` logits and rows give a ``(B, T)`` loss."""
    return -(t * z.log_softmax(-1)).sum(-1)


@pytest.mark.parametrize("adapter", [SpecMixup(1.0), SpecMix(1.0)])
@pytest.mark.parametrize("frames", [12, 4])  # T = B = 4 once: a (B, T, 1) weight times (B, T) broadcast silently
def test_frame_rows_with_a_per_frame_criterion(adapter, frames):
    g = torch.Generator().manual_seed(0)
    rows = F.one_hot(torch.randint(0, 3, (4, frames), generator=g), 3).float()
    out = multimix.Mixer(adapter, num_classes=3, per_sample=True, seed=0)(torch.randn(4, 16, frames), rows)
    logits = torch.randn(4, frames, 3, generator=g)
    own = out.mix.weight.float()
    own = own.view(4, 1) if own.dim() == 1 else own  # a blend weighs whole samples, a band each frame
    expected = own * frame_soft_ce(logits, rows) + (1 - own) * frame_soft_ce(logits, rows[out.index])
    got = multimix.mixed_loss(frame_soft_ce, logits, out, reduction="none")
    assert got.shape == (4, frames)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(multimix.mixed_loss(frame_soft_ce, logits, out), expected.mean())
    lerped = frame_soft_ce(logits, out.targets).mean()  # the loss is linear in the rows: the lerped rows' loss
    torch.testing.assert_close(multimix.mixed_loss(frame_soft_ce, logits, out), lerped)
    with pytest.raises(ValueError, match=rf"loss per position of shape \(4, {frames}\) or \(4, {frames}, 3\), got"):
        multimix.mixed_loss(lambda z, t, reduction="none": frame_soft_ce(z, t).unsqueeze(-1), logits, out)


@pytest.mark.parametrize("make", [lambda: nn.CrossEntropyLoss(), lambda: nn.CrossEntropyLoss(ignore_index=3),
                                  lambda: torch.compile(nn.CrossEntropyLoss(), backend="eager")])  # fmt: skip
def test_index_labels_at_ignore_index_leave_the_mean_as_torch_does(make):
    criterion = make()
    ignore = getattr(criterion, "_orig_mod", criterion).ignore_index
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 1, ignore, 3 if ignore != 3 else 2, ignore, 2])
    unmixed = fixed_plan(range(6), [1.0] * 6)
    torch.testing.assert_close(multimix.mixed_loss(criterion, logits, unmixed, labels), criterion(logits, labels))
    index, lam = [1, 0, 3, 2, 5, 4], torch.tensor([0.7, 0.2, 0.7, 0.4, 1.0, 0.5], dtype=torch.float64)
    ce_a = F.cross_entropy(logits.double(), labels, ignore_index=ignore, reduction="none")  # 0 where ignored
    ce_b = F.cross_entropy(logits.double(), labels[index], ignore_index=ignore, reduction="none")
    valid = (labels != ignore).double()
    num = (lam * ce_a + (1 - lam) * ce_b).sum()
    den = (lam * valid + (1 - lam) * valid[index]).sum()
    got = multimix.mixed_loss(criterion, logits, fixed_plan(index, lam.tolist()), labels)
    torch.testing.assert_close(got.double(), num / den)
    weighted = nn.CrossEntropyLoss(weight=torch.ones(4), ignore_index=ignore)  # the same loss, as torch says
    torch.testing.assert_close(got, multimix.mixed_loss(weighted, logits, fixed_plan(index, lam.tolist()), labels))
    log_probs = logits.log_softmax(1)
    nll = nn.NLLLoss(ignore_index=ignore)
    torch.testing.assert_close(multimix.mixed_loss(nll, log_probs, unmixed, labels), nll(log_probs, labels))


def test_logits_of_another_class_count_are_refused():
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    smoothed = multimix.Mixer(Mixup(1.0), num_classes=10, label_smoothing=0.1, seed=0)(x.clone(), y)
    plain = multimix.Mixer(Mixup(1.0), num_classes=10, seed=0)(x.clone(), y)
    logits = torch.randn(4, 12)
    message = r"logits have 12 classes \(shape \(4, 12\)\) but the batch was mixed for num_classes=10"
    with pytest.raises(ValueError, match=message):
        multimix.soft_cross_entropy(logits, smoothed)
    with pytest.raises(ValueError, match=message):
        multimix.SoftTargetCrossEntropy()(logits, plain)
    with pytest.raises(ValueError, match=message):
        multimix.mixed_loss(nn.CrossEntropyLoss(), logits, plain)
    torch.testing.assert_close(multimix.soft_cross_entropy(logits[:, :10], smoothed),
                               multimix.soft_cross_entropy(logits[:, :10], smoothed.targets))  # fmt: skip


def test_a_criterion_of_its_own_logits_shape_is_not_held_to_num_classes():
    """One binary logit scored by BCE: the criterion owns its logits' shape (only torch's CE/NLL take (B, C))."""
    out = multimix.Mixer(Mixup(1.0), num_classes=2, per_sample=True, seed=0)(torch.rand(4, 3, 8, 8),
                                                                              torch.tensor([0, 1, 1, 0]))  # fmt: skip
    z = torch.randn(4, 1)

    def criterion(logits, labels):
        return F.binary_cross_entropy_with_logits(logits.squeeze(1), labels.float(), reduction="none")

    lam = out.lam
    expected = (lam * criterion(z, out.labels) + (1 - lam) * criterion(z, out.labels[out.index])).mean()
    torch.testing.assert_close(multimix.mixed_loss(criterion, z, out), expected)
    torch.testing.assert_close(multimix.mixed_loss(criterion, z, out.plan, out.labels), expected)


def test_multi_hot_rows_under_an_elementwise_criterion_ask_for_a_loss_per_sample():
    rows = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]])
    out = multimix.Mixer(Mixup(1.0), num_classes=4, multi_label=True, seed=0)(torch.rand(4, 3, 8, 8), rows)
    with pytest.raises(ValueError, match=r"a loss per class, \(4, 4\), for rows \(4, 4\); reduce it per sample .* "
                                         r"multimix.binary_cross_entropy\(logits, batch.targets\)"):  # fmt: skip
        multimix.mixed_loss(nn.BCEWithLogitsLoss(), torch.randn(4, 4), out)


def test_float64_logits_are_scored_in_float64():
    z = torch.tensor([[1e-9, 0.0], [0.5, -0.25]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    want = F.cross_entropy(z, y)  # float32 would round 1e-9 away: off by 2e-9
    for got in (multimix.soft_cross_entropy(z, y), multimix.soft_cross_entropy(z, F.one_hot(y, 2).double()),
                mixed_cross_entropy(z, y, torch.arange(2), torch.ones(2, dtype=torch.float64)),
                mixed_token_cross_entropy(z.unsqueeze(1), y.unsqueeze(1), torch.arange(2), torch.ones(2))):  # fmt: skip
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, want, rtol=1e-15, atol=0)
    rows = torch.tensor([[1.0, 0.0], [0.3, 0.7]], dtype=torch.float64)
    bce = multimix.binary_cross_entropy(z, rows, pos_weight=torch.tensor([2.0, 1.0]))
    assert bce.dtype == torch.float64
    torch.testing.assert_close(bce, F.binary_cross_entropy_with_logits(z, rows, pos_weight=torch.tensor([2.0, 1.0],
                               dtype=torch.float64)), rtol=1e-15, atol=0)  # fmt: skip
    assert multimix.soft_cross_entropy(z.bfloat16(), y).dtype == torch.float32  # half precision still widened
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    soft = torch.softmax(torch.randn(3, 4, dtype=torch.float64, generator=g), 1)
    labels, index, lam = torch.tensor([0, 3, 1]), torch.tensor([2, 0, 1]), torch.tensor([0.3, 0.6, 1.0])
    for fn in (lambda a: multimix.soft_cross_entropy(a, soft), lambda a: multimix.binary_cross_entropy(a, soft),
               lambda a: mixed_cross_entropy(a, labels, index, lam, label_smoothing=0.1),
               lambda a: mixed_token_cross_entropy(a.unsqueeze(1), labels.unsqueeze(1), index, lam)):  # fmt: skip
        assert torch.autograd.gradcheck(fn, (logits,))


def test_mixed_loss_refuses_to_drop_the_mixers_smoothing():
    g = torch.Generator().manual_seed(0)
    mixer = multimix.Mixer(Mixup(1.0), num_classes=5, label_smoothing=0.2, seed=0)
    out = mixer(torch.rand(4, 3, 8, 8), torch.arange(4))
    logits = torch.randn(4, 5, generator=g)
    for criterion, name in ((nn.CrossEntropyLoss(), r"nn.CrossEntropyLoss\(label_smoothing=0.0\)"),
                            (nn.CrossEntropyLoss(label_smoothing=0.1), r"nn.CrossEntropyLoss\(label_smoothing=0.1\)"),
                            (F.cross_entropy, "cross_entropy")):  # fmt: skip
        fix = r"nn.CrossEntropyLoss\(label_smoothing=0.2\) with Mixer\(\.\.\., label_smoothing=0.0\)"
        with pytest.raises(ValueError, match=rf"label_smoothing=0.2 .*{name} does not smooth by 0.2.*{fix}.*"
                                             r"soft_cross_entropy\(logits, batch\)"):  # fmt: skip
            multimix.mixed_loss(criterion, logits, out)
    want = multimix.soft_cross_entropy(logits, out.targets)  # the same smoothing in the criterion: smoothed once
    torch.testing.assert_close(multimix.mixed_loss(nn.CrossEntropyLoss(label_smoothing=0.2), logits, out), want)
    compiled = torch.compile(nn.CrossEntropyLoss(label_smoothing=0.2), backend="eager")
    torch.testing.assert_close(multimix.mixed_loss(compiled, logits, out), want)


def test_mixed_accuracy_checks_lam_and_index():
    logits, y = torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([0, 1])
    assert multimix.mixed_accuracy(logits, y, torch.tensor([0.75, 0.75]), torch.tensor([1, 0])) == 0.5
    with pytest.raises(ValueError, match=r"lam must lie in \[0, 1\] .*got \[5.0\]"):
        multimix.mixed_accuracy(logits, y, torch.tensor([5.0, 0.5]), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"lam must lie in \[0, 1\] .*got \[nan, nan\]"):
        multimix.mixed_accuracy(logits, y, float("nan"), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"index must hold partners in \[0, 2\) \(out.index\), got \[-1\]"):
        multimix.mixed_accuracy(logits, y, torch.tensor([0.5, 0.5]), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"index must hold partners in \[0, 2\) \(out.index\), got \[7\]"):
        multimix.mixed_accuracy(logits, y, 0.5, torch.tensor([7, 0]))


def test_label_maps_with_a_plan_ask_for_the_mixed_batch():
    g = torch.Generator().manual_seed(0)
    maps, logits = torch.randint(0, 3, (4, 5, 5), generator=g), torch.randn(4, 3, 5, 5, generator=g)
    plan = fixed_plan([1, 0, 3, 2], [0.5, 0.5, 0.25, 1.0])
    message = r"labels of shape \(4, 5, 5\) are label maps .*a MixPlan holds one lam per sample.*pass the MixedBatch"
    with pytest.raises(ValueError, match=message + " the Mixer returned instead of a plan"):
        multimix.mixed_loss(nn.CrossEntropyLoss(), logits, plan, maps)
    # integer (B, C) labels with a per-sample loss are no maps: MultiLabelMarginLoss takes them with a plan
    targets, scores = torch.tensor([[0, 2, -1], [1, -1, -1], [2, 0, 1], [1, 2, -1]]), torch.randn(4, 3, generator=g)
    margin = nn.MultiLabelMarginLoss(reduction="none")
    lam = plan.lam.float()
    want = (lam * margin(scores, targets) + (1 - lam) * margin(scores, targets[plan.index])).mean()
    torch.testing.assert_close(multimix.mixed_loss(nn.MultiLabelMarginLoss(), scores, plan, targets), want)


@pytest.mark.parametrize(("adapter", "x"), [(WaveMix(1.0), torch.randn(4, 1600)),
                                            (SpecMixup(1.0), torch.randn(4, 16, 30)),
                                            (Mixup(1.0), torch.rand(4, 3, 8, 8))])  # fmt: skip
def test_integer_multi_hot_rows_are_refused_with_multi_label(adapter, x):
    hot = (torch.rand(4, 6, generator=torch.Generator().manual_seed(0)) > 0.5).long()
    mixer = multimix.Mixer(adapter, num_classes=6, multi_label=True, seed=0)
    with pytest.raises(TypeError, match=r"multi_label=True, targets \(4, 6\) of dtype torch.int64 .*use \.float\(\)"):
        mixer(x.clone(), hot)
    out = mixer(x.clone(), hot.float())
    assert out.mix.kind == "rows" and out.targets.shape == (4, 6)


def test_integer_frame_labels_without_multi_label_still_mix():
    frames = torch.randint(0, 6, (4, 10), generator=torch.Generator().manual_seed(0))
    out = multimix.Mixer(WaveMix(1.0), num_classes=6, seed=0)(torch.randn(4, 1600), frames)
    assert out.mix.kind == "map" and out.targets.shape == (4, 6, 10)
    torch.testing.assert_close(out.targets.sum(1), torch.ones(4, 10))


def test_fit_temperature_refuses_one_class():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about a bound either: it raises first
        with pytest.raises(ValueError, match=r"at least 2 classes \(N, C\), got shape \(100, 1\).*torch.cat"):
            multimix.fit_temperature(torch.randn(100, 1), torch.zeros(100, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32])
@pytest.mark.parametrize("weighted", [False, True])
def test_mixed_loss_takes_the_narrow_integer_labels_the_mixer_takes(dtype, weighted):
    """uint8 PNG masks and int32 class indices, which the Mixer takes, score as their int64 copies (torch's CE
    refused them: "expected scalar type Long")."""
    from multimix.image import CutMix

    generator = torch.Generator().manual_seed(0)
    weight = torch.rand(5, generator=generator) if weighted else None
    criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=255)
    masks = torch.randint(0, 5, (4, 8, 8), generator=generator)
    masks[:, 0] = 255
    labels = torch.randint(0, 5, (4,), generator=generator)
    x = torch.rand(4, 3, 8, 8, generator=generator)
    for adapter, targets, logits in ((CutMix(1.0), masks, torch.randn(4, 5, 8, 8, generator=generator)),
                                     (Mixup(1.0), labels, torch.randn(4, 5, generator=generator))):  # fmt: skip
        scores = []
        for given in (targets, targets.to(dtype)):
            out = multimix.Mixer(adapter, num_classes=5, per_sample=True, ignore_index=255, seed=1)(x.clone(), given)
            scores.append(multimix.mixed_loss(criterion, logits, out))
        torch.testing.assert_close(scores[1], scores[0], rtol=0, atol=0)
