import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multimix._kernels import (
    FROM_SCRATCH,
    SAVE,
    inplace_schedule,
    lerp_rows,
    paste_boxes,
)
from multimix.image.boxes import box_masks
from multimix.plan import MixPlan


def simulate(index, active, values):
    """Run a schedule on plain numbers: each write stores the partner's value it read."""
    values = list(values)
    scratch = None
    reads = {}
    for kind, i, j in inplace_schedule(index, active):
        if kind == SAVE:
            scratch = values[i]
            continue
        reads[i] = scratch if kind == FROM_SCRATCH else values[j]
        values[i] = ("written", i)
    return reads


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_schedule_reads_original_values_for_any_partner_map(data):
    n = data.draw(st.integers(1, 40))
    permutation = data.draw(st.booleans())
    if permutation:
        index = data.draw(st.permutations(list(range(n))))
    else:
        index = data.draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=n))
    active = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    reads = simulate(index, active, [("orig", i) for i in range(n)])
    expected = {i: ("orig", index[i]) for i in range(n) if active[i] and index[i] != i}
    assert reads == expected


def test_schedule_uses_one_save_per_cycle():
    steps = inplace_schedule([1, 2, 0, 4, 3, 5], [True] * 6)  # cycles (0 1 2), (3 4), fixed 5
    assert sum(kind == SAVE for kind, _, _ in steps) == 2
    assert len([s for s in steps if s[0] != SAVE]) == 5


MODES = [(inplace, vectorized) for inplace in (True, False) for vectorized in (True, False)]


@pytest.mark.parametrize(("inplace", "vectorized"), MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_lerp_rows_matches_formula(inplace, vectorized, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, 5, 4, generator=g).to(dtype)
    index = torch.randperm(7, generator=g)
    lam = torch.rand(7, generator=g, dtype=torch.float64)
    lam[2] = 1.0
    original = x.clone()
    w = lam.view(-1, 1, 1, 1)
    expected = (w * original.double() + (1 - w) * original.double()[index]).to(dtype)
    out = lerp_rows(x, MixPlan(index, lam), inplace=inplace, vectorized=vectorized)
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2}.get(dtype, 1e-6)
    torch.testing.assert_close(out, expected, atol=tol, rtol=tol)
    assert out.dtype == dtype
    assert (out is x) == inplace
    if not inplace:
        assert torch.equal(x, original)
    assert torch.equal(out[2], original[2])


@pytest.mark.parametrize(("inplace", "vectorized"), MODES)
def test_lerp_rows_keeps_channels_last(inplace, vectorized):
    x = torch.randn(4, 3, 6, 6).to(memory_format=torch.channels_last)
    original = x.clone()
    index, lam = torch.tensor([3, 2, 1, 0]), torch.full((4,), 0.25, dtype=torch.float64)
    out = lerp_rows(x, MixPlan(index, lam), inplace=inplace, vectorized=vectorized)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, 0.25 * original + 0.75 * original[index])


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 6), height=st.integers(1, 12), width=st.integers(1, 12),
       with_mixed=st.booleans())  # fmt: skip
def test_box_masks_mark_the_rows_and_columns_inside_each_box(data, n, height, width, with_mixed):
    corner = st.tuples(st.integers(0, height), st.integers(0, height), st.integers(0, width), st.integers(0, width))
    boxes = torch.tensor(data.draw(st.lists(corner, min_size=n, max_size=n)))  # empty and reversed boxes included
    mixed = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    masks = box_masks(boxes, mixed if with_mixed else None, height, width)
    for i, (y1, y2, x1, x2) in enumerate(boxes.tolist()):
        rows = [y1 <= r < y2 and (bool(mixed[i]) or not with_mixed) for r in range(height)]
        assert masks["rows"][i].tolist() == rows
        assert masks["cols"][i].tolist() == [x1 <= c < x2 for c in range(width)]


@pytest.mark.parametrize(("inplace", "vectorized"), MODES)
def test_paste_boxes_matches_slicing(inplace, vectorized):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, 8, 9, generator=g)
    original = x.clone()
    index = torch.tensor([1, 2, 0, 4, 3])
    boxes = torch.tensor([[0, 3, 1, 4], [2, 8, 0, 9], [4, 4, 2, 6], [1, 2, 3, 5], [0, 8, 8, 9]])
    active = torch.tensor([True, True, True, False, True])
    expected = original.clone()
    for i in range(5):
        if active[i]:
            y1, y2, x1, x2 = boxes[i].tolist()
            expected[i, :, y1:y2, x1:x2] = original[index[i], :, y1:y2, x1:x2]
    plan = MixPlan(index, torch.where(active, 0.5, 1.0).double())
    masks = box_masks(boxes, plan.mixed, 8, 9) if vectorized else {}
    out = paste_boxes(x, plan, boxes, inplace=inplace, vectorized=vectorized, **masks)
    assert torch.equal(out, expected)
    assert (out is x) == inplace
