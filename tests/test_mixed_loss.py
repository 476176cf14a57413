"""mixed_loss: lam * criterion(y) + (1 - lam) * criterion(y[index]) for criteria that take class indices."""

import functools

import pytest
import torch
import torch.nn.functional as F
from conftest import fixed_plan
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import multimix
from multimix.image import CutMix, Mixup
from multimix.mixer import MixedBatch


def mixed(adapter=None, *, n=8, c=5, seed=0, **kwargs):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 3, 12, 12, generator=g), torch.randint(0, c, (n,), generator=g)
    batch = multimix.Mixer(adapter or Mixup(1.0), num_classes=c, per_sample=True, seed=seed, **kwargs)(x, y)
    return torch.randn(n, c, generator=g), y, batch


def focal(logits, labels, gamma=2.0, reduction="mean"):
    log_p = F.log_softmax(logits, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    return loss if reduction == "none" else loss.mean()


@pytest.mark.parametrize("adapter", [Mixup(1.0), CutMix(1.0)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_agrees_with_soft_cross_entropy(adapter, reduction):
    logits, _y, batch = mixed(adapter)
    got = multimix.mixed_loss(nn.CrossEntropyLoss(), logits, batch, reduction=reduction)
    torch.testing.assert_close(got, multimix.soft_cross_entropy(logits, batch.targets, reduction))


@pytest.mark.parametrize("smoothing", [0.1, 0.3])
def test_label_smoothing_ce_agrees_with_a_smoothing_mixer(smoothing):
    logits, _y, batch = mixed(CutMix(1.0), label_smoothing=smoothing)
    got = multimix.mixed_loss(nn.CrossEntropyLoss(label_smoothing=smoothing), logits, batch)
    torch.testing.assert_close(got, multimix.soft_cross_entropy(logits, batch.targets))


def test_exact_value_on_a_fixed_plan():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    plan = fixed_plan([1, 0, 2], [0.25, 0.5, 1.0])
    batch = MixedBatch(None, None, plan.lam.float(), plan.index, plan)
    ce = F.cross_entropy(logits, y, reduction="none")
    ce_partner = F.cross_entropy(logits, y[[1, 0, 2]], reduction="none")
    expected = torch.tensor([0.25, 0.5, 1.0]) * ce + torch.tensor([0.75, 0.5, 0.0]) * ce_partner
    got = multimix.mixed_loss(F.cross_entropy, logits, batch, y, reduction="none")  # a batch made by hand: labels
    torch.testing.assert_close(got, expected)
    assert got[2] == ce[2]  # an unmixed sample gets exactly its own loss
    from_plan = multimix.mixed_loss(F.cross_entropy, logits, plan, y, reduction="none")  # or a plan and its labels
    torch.testing.assert_close(from_plan, expected)
    with pytest.raises(ValueError, match=r"holds no labels .*pass labels="):
        multimix.mixed_loss(F.cross_entropy, logits, batch)
    with pytest.raises(ValueError, match=r"with a plan needs labels: mixed_loss\(criterion, logits, plan, labels\)"):
        multimix.mixed_loss(F.cross_entropy, logits, plan)


def test_focal_loss_function_gets_reduction_none():
    logits, y, batch = mixed()
    lam = batch.lam
    expected = lam * focal(logits, y, reduction="none") + (1 - lam) * focal(logits, y[batch.index], reduction="none")
    torch.testing.assert_close(multimix.mixed_loss(focal, logits, batch), expected.mean())
    per_sample = functools.partial(focal, reduction="none")  # a partial that fixes reduction itself
    torch.testing.assert_close(multimix.mixed_loss(per_sample, logits, batch, reduction="sum"), expected.sum())


def test_an_unhashable_criterion_is_called_like_any_other():
    """A dataclass with eq=True has no hash: its signature is read without the cache."""
    import dataclasses

    @dataclasses.dataclass
    class Focal:
        gamma: float = 2.0

        def __call__(self, logits, labels, reduction="mean"):
            return focal(logits, labels, self.gamma, reduction)

    logits, y, batch = mixed()
    lam = batch.lam
    expected = lam * focal(logits, y, reduction="none") + (1 - lam) * focal(logits, y[batch.index], reduction="none")
    for _ in range(2):
        torch.testing.assert_close(multimix.mixed_loss(Focal(), logits, batch), expected.mean())


def test_module_reduction_is_used_and_restored():
    logits, _y, batch = mixed()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    got = multimix.mixed_loss(criterion, logits, batch)
    torch.testing.assert_close(got, multimix.soft_cross_entropy(logits, batch.targets, "sum"))
    assert criterion.reduction == "sum"
    multimix.mixed_loss(criterion, logits, batch, reduction="none")
    assert criterion.reduction == "sum"


def test_unmixed_batch_calls_the_criterion_once():
    logits, y, batch = mixed(p=0.0)
    calls = []

    def criterion(z, t, reduction="mean"):
        calls.append(t)
        return F.cross_entropy(z, t, reduction=reduction)

    got = multimix.mixed_loss(criterion, logits, batch, reduction="none")
    assert len(calls) == 1 and torch.equal(got, F.cross_entropy(logits, y, reduction="none"))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 9), c=st.integers(2, 6))
def test_gradient_agrees_with_soft_cross_entropy(seed, n, c):
    logits, _y, batch = mixed(n=n, c=c, seed=seed)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    multimix.mixed_loss(nn.CrossEntropyLoss(), a, batch).backward()
    multimix.soft_cross_entropy(b, batch.targets).backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5)


