"""Kernels that apply a plan to a batch, in place or not, per sample or vectorised.

Why in place: a DataLoader batch is fresh memory nobody else holds, and a full-batch
temporary (``x[index]``, ``x.flip(0)``) costs more than the mixing itself on a CPU:
allocating and page-faulting 77 MB takes longer than reading it. Mixing sample ``i``
with partner ``index[i]`` in place needs every partner's *original* value, so the
writes follow the partner graph: a sample is written only after everyone who reads
it has read it, and each cycle of the permutation is broken with one sample of
scratch. On an accelerator a per-sample loop would launch one kernel per sample,
and for small samples per-call overhead dominates, so there the vectorised path (one
gather, one fused op) is used instead; adapters choose (``Adapter.vectorized``).
Whether any or every sample is mixed is known on the host from the plan, so the
device kernels never need a read-back to skip work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from multimix.plan import MixPlan

# Step kinds of an in-place schedule.
SAVE, FROM_BATCH, FROM_SCRATCH = 0, 1, 2


def inplace_schedule(index: Sequence[int], active: Sequence[bool]) -> list[tuple[int, int, int]]:
    """Order the writes ``x[i] <- f(x[i], x[index[i]])`` so that each reads original values.

    Returns steps ``(kind, i, j)``: ``SAVE`` copies sample ``i`` to scratch,
    ``FROM_BATCH`` writes ``i`` from partner ``j`` in the batch, ``FROM_SCRATCH``
    writes ``i`` from the scratch copy of ``j``. Only ``active`` samples are written.
    Works for any partner map (not only permutations): the writes are Kahn's
    topological order of "j is written after all its readers", and what is left
    once no sample is free is a set of disjoint cycles, each broken by one save.
    """
    n = len(index)
    writes = [bool(active[i]) and index[i] != i for i in range(n)]
    pending = [0] * n
    for i in range(n):
        if writes[i]:
            pending[index[i]] += 1
    ready = [i for i in range(n) if writes[i] and pending[i] == 0]
    done = [False] * n
    steps: list[tuple[int, int, int]] = []
    saved = -1
    remaining = sum(writes)
    cursor = 0
    while remaining:
        if not ready:  # only cycles are left: save one member, then unroll its cycle
            while not writes[cursor] or done[cursor]:
                cursor += 1
            saved = cursor
            steps.append((SAVE, saved, saved))
            ready.append(saved)
        i = ready.pop()
        j = index[i]
        steps.append((FROM_SCRATCH if j == saved and done[j] else FROM_BATCH, i, j))
        done[i] = True
        remaining -= 1
        if writes[j]:
            pending[j] -= 1
            if pending[j] == 0 and not done[j] and j != saved:
                ready.append(j)
    return steps


def apply_rowwise(
    x: torch.Tensor,
    index: Sequence[int],
    active: Sequence[bool],
    write: Callable[[torch.Tensor, int, torch.Tensor], None],
    *,
    inplace: bool,
) -> torch.Tensor:
    """Run ``write(dst_row, i, partner_row)`` for every active sample, one slice at a time.

    ``partner_row`` always holds the partner's original value. In place, the
    schedule above guarantees it; otherwise the output is a fresh tensor (same
    memory format) and inactive rows are copied over.
    """
    if not inplace:
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            out[i].copy_(x[i])
            if active[i] and index[i] != i:
                write(out[i], i, x[index[i]])
        return out
    scratch: torch.Tensor | None = None
    for kind, i, j in inplace_schedule(index, active):
        if kind == SAVE:
            scratch = x[i].clone() if scratch is None else scratch.copy_(x[i])
        else:
            write(x[i], i, scratch if kind == FROM_SCRATCH else x[j])
    return x


def where_into(mask: torch.Tensor, partner: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x[mask] = partner[mask]`` in place, as one select written into ``x``.

    Traced, ``where(..., out=x)`` is not captured for views of any layout; a select
    copied into ``x`` is what functionalisation turns into the same single pass.
    """
    if torch.compiler.is_compiling():
        return x.copy_(torch.where(mask, partner, x))
    return torch.where(mask, partner, x, out=x)


