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
