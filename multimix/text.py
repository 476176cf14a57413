"""Text: hidden-state mixup (manifold mixup / TMix) at an encoder layer, in one forward pass.

``HiddenMix`` says *where* to mix inside an encoder: the embeddings, the output of
encoder layer k (one drawn per step from ``layers``), or the pooled representation
that enters the classifier. ``multimix.wrap`` applies it to an unmodified Hugging
Face model with hooks on its layers; on its own, a ``Mixer`` with ``HiddenMix`` mixes any
hidden-state tensor ``(B, H)`` or ``(B, T, H)`` out of place, keeping autograd.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

from multimix._kernels import applied_lam, lerp_rows
from multimix.adapter import Adapter
from multimix.lengths import Validity
from multimix.plan import MixPlan

__all__ = ["EMBEDDINGS", "POOLED", "HiddenMix"]

EMBEDDINGS = "embeddings"
POOLED = "pooled"
LayerSpec = int | str
_MODULE_PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


class HiddenMix(Adapter):
    """Mix hidden states ``lam * h + (1 - lam) * h[index]`` where ``layers`` says.

    Args:
        alpha: lam ~ Beta(alpha, alpha).
        layers: where to mix; one is drawn per step. An int k is the output of
            encoder layer k, counted from 1 (``(7, 9, 12)`` is TMix's choice for
            BERT-base); 0 or ``"embeddings"`` is the embedding output (the input of
            layer 1); ``"pooled"`` is the input of the classifier. None: every layer
            output from the middle of the encoder to its top. For any other
            ``nn.Module`` (:func:`multimix.manifold.wrap_module`), name submodules by
            their dotted path (``"layer2"``, ``"blocks.3"``; 0 is the input).

    Hidden states keep their autograd history, so they are never mixed in place.

    Example:
        >>> import multimix
        >>> hidden = torch.randn(4, 7, 16, requires_grad=True)
        >>> out = multimix.Mixer(HiddenMix(1.0), num_classes=2, seed=0)(hidden, torch.tensor([0, 1, 0, 1]))
        >>> out.inputs.requires_grad, out.inputs is hidden
        (True, False)
    """

    min_ndim = 2
    max_ndim = 3
    layout = "(B, H) or (B, T, H)"

    def __init__(self, alpha: float = 1.0, *, layers: Sequence[LayerSpec] | LayerSpec | None = None) -> None:
        super().__init__(alpha, inplace=False)
        if isinstance(layers, (int, str)):
            layers = (layers,)
        if layers is not None:
            layers = tuple(layers)
            if not layers:
                raise ValueError("layers is empty; name at least one place to mix, e.g. layers=(6,)")
            for layer in layers:
                valid_int = isinstance(layer, int) and not isinstance(layer, bool) and layer >= 0
                if not valid_int and not (isinstance(layer, str) and _MODULE_PATH.fullmatch(layer)):
                    raise ValueError(
                        f"layers entries must be ints >= 0 (encoder layer outputs, counted from 1), "
                        f"'embeddings', 'pooled' or submodule paths such as 'layer2' or 'blocks.3', got {layer!r}"
                    )
        self.layers = layers

    def resolve_layers(self, depth: int, model_name: str = "the model") -> tuple[LayerSpec, ...]:
        """The mixing points for an encoder of ``depth`` layers, checked against it."""
        if self.layers is None:
            return tuple(range(math.ceil(depth / 2), depth + 1))
        resolved = []
        for layer in self.layers:
            if layer == EMBEDDINGS:
                layer = 0
            if isinstance(layer, str) and layer != POOLED:
                raise ValueError(
                    f"layers holds the submodule path {layer!r}, but {model_name} is mixed by encoder layer number; "
                    f"use 0 (embeddings) to {depth}, or 'pooled'"
                )
            if isinstance(layer, int) and layer > depth:
                raise ValueError(
                    f"layers holds {layer}, but {model_name} has {depth} encoder layers; "
                    f"use 0 (embeddings) to {depth}, or 'pooled'"
                )
            resolved.append(layer)
        return tuple(resolved)

    def choose(self, layers: Sequence[LayerSpec], generator: torch.Generator) -> LayerSpec:
        """Draw this step's mixing point (after the plan, from the same generator)."""
        if len(layers) == 1:
            return layers[0]
        return layers[int(torch.randint(len(layers), (1,), generator=generator))]

    def apply(
        self, x: torch.Tensor, plan: MixPlan, region: None = None, valid: Validity | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # traced inside a wrapped model, one graph serves every plan: it already has one per mixing point
        return lerp_rows(x, plan, inplace=False, vectorized=True), applied_lam(plan.lam, x)

    def __repr__(self) -> str:
        return f"HiddenMix(alpha={self.alpha!r}, layers={self.layers!r})"