def test_no_host_device_sync_on_meta():
    x = torch.empty(8, 3, 8, 8, device="meta")
    y = torch.zeros(8, dtype=torch.long, device="meta")
    batch = multimix.Mixer(CutMix(1.0), num_classes=5, per_sample=True, seed=0)(x, y)
    logits = torch.empty(8, 5, device="meta")
    for criterion in (nn.CrossEntropyLoss(label_smoothing=0.1), focal):
        for reduction, shape in (("mean", ()), ("none", (8,))):
            loss = multimix.mixed_loss(criterion, logits, batch, reduction=reduction)
            assert loss.shape == shape and loss.device.type == "meta"


def test_the_batch_holds_the_labels_it_was_mixed_from():
    logits, y, batch = mixed(CutMix(1.0))
    assert torch.equal(batch.labels, y)
    own_labels = multimix.mixed_loss(nn.CrossEntropyLoss(), logits, batch, y)
    torch.testing.assert_close(multimix.mixed_loss(nn.CrossEntropyLoss(), logits, batch), own_labels)
    with pytest.warns(FutureWarning, match=r"old argument order; call mixed_loss\(criterion, logits, batch\)"):
        old_order = multimix.mixed_loss(nn.CrossEntropyLoss(), logits, y, batch)
    torch.testing.assert_close(old_order, own_labels)


def test_errors():
    logits, y, batch = mixed()
    with pytest.raises(TypeError, match=r"criterion must be callable .* got str"):
        multimix.mixed_loss("ce", logits, batch)
    with pytest.raises(TypeError, match=r"batch must be the MixedBatch a multimix.Mixer returned .*got tuple"):
        multimix.mixed_loss(F.cross_entropy, logits, (batch.lam, batch.index), y)
    with pytest.raises(ValueError, match=r"reduction must be one of .* got 'avg'"):
        multimix.mixed_loss(F.cross_entropy, logits, batch, reduction="avg")
    with pytest.raises(ValueError, match=r"must hold the batch's 8 samples, got shapes \(8, 5\) and \(4,\)"):
        multimix.mixed_loss(F.cross_entropy, logits, batch, y[:4])
    with pytest.raises(ValueError, match=r"batch.lam is on cpu, logits on meta; move them"):
        multimix.mixed_loss(F.cross_entropy, logits.to("meta"), batch, y.to("meta"))
    with pytest.raises(ValueError, match=r"labels is on cpu, logits on meta; move them"):
        multimix.mixed_loss(F.cross_entropy, logits.to("meta"), batch)
    with pytest.raises(ValueError, match=r"criterion must return a per-sample loss of shape \(8,\), got \(\)"):
        multimix.mixed_loss(lambda z, t: F.cross_entropy(z, t), logits, batch)


