"""Argument checks shared by every public entry point.

Each helper raises ``ValueError`` or ``TypeError`` with a message that names the
argument, what was expected, what was received and, where there is one, the fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import torch

MIN_ALPHA = 1e-300  # log(U) / alpha must stay finite in float64 for every uniform U >= 2**-60


def check_alpha(alpha: object, name: str = "alpha") -> float:
    """Return ``alpha`` as a float after checking it parametrises Beta(alpha, alpha)."""
    if isinstance(alpha, bool) or not isinstance(alpha, Real):
        raise TypeError(f"{name} must be a positive real number, got {type(alpha).__name__} {alpha!r}")
    value = float(alpha)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{name} must be finite and > 0 (lam ~ Beta({name}, {name})), got {value!r}; "
            f"use e.g. {name}=1.0, or switch mixing off with Mixer(..., p=0.0)"
        )
    if value < MIN_ALPHA:
        raise ValueError(
            f"{name}={value!r} is below {MIN_ALPHA:g}, where the Beta({name}, {name}) draws overflow and lam would be "
            f"NaN; any {name} below 1e-3 already gives lam of 0 or 1, so use e.g. {name}=1e-3"
        )
    return value


def check_probability(p: object, name: str) -> float:
    """Return ``p`` as a float after checking it lies in [0, 1]."""
    if isinstance(p, bool) or not isinstance(p, Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(p).__name__} {p!r}")
    value = float(p)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` as an int after checking it is an integer >= 1 (NumPy's integers too)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def check_flag(value: object, name: str) -> bool:
    """Return ``value`` after checking it is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_tensor(x: object, name: str) -> torch.Tensor:
    """Return ``x`` after checking it is a tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_float_tensor(x: object, name: str, min_ndim: int, layout: str) -> torch.Tensor:
    """Check ``x`` is a non-empty floating tensor with at least ``min_ndim`` dimensions.

    ``layout`` spells the expected shape for the message, e.g. ``"(B, C, H, W)"``.
    """
    x = check_tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor {layout}, got dtype {x.dtype}; convert with .float()")
    if x.dim() < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions {layout}, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); mix batches of at least one sample")
    return x


def check_generator(generator: object) -> torch.Generator:
    """Check ``generator`` is a CPU ``torch.Generator`` (plans are tiny and drawn on the CPU)."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(
            f"generator must live on the CPU (the plan is drawn there and moved to the batch's device), "
            f"got a generator on {generator.device}; pass torch.Generator() or seed="
        )
    return generator


def seeded_generator(seed: object, generator: object) -> torch.Generator:
    """A CPU generator from ``seed=`` or ``generator=`` (at most one of them); with neither, seeded from torch's
    global RNG, so ``torch.manual_seed`` fixes it."""
    if seed is not None and generator is not None:
        raise ValueError("pass seed= or generator=, not both")
    if generator is not None:
        return check_generator(generator)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if not -(2**63) <= seed < 2**64:
        raise ValueError(f"seed must lie in [-2**63, 2**64), the range of torch.Generator.manual_seed, got {seed}")
    return torch.Generator().manual_seed(seed)


def check_generator_state(state: object, name: str) -> torch.Tensor:
    """Return a CPU ``torch.Generator`` state (the uint8 tensor of ``get_state()``) after checking it loads."""
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
        raise TypeError(f"{name} must be the uint8 tensor of Generator.get_state(), got {state!r:.80}")
    state = state.cpu()
    try:
        torch.Generator().set_state(state)
    except RuntimeError as error:
        raise ValueError(f"{name} is not a CPU generator state: {error}") from None
    return state


def reads_values(x: torch.Tensor, validate: bool) -> bool:
    """Whether value checks on ``x`` may read its data: always on the CPU, on accelerators only if asked.

    Reading a device tensor back (``int(t.max())``, ``bool(t.all())``) stalls the CPU until
    the device drains; ``validate=True`` accepts that cost for debugging. Under
    ``torch.compile`` values are never read: a read would split the graph.
    """
    return (validate or x.device.type == "cpu") and not torch.compiler.is_compiling()


def device_assert(condition: torch.Tensor, message: str) -> None:
    """Check a one-element bool ``condition`` on its device without waiting for it.

    On CUDA a failure surfaces as a device-side assert at a later kernel launch (and
    ends the CUDA context, as an out-of-range index would); on the CPU it raises now.
    """
    if condition.device.type != "meta":
        torch._assert_async(condition, message)


def check_writable(x: torch.Tensor, name: str) -> None:
    """Refuse in-place mixing of tensors whose writes would fail or leak into other samples.

    Called before anything is drawn or written, so a refusal changes nothing. Memory
    that is read-only (``np.load(..., mmap_mode="r")``) cannot be told from its tensor:
    mix it with ``inplace=False``.
    """
    fix = f"pass {name}.clone(), or build the adapter with inplace=False"
    if x.is_inference() and not torch.is_inference_mode_enabled():
        raise ValueError(f"{name} was made under torch.inference_mode() and cannot be mixed in place; {fix}")
    if _samples_may_overlap(x):
        raise ValueError(
            f"{name} has samples that share memory (an expand()ed, stride-0 or unfold()ed tensor, strides "
            f"{tuple(x.stride())}); writing one sample would change others, so it is not mixed in place; {fix}"
        )


def _samples_may_overlap(x: torch.Tensor) -> bool:
    """Whether two elements of ``x`` may share memory, from its strides alone (no data read).

    Sorted by stride, each dimension must step past everything the smaller ones span;
    slices, permutations and channels-last pass, ``expand`` and ``unfold`` windows do not.
    """
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):  # the common layouts, at once
        return False
    spanned = 1
    for stride, size in sorted((st, sz) for st, sz in zip(x.stride(), x.shape, strict=True) if sz > 1):
        if stride < spanned:
            return True
        spanned += stride * (size - 1)
    return False


def check_weights(weights: Sequence[float] | None, count: int) -> list[float] | None:
    """``weights`` after checking they give each of ``count`` adapters a finite share >= 0, with a positive sum."""
    if weights is None:
        return None
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(f"weights must be a sequence of {count} numbers (one per alpha), got {weights!r}")
    values = [float(w) if isinstance(w, Real) and not isinstance(w, bool) else math.nan for w in weights]
    if len(values) != count or not all(math.isfinite(w) and w >= 0 for w in values) or sum(values) <= 0:
        raise ValueError(
            f"weights must give each of the {count} alphas a finite weight >= 0, with a positive sum; got {weights!r}"
        )
    return values