def row_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a ``(B,)`` tensor as ``(B, 1, ..., 1)`` to broadcast against ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def unchanged(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """The result of a call that mixes nothing: ``x`` itself in place, else a copy (values bit-exact, inf kept)."""
    return x if inplace else x.clone()


def keep_unmixed(mixed: torch.Tensor, x: torch.Tensor, plan: MixPlan, *, inplace: bool) -> torch.Tensor:
    """Write ``mixed`` over ``x`` (or return it, in ``x``'s layout) with the plan's unmixed rows bit-exact from ``x``.

    Arithmetic on a row with lam == 1 still touches it (``inf + 0 * -inf`` is NaN), so
    unmixed rows are selected, not computed; when the host knows every row is mixed
    this pass is skipped.
    """
    if not plan.nothing_to_keep:
        mixed = torch.where(row_view(plan.mixed, x), mixed, x)
    return x.copy_(mixed) if inplace else in_layout_of(x, mixed)


_LAYOUTS = (torch.contiguous_format, torch.channels_last, torch.channels_last_3d)


def in_layout_of(x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """``result`` (``x``'s shape) in ``x``'s memory layout: itself if it has it, else a copy into it.

    An operation that reads a gathered (contiguous) partner before ``x`` gives its
    result the partner's layout; a model trained channels_last expects its batch back
    channels_last. Only the standard layouts are matched: any other ``x`` (a slice)
    leaves ``result`` as it is.
    """
    layout = next((layout for layout in _LAYOUTS if x.is_contiguous(memory_format=layout)), None)
    if layout is None or result.is_contiguous(memory_format=layout):
        return result
    return result.contiguous(memory_format=layout)


def partner_weights(lam: torch.Tensor, dtype: torch.dtype) -> list[float]:
    """``1 - lam`` rounded to ``dtype``, as host floats: the partner's weight a blend of that dtype applies."""
    return torch.rsub(lam, 1.0).to(dtype).tolist()


def applied_lam(lam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The label weight a blend of ``x`` by ``1 - lam`` really applies: the weight is rounded to ``x``'s dtype.

    In bfloat16 or float16 the partner's weight ``1 - lam`` is rounded before the blend
    (up to 0.4% off in bfloat16), so the label follows the rounded weight; float32 and
    wider keep ``lam``.
    """
    if x.dtype in (torch.bfloat16, torch.float16):
        return 1.0 - (1.0 - lam).to(x.dtype).to(lam.dtype)
    return lam


def lerp_rows(x: torch.Tensor, plan: MixPlan, *, inplace: bool, vectorized: bool) -> torch.Tensor:
    """Return ``lam[i] * x[i] + (1 - lam[i]) * x[index[i]]`` for every sample i, ``lam`` being ``plan.lam``.

    ``plan`` is on ``x``'s device; samples the plan leaves unmixed keep their exact
    values. The vectorised path is tensor ops only; traced, it reads none of the plan's
    host flags, so a step is one graph for every plan, mixed or not (the same values:
    unmixed rows are selected, not computed).
    """
    lam = plan.lam
    if plan.nothing_to_mix:
        return unchanged(x, inplace)
    if vectorized:
        partner = x.index_select(0, plan.index)
        if _host_weight(x, plan):  # one lam for the batch, every sample mixed: a host scalar weight
            weight = 1.0 - float(plan.on_host.lam.numpy()[0])
            return x.lerp_(partner, weight) if inplace else torch.lerp(x, partner, weight)
        weight = row_view(torch.rsub(lam, 1.0).to(x.dtype), x)  # torch.rsub: no Python operator wrapper
        if plan.nothing_to_keep:  # one fused pass, no selection of unmixed rows
            return x.lerp_(partner, weight) if inplace else torch.lerp(x, partner, weight)
        return keep_unmixed(torch.lerp(x, partner, weight), x, plan, inplace=inplace)
    return apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), lerp_writer(lam, x.dtype), inplace=inplace)


def _host_weight(x: torch.Tensor, plan: MixPlan) -> bool:
    """Whether a blend may take its weight as a host scalar: no weight tensor built on the device.

    For one lam per batch with every sample mixed, in an eager call (a traced step takes
    the tensor, or each lam would be a new graph), in float32 or float64, where the
    kernel rounds a scalar weight exactly as a weight tensor of ``x``'s dtype (bfloat16 and
    float16 round the tensor to their own precision first: see :func:`applied_lam`).
    """
    return (
        plan.nothing_to_keep  # False while traced: first, so a traced call reads no other host fact of the plan
        and not plan.per_sample
        and plan.on_host.index.is_cpu  # a plan built by hand on a device has no CPU copy to read
        and x.dtype in (torch.float32, torch.float64)
    )


def lerp_writer(lam: torch.Tensor, dtype: torch.dtype) -> Callable[[torch.Tensor, int, torch.Tensor], None]:
    """The CPU loop's write of a blend: ``dst = lerp(dst, partner, 1 - lam[i])`` (``lam`` on the host).

    The weights are rounded to the samples' ``dtype`` first, as the vectorised blend rounds its
    weight tensor, so both paths apply (and label) the same weight: :func:`applied_lam`.
    """
    weights = partner_weights(lam, dtype)

    def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
        dst.lerp_(partner, weights[i])

    return write


def paste_boxes(
    x: torch.Tensor,
    plan: MixPlan,
    boxes: torch.Tensor,
    *,
    inplace: bool,
    vectorized: bool,
    rows: torch.Tensor | None = None,
    cols: torch.Tensor | None = None,
) -> torch.Tensor:
    """Paste each partner's box ``x[index[i], ..., y1:y2, x1:x2]`` into each mixed sample i.

    ``boxes`` is ``(B, 4)`` long ``[y1, y2, x1, x2]`` on the last two dimensions. The
    vectorised path selects by per-sample ``rows`` ``(B, H)`` and ``cols`` ``(B, W)``
    bool masks of each box (no rows for unmixed samples), static shapes whatever the box.
    """
    if plan.nothing_to_mix:
        return unchanged(x, inplace)
    if vectorized:
        mask = rows.unsqueeze(2) & cols.unsqueeze(1)
        where = mask.view(x.shape[0], *([1] * (x.dim() - 3)), *mask.shape[1:])
        partner = x.index_select(0, plan.index)
        # out of place, x comes first: torch gives the result the layout of the first operand that decides it,
        # and a gathered partner is contiguous whatever x's layout (channels_last would be lost)
        return where_into(where, partner, x) if inplace else torch.where(~where, x, partner)
    return apply_rowwise(x, plan.index.tolist(), plan.mixed.tolist(), box_writer(boxes), inplace=inplace)


def paste_window(x: torch.Tensor, plan: MixPlan, box: Sequence[int], *, inplace: bool) -> torch.Tensor:
    """Paste one box ``[y1, y2, x1, x2)`` (host ints) of each partner into every sample: only the box is moved.

    One gather of the partners' windows and one copy into ``x``'s window (samples the plan
    leaves unmixed are their own partner, so their window is copied onto itself). Eager
    only: host ints as slice bounds would make a traced step recompile for every box,
    so a traced step takes :func:`paste_boxes` with masks.
    """
    if plan.nothing_to_mix:
        return unchanged(x, inplace)
    y1, y2, x1, x2 = box
    out = x if inplace else x.clone()
    window = out[..., y1:y2, x1:x2]
    window.copy_(window.index_select(0, plan.index))
    return out


def box_writer(boxes: torch.Tensor) -> Callable[[torch.Tensor, int, torch.Tensor], None]:
    """The CPU loop's write of a box: ``dst[..., y1:y2, x1:x2] = partner[..., y1:y2, x1:x2]`` (host boxes)."""
    box_list = boxes.tolist()

    def write(dst: torch.Tensor, i: int, partner: torch.Tensor) -> None:
        y1, y2, x1, x2 = box_list[i]
        dst[..., y1:y2, x1:x2].copy_(partner[..., y1:y2, x1:x2])

    return write
