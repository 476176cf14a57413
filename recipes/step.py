"""The training step: host draws first, then tensor operations that ``torch.compile`` captures whole.

A recipe whose mixing is ``Mixer.plan_for`` + ``Mixer.apply`` hands the engine a
:class:`SplitLoss`: ``draw(batch)`` makes every random decision on the host (the mixing
plan, crop offsets, SpecAugment's bands) and places it on the batch's device;
``loss(module, batch, draws)`` is tensor operations only (augmentation, ``Mixer.apply``,
forward, loss). With ``compile`` on, :func:`build_step` compiles ``loss`` with autocast
inside it, so the forward and the backward (AOTAutograd) are each one graph, replayed as
CUDA graphs (``mode="reduce-overhead"``) when the step's shapes are static (the engine's
epochs hold whole batches only). A recipe that mixes inside the model (``multimix.wrap``:
manifold mixup, hidden-state mixing of text) hands a plain ``(module, batch) -> loss``;
compiling then wraps the module, as ``torch.compile(model)`` would.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["AUTO_MIN_STEPS", "SplitLoss", "build_step", "check_backend", "check_compile", "compile_wanted", "stand_in"]

# compile: auto compiles a CUDA run of at least this many optimizer steps: compiling PreAct ResNet-18's
# step takes about a minute, paid back over thousands of steps (benchmarks/recipe_throughput.py prints
# the break-even step count of a card).
AUTO_MIN_STEPS = 10_000
CHOICES = ("auto", "true", "false")
COMMON_BACKENDS = ("inductor", "aot_eager", "eager")  # always registered by torch.compile


@dataclass(frozen=True)
class SplitLoss:
    """A training loss in two phases; calling it runs both, eagerly: ``loss(module, batch, draw(batch))``.

    Attributes:
        draw: ``batch -> draws``: every random decision of the step, drawn on the host and placed
            on the batch's device (reads no device data, so it never waits for the device).
        loss: ``(module, batch, draws) -> loss``: tensor operations only, no branch on a tensor's
            value, so ``torch.compile(fullgraph=True)`` captures it.
        static_shapes: every batch has the same shapes (CUDA graphs replay them); False for
            batches padded to their longest sample (text).
    """

    draw: Callable[[Any], Any]
    loss: Callable[[nn.Module, Any, Any], torch.Tensor]
    static_shapes: bool = True

    def __call__(self, module: nn.Module, batch: Any) -> torch.Tensor:
        return self.loss(module, batch, self.draw(batch))


def stand_in(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised tensor of the traced inputs' shape, for ``Mixer.plan_for`` in a ``draw``.

    ``plan_for`` reads only the shape, dtype and device of its inputs; the real ones are made
    inside the compiled step (augmented and normalised images, log-mel spectrograms).
    """
    return torch.empty(shape, dtype=dtype, device=device)


def check_compile(value: Any) -> str:
    """``value`` of the ``compile`` key as ``auto``, ``true`` or ``false``, in any case (``--set compile=true``
    arrives as ``"True"``: the key's default is a string).

    Raises:
        ValueError: a value other than auto, true or false, naming the key and the fix.
    """
    choice = str(value).lower()
    if choice not in CHOICES:
        raise ValueError(f"compile must be one of {list(CHOICES)}, got {value!r}; e.g. --set compile=true")
    return choice


def compile_wanted(value: Any, device: torch.device, total_steps: int, split: bool) -> bool:
    """Whether the run compiles: ``true``, ``false``, or ``auto`` (a CUDA run of a :class:`SplitLoss`
    with at least :data:`AUTO_MIN_STEPS` optimizer steps: the CPU default stays eager).

    Raises:
        ValueError: a value other than auto, true or false (:func:`check_compile`).
    """
    choice = check_compile(value)
    if choice == "auto":
        return split and device.type == "cuda" and total_steps >= AUTO_MIN_STEPS
    return choice == "true"


def check_backend(name: Any) -> str:
    """``name`` if torch.compile knows the backend (``inductor``; ``aot_eager`` and ``eager`` to debug).

    The common names pass without asking torch (listing the backends imports ``torch._dynamo``,
    about a second, which resolving a configuration should not pay).
    """
    if name in COMMON_BACKENDS:
        return name
    known = torch.compiler.list_backends(exclude_tags=())
    if name not in known:
        raise ValueError(f"compile_backend must be one of {sorted(known)}, got {name!r}; "
                         "e.g. --set compile_backend=inductor")  # fmt: skip
    return name


def build_step(
    train_loss: Callable[[nn.Module, Any], torch.Tensor],
    module: nn.Module,
    device: torch.device,
    bf16: bool,
    *,
    compiled: bool = False,
    backend: str = "inductor",
    fullgraph: bool = False,
) -> tuple[Callable[[Any], torch.Tensor], str]:
    """``batch -> loss`` for the engine's loop (under autocast when ``bf16``), and a line saying how it runs.

    Compiled, a :class:`SplitLoss` becomes ``draw`` on the host then one compiled ``loss``
    (CUDA graphs with inductor on CUDA when its shapes are static); any other loss gets the
    compiled module. The engine passes ``fullgraph=False`` (a graph break costs speed, not
    the run); tests pass True to prove the step is captured whole.
    """
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    if not compiled:

        def eager(batch: Any) -> torch.Tensor:
            with autocast():
                return train_loss(module, batch)

        return eager, ""
    if not isinstance(train_loss, SplitLoss):
        wrapped = torch.compile(module, backend=backend)

        def with_compiled_module(batch: Any) -> torch.Tensor:
            with autocast():
                return train_loss(wrapped, batch)

        return with_compiled_module, f"compiled model ({backend}; this method mixes inside the model)"
    graphs = backend == "inductor" and device.type == "cuda" and train_loss.static_shapes
    mode = "reduce-overhead" if graphs else None

    def traced(batch: Any, draws: Any) -> torch.Tensor:
        with autocast():
            return train_loss.loss(module, batch, draws)

    step = torch.compile(traced, backend=backend, mode=mode, fullgraph=fullgraph)

    def compiled_step(batch: Any) -> torch.Tensor:
        draws = train_loss.draw(batch)
        if graphs:  # a new iteration: the last one's graph outputs (loss, gradients) have been consumed
            torch.compiler.cudagraph_mark_step_begin()
        return step(batch, draws)

    how = f"compiled step ({backend}{', CUDA graphs' if graphs else ''}): mixing, forward, loss and backward"
    return compiled_step, how