W = torch.tensor([1.0, 5.0, 0.2])


def test_class_weights_mean_divides_by_the_labels_weight_as_torch_does():
    """nn.CrossEntropyLoss(weight=w) divides its mean by sum(w[y]): an unmixed batch gives exactly the criterion's
    loss (it divided by B), and a mixed one divides by each side's share of the label weight (hand formula)."""
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    unmixed = multimix.Mixer(Mixup(1.0), 3, seed=0, p=0.0)(torch.rand(6, 3, 4, 4), labels)
    torch.testing.assert_close(multimix.mixed_loss(nn.CrossEntropyLoss(weight=W), logits, unmixed),
                               nn.CrossEntropyLoss(weight=W)(logits, labels))  # fmt: skip
    out = multimix.Mixer(Mixup(1.0), 3, per_sample=True, seed=0)(torch.rand(6, 3, 4, 4), labels)
    nll = -torch.log_softmax(logits.double(), 1)
    lam, partner = out.lam.double(), labels[out.index]
    num = sum(lam[i] * W[labels[i]] * nll[i, labels[i]] + (1 - lam[i]) * W[partner[i]] * nll[i, partner[i]]
              for i in range(6))  # fmt: skip
    den = sum(lam[i] * W[labels[i]] + (1 - lam[i]) * W[partner[i]] for i in range(6))
    got = multimix.mixed_loss(nn.CrossEntropyLoss(weight=W), logits, out)
    torch.testing.assert_close(got.double(), num / den)
    unweighted = multimix.mixed_loss(nn.CrossEntropyLoss(), logits, out)  # no weights: the mean over samples
    torch.testing.assert_close(unweighted, multimix.soft_cross_entropy(logits, out.targets))


def test_class_weights_on_label_maps_give_the_criterions_loss_of_the_map_shown():
    crit = nn.CrossEntropyLoss(weight=W, ignore_index=255)
    maps = torch.randint(0, 3, (4, 8, 8), generator=torch.Generator().manual_seed(1))
    maps[0, :2] = 255
    out = multimix.Mixer(CutMix(1.0), num_classes=3, ignore_index=255, seed=0)(torch.rand(4, 3, 8, 8), maps)
    logits = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(multimix.mixed_loss(crit, logits, out), crit(logits, out.targets))


def test_criteria_that_average_over_samples_keep_their_mean_whatever_their_weight():
    """MultiMarginLoss(weight=w) (and most focal losses with a .weight) divide by the sample count, not by the
    labels' weight: an unmixed batch gives the criterion's own loss."""
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    unmixed = multimix.Mixer(Mixup(1.0), 3, seed=0, p=0.0)(torch.rand(6, 3, 4, 4), labels)
    margin = nn.MultiMarginLoss(weight=W)
    torch.testing.assert_close(multimix.mixed_loss(margin, logits, unmixed), margin(logits, labels))
    nll = nn.NLLLoss(weight=W)
    log_probs = torch.log_softmax(logits, 1)
    torch.testing.assert_close(multimix.mixed_loss(nll, log_probs, unmixed), nll(log_probs, labels))


def test_a_compiled_weighted_cross_entropy_keeps_torchs_mean():
    """torch.compile wraps the loss module: its class weights still set the mean's divisor."""
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    unmixed = multimix.Mixer(Mixup(1.0), 3, seed=0, p=0.0)(torch.rand(6, 3, 4, 4), labels)
    compiled = torch.compile(nn.CrossEntropyLoss(weight=W), backend="eager")
    want = nn.CrossEntropyLoss(weight=W)(logits, labels)
    torch.testing.assert_close(multimix.mixed_loss(compiled, logits, unmixed), want)
