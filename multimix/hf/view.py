"""The wrapped model as a view: a module of the base model's own class that shares all of its modules.

Made once per base class (a subclass named ``Mixup<Class>``), so the ``Trainer`` and
``save_pretrained`` see the base model's class, weights and forward signature.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

from torch import nn

__all__: list[str] = []

_HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks",
)  # fmt: skip
_CLASSES: dict[tuple[type, type], type] = {}


def _mixup_class(cls: type, wrapper: type[nn.Module]) -> type:
    """The subclass of ``wrapper`` and ``cls`` whose ``forward`` is the wrapper's: made once per class, named after
    it, with the base forward's signature."""
    if (cls, wrapper) not in _CLASSES:
        base_forward = cls.forward

        def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
            return wrapper.forward(self, *args, **kwargs)

        # A code object of its own per class: torch.compile counts its recompile limit per code object,
        # so wrapped models of several classes compiled in one process do not share one budget.
        forward.__code__ = forward.__code__.replace(co_name="forward")
        # The Trainer keeps the dataset columns the forward's signature names: the base model's.
        forward.__signature__ = inspect.signature(base_forward)
        forward.__doc__ = wrapper.forward.__doc__
        namespace = {"forward": forward, "__module__": wrapper.__module__,
                     "_multimix_positional": _positional(base_forward)}  # fmt: skip
        _CLASSES[cls, wrapper] = type(f"Mixup{cls.__name__}", (wrapper, cls), namespace)
    return _CLASSES[cls, wrapper]


def _positional(forward: Any) -> tuple[str, ...]:
    """Names of the base forward's positional parameters (after ``self``), for positional calls."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in inspect.signature(forward).parameters.values() if p.kind in kinds]
    return tuple(names[1:])


def model_view(model: nn.Module, wrapper: type[nn.Module]) -> Any:
    """A module of ``model``'s class and ``wrapper``'s sharing ``model``'s submodules, parameters, buffers and config.

    Nothing is copied but the top-level flags and hooks: the state dict, ``save_pretrained``
    and every parameter are the base model's own.
    """
    view = object.__new__(_mixup_class(type(model), wrapper))
    state = dict(model.__dict__)
    state.pop("forward", None)  # an instance-level forward (accelerate patches one in) would bypass the mixing
    for name in _HOOK_DICTS:
        if name in state:
            state[name] = OrderedDict(state[name])
    view.__dict__.update(state)
    object.__setattr__(view, "_multimix_base", model)  # not a registered child: no second copy in the state dict
    return view
