"""The hidden-state side of the Hugging Face wrapper: where the hooks sit, and the draw of a hidden-state step.

``wrap(model, HiddenMix(...))`` hooks the encoder (or decoder) layers and the head. A
frozen :class:`~multimix.hf.hooks.Site` describes them, so the hooks read the site and
the step, never the wrapper; this mixin of :class:`~multimix.hf.wrapper.MixupModel`
finds the site, keeps it hooked and draws each step's plan and mixing point.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from multimix.hf.adapters import check_token_labels
from multimix.hf.hooks import LAST_TOKEN_HEAD, Site, Step, find_encoder_layers, mask_arguments, register, unregister
from multimix.mixer import Mixer
from multimix.target_checks import check_targets
from multimix.text import POOLED

__all__: list[str] = []


class HiddenStateSite:
    """Mixin of the wrapper for :class:`~multimix.text.HiddenMix`: the hooked site and the step's draw."""

    def _setup_hidden(self, num_labels: int, name: str, mixer_kwargs: dict[str, Any]) -> None:
        """Check the mixing points against the model and hook its layers (and head, for ``"pooled"``)."""
        self.mixer = Mixer(self.adapter, num_labels, multi_label=self.multi_label, **mixer_kwargs)
        layers = find_encoder_layers(self._multimix_base)
        self.mix_points = self.adapter.resolve_layers(len(layers), name)
        classifier = getattr(self, "classifier", None)
        has_classifier = isinstance(classifier, nn.Module)
        if POOLED in self.mix_points and self.token_labels:
            raise ValueError(
                f"{name} labels every token and has no pooled representation; mix at encoder layers, "
                "e.g. layers=(2,)"
            )
        if POOLED in self.mix_points and not (has_classifier or self.pools_last_token):
            raise ValueError(
                f"{name} has no .classifier module (nor a .score head with config.pad_token_id set) to mix "
                "the pooled representation at; choose layers, e.g. layers=(2,)"
            )
        self.pools_with_mask = getattr(self.config, "classifier_pooling", None) == "mean"
        self._multimix_site = self._find_site()
        register(self._multimix_site, self._multimix_slot)
        self._multimix_hooked = True

    @property
    def encoder_layers(self) -> tuple[nn.Module, ...]:
        """The layers the hidden-state hooks sit on."""
        return self._multimix_site.layers

    def _find_site(self) -> Site:
        """Where the hooks go: the layers and the head as they are now (PEFT may wrap the head after wrap)."""
        # Layers and heads in a frozen Site, not registered children: they stay in the state dict once,
        # under the base model; the hooks read the Site and the step, never the wrapper.
        layers = find_encoder_layers(self._multimix_base)
        classifier = getattr(self, "classifier", None)
        return Site(
            adapter=self.adapter, layers=tuple(layers), mask_arguments=tuple(mask_arguments(m) for m in layers),
            classifier=classifier if isinstance(classifier, nn.Module) else None,
            last_token_head=getattr(self, LAST_TOKEN_HEAD) if self.pools_last_token else None,
            pad_token_id=getattr(self.config, "pad_token_id", None), pools_with_mask=self.pools_with_mask,
        )  # fmt: skip

    def _current_site(self) -> Site:
        """The Site, hooked again after :func:`unwrap` took the hooks off, and moved to the model's current head if
        a library replaced it since (PEFT's modules_to_save)."""
        site = self._multimix_site
        head = site.last_token_head if site.last_token_head is not None else site.classifier
        name = LAST_TOKEN_HEAD if site.last_token_head is not None else "classifier"
        if head is not None and getattr(self, name, head) is not head:
            unregister(site, self._multimix_slot)
            site = self._multimix_site = self._find_site()
            self._multimix_hooked = False
        if not self._multimix_hooked:
            register(site, self._multimix_slot)
            self._multimix_hooked = True
        return site

    def release(self) -> nn.Module:
        """Take the hooks off the base model's layers and return it (``multimix.unwrap``); a later train step
        hooks them again."""
        if self._multimix_site is not None:
            unregister(self._multimix_site, self._multimix_slot)
            self._multimix_hooked = False
        base = self._multimix_base
        base.training = self.training  # its submodules (shared) follow the view's .train()/.eval(): so does it
        return base

    def _draw_hidden_step(self, inputs: dict[str, Any], labels: torch.Tensor, batch: torch.Tensor) -> Step:
        """Check the labels, draw the plan and the mixing point, and place the plan on the batch's device."""
        mixer = self.mixer
        if self.token_labels:
            check_token_labels(labels, batch, mixer.num_classes, mixer.ignore_index, mixer.validate)
        else:
            check_targets(labels, mixer.num_classes, batch.shape[0], multi_label=self.multi_label,
                          validate=mixer.validate)  # fmt: skip
        input_ids = inputs.get("input_ids")
        if POOLED in self.mix_points and self.pools_last_token and input_ids is None:  # refused before any draw
            raise ValueError(
                f"{type(self._multimix_base).__name__} pools at each row's last token, found from input_ids; "
                "pass input_ids to mix at layers='pooled', or mix at encoder layers only"
            )
        self._current_site()
        drawn = mixer.draw(batch.shape[0])
        point = self.adapter.choose(self.mix_points, mixer.generator)
        mask = inputs.get("attention_mask")
        if mask is not None and self.pools_with_mask:
            mask = mask.clone()  # the hooks unite this copy, never the caller's
            inputs = {**inputs, "attention_mask": mask}
        placed = drawn.to(batch.device)[0]
        return Step(placed, point, attention_mask=mask, input_ids=input_ids, inputs=inputs)
