import math

import pytest
import torch
import torch.nn.functional as F
from timm.loss import BinaryCrossEntropy as TimmBCE
from timm.loss import SoftTargetCrossEntropy as TimmSoftCE

import multimix


def logits_and_rows(n=8, c=5, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n, c, generator=g)
    rows = torch.softmax(torch.randn(n, c, generator=g), dim=1)
    return logits.to(dtype), rows


def test_soft_cross_entropy_matches_torch_and_timm():
    logits, rows = logits_and_rows()
    ours = multimix.soft_cross_entropy(logits, rows)
    torch.testing.assert_close(ours, F.cross_entropy(logits, rows))
    torch.testing.assert_close(ours, TimmSoftCE()(logits, rows))
    torch.testing.assert_close(
        multimix.SoftTargetCrossEntropy(reduction="none")(logits, rows), F.cross_entropy(logits, rows, reduction="none")
    )


def test_soft_cross_entropy_accepts_indices_and_low_precision():
    logits, _ = logits_and_rows()
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    torch.testing.assert_close(multimix.soft_cross_entropy(logits, labels), F.cross_entropy(logits, labels))
    half = multimix.soft_cross_entropy(logits.bfloat16(), labels, reduction="sum")
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, F.cross_entropy(logits.bfloat16().float(), labels, reduction="sum"))


@pytest.mark.parametrize("threshold", [None, 0.2])
def test_binary_cross_entropy_matches_timm(threshold):
    logits, rows = logits_and_rows()
    reference = TimmBCE(smoothing=0.0, target_threshold=threshold)(logits, rows)
    torch.testing.assert_close(multimix.binary_cross_entropy(logits, rows, target_threshold=threshold), reference)
    torch.testing.assert_close(multimix.BinaryCrossEntropy(target_threshold=threshold)(logits, rows), reference)


def test_binary_cross_entropy_one_hot_indices():
    logits, _ = logits_and_rows()
    labels = torch.arange(8) % 5
    expected = F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, 5).float())
    torch.testing.assert_close(multimix.binary_cross_entropy(logits, labels), expected)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda z, r: multimix.soft_cross_entropy(z, r[:, :3]),
            ValueError,
            r"soft targets must have the shape of logits \(8, 5\), got \(8, 3\)",
        ),
        (
            lambda z, r: multimix.soft_cross_entropy(z[0], r),
            ValueError,
            r"logits must be a float tensor \(B, C\), got shape \(5,\)",
        ),
        (lambda z, r: multimix.soft_cross_entropy(z, r, reduction="avg"), ValueError, r"reduction must be one of"),
        (
            lambda z, r: multimix.soft_cross_entropy(z, torch.arange(3)),
            ValueError,
            r"targets has batch size 3, logits 8",
        ),
        (
            lambda z, r: multimix.soft_cross_entropy(z, r[:, 0]),
            TypeError,
            r"class-index targets \(B,\) must be integers",
        ),
        (
            lambda z, r: multimix.binary_cross_entropy(z, r, target_threshold=2.0),
            ValueError,
            r"target_threshold must be in \[0, 1\], got 2.0",
        ),
        (lambda z, r: multimix.SoftTargetCrossEntropy(reduction="bad"), ValueError, r"reduction must be one of"),
    ],
)
def test_loss_errors(call, error, match):
    logits, rows = logits_and_rows()
    with pytest.raises(error, match=match):
        call(logits, rows)


def meta_inputs():
    return torch.randn(8, 5, device="meta"), torch.zeros(8, dtype=torch.long, device="meta")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_make_no_host_device_sync(reduction):
    # meta tensors hold no values: any .item()/bool()/int() raises, so passing proves no sync
    logits, labels = meta_inputs()
    rows = torch.rand(8, 5, device="meta")
    shape = (8,) if reduction == "none" else ()
    for targets in (labels, rows):
        assert multimix.soft_cross_entropy(logits, targets, reduction).shape == shape
        assert multimix.SoftTargetCrossEntropy(reduction)(logits, targets).shape == shape
        assert multimix.regmixup_loss(logits, labels, logits, targets, 2.0, reduction=reduction).shape == shape
        bce_shape = (8, 5) if reduction == "none" else ()
        assert multimix.binary_cross_entropy(logits, targets, reduction=reduction).shape == bce_shape
        module = multimix.BinaryCrossEntropy(target_threshold=0.2, reduction=reduction)
        assert module(logits, targets).shape == bce_shape


def test_validate_true_reads_values_back():
    logits, labels = meta_inputs()
    with pytest.raises(RuntimeError, match=r"meta tensors"):
        multimix.soft_cross_entropy(logits, labels, validate=True)
    with pytest.raises(RuntimeError, match=r"meta tensors"):
        multimix.SoftTargetCrossEntropy(validate=True)(logits, torch.rand(8, 5, device="meta"))


def test_validate_false_skips_value_checks_on_cpu():
    logits, rows = logits_and_rows()
    negative = rows - 0.1  # no valid soft target, but the caller asked for no checks
    expected = -(negative * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(multimix.soft_cross_entropy(logits, negative, validate=False), expected)
    with pytest.raises(ValueError, match=r"soft targets must be >= 0"):
        multimix.soft_cross_entropy(logits, negative)


def test_regmixup_loss_by_hand():
    clean = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    targets = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    ce_clean = [math.log(1 + math.exp(-2)), math.log(1 + math.exp(1))]
    p0 = 1 / (1 + math.exp(-1))
    ce_mixed = [-(0.5 * math.log(p0) + 0.5 * math.log(1 - p0)), math.log(2)]
    eta = 0.5
    per_sample = [c + eta * m for c, m in zip(ce_clean, ce_mixed, strict=True)]
    loss = multimix.regmixup_loss(clean, labels, mixed, targets, eta)
    assert float(loss) == pytest.approx(sum(per_sample) / 2, rel=1e-6)
    none = multimix.regmixup_loss(clean, labels, mixed, targets, eta, reduction="none")
    assert none.tolist() == pytest.approx(per_sample, rel=1e-6)
    summed = multimix.regmixup_loss(clean, torch.eye(2)[labels], mixed, targets, eta, reduction="sum")
    assert float(summed) == pytest.approx(sum(per_sample), rel=1e-6)
    # eta = 0 is plain training on the clean batch; a mixed batch of another size is fine when averaged
    assert float(multimix.regmixup_loss(clean, labels, mixed[:1], targets[:1], 0.0)) == pytest.approx(
        sum(ce_clean) / 2, rel=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eta": -1.0}, ValueError, r"eta must be finite and >= 0 .* got -1.0; the paper uses 1.0"),
        ({"eta": float("nan")}, ValueError, r"eta must be finite and >= 0"),
        ({"eta": "1"}, TypeError, r"eta must be a real number >= 0 .* got str '1'"),
        ({"eta": True}, TypeError, r"eta must be a real number >= 0 .* got bool True"),
        ({"reduction": "avg"}, ValueError, r"reduction must be one of"),
        ({"mixed_rows": 3, "reduction": "none"}, ValueError, r"reduction='none' needs clean and mixed batches of one "),
    ],
)
def test_regmixup_loss_errors(kwargs, error, match):
    logits, rows = logits_and_rows()
    n = kwargs.pop("mixed_rows", 8)
    with pytest.raises(error, match=match):
        multimix.regmixup_loss(logits, torch.arange(8) % 5, logits[:n], rows[:n], **kwargs)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda z, r: multimix.soft_cross_entropy(z, torch.tensor([0, 1, -100, 3, 4, 0, 1, 2])),
            ValueError,
            r"targets contain -100 \(torch's ignore_index\); .* drop those samples first, e\.g\. keep = targets != ",
        ),
        (
            lambda z, r: multimix.soft_cross_entropy(z, torch.tensor([0, 1, 5, 3, 4, 0, 1, 2])),
            ValueError,
            r"class-index targets must lie in \[0, 5\), got values in \[0, 5\]",
        ),
        (
            lambda z, r: multimix.soft_cross_entropy(z, torch.ones(8, dtype=torch.bool)),
            TypeError,
            r"class-index targets \(B,\) must be integers, got dtype torch.bool; convert with .long\(\)",
        ),
        (
            lambda z, r: multimix.binary_cross_entropy(z, torch.zeros(8, dtype=torch.bool)),
            TypeError,
            r"class-index targets \(B,\) must be integers, got dtype torch.bool",
        ),
        (
            lambda z, r: multimix.soft_cross_entropy(z, r.index_fill(0, torch.tensor([2]), float("nan"))),
            ValueError,
            r"soft targets contain NaN or inf",
        ),
        (
            lambda z, r: multimix.binary_cross_entropy(z, r * 2),
            ValueError,
            r"soft targets must be \[0, 1\], got values in",
        ),
        (
            lambda z, r: multimix.SoftTargetCrossEntropy()(z, torch.zeros(8, dtype=torch.long, device="meta")),
            ValueError,
            r"targets must be on the device of logits \(cpu\), got meta",
        ),
    ],
)
def test_loss_value_errors(call, error, match):
    logits, rows = logits_and_rows()
    with pytest.raises(error, match=match):
        call(logits, rows)


@pytest.mark.gpu
def test_losses_make_no_sync_on_cuda():
    logits, rows = (t.cuda() for t in logits_and_rows())
    labels = (torch.arange(8) % 5).cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = [
            multimix.soft_cross_entropy(logits, labels),
            multimix.soft_cross_entropy(logits, rows),
            multimix.regmixup_loss(logits, labels, logits, rows),
            multimix.binary_cross_entropy(logits, rows, target_threshold=0.2),
            multimix.binary_cross_entropy(logits, labels),
        ]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.testing.assert_close(losses[0].cpu(), F.cross_entropy(logits.cpu(), labels.cpu()))
