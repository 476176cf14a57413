"""The Mixer's epoch schedule (``off_epoch``, ``alpha_schedule``, ``enabled``), shared with DataLoader workers, and
its resume state.

A Mixer used as ``collate_fn`` runs in every worker on a copy made when the worker
started; persistent workers keep theirs across epochs. The main process publishes
the epoch and ``enabled`` flag into a tiny shared-memory tensor that each copy reads
before drawing, so ``set_epoch`` reaches every worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import get_worker_info

from multimix._checks import check_alpha, check_generator_state
from multimix.adapter import Adapter
from multimix.settings import check_alpha_schedule, check_off_epoch

__all__: list[str] = []


class Schedule:
    """What :meth:`multimix.Mixer.set_epoch` changes, and its copy in shared memory for DataLoader workers."""

    def __init__(
        self, adapters: Sequence[Adapter], off_epoch: int | None, alpha_schedule: Callable[[int], float] | None
    ) -> None:
        self.adapters = list(adapters)
        self.off_epoch = off_epoch
        self.alpha_schedule = alpha_schedule
        self.base_alphas = [adapter.alpha for adapter in self.adapters]
        self.enabled = True
        self.epoch: int | None = None
        # [epoch or -1, enabled] as the main process last set them
        self.shared = torch.tensor([-1, 1], dtype=torch.long).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Apply ``off_epoch`` and ``alpha_schedule`` for ``epoch``; in the main process, publish it to workers.

        Each setting the Mixer was not given leaves its part alone: without ``alpha_schedule``
        an alpha set by hand stays, without ``off_epoch`` so does ``enabled``.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        if self.alpha_schedule is not None:
            value = self.alpha_schedule(epoch)
            try:
                factor = float(value)
            except (TypeError, ValueError):
                raise TypeError(
                    f"alpha_schedule({epoch}) must return a number, the factor of each adapter's initial alpha, "
                    f"got {value!r:.80}"
                ) from None
            alphas = [check_alpha(base * factor, f"alpha_schedule({epoch}) * alpha") for base in self.base_alphas]
            for adapter, alpha in zip(self.adapters, alphas, strict=True):
                adapter.alpha = alpha
        self.epoch = epoch
        if self.off_epoch is not None:
            self.enabled = epoch < self.off_epoch
        if get_worker_info() is None:
            self.publish()

    def state_dict(self) -> dict[str, Any]:
        """``enabled``, the epoch and each adapter's current alpha: the schedule's part of a resume."""
        return {"enabled": self.enabled, "epoch": self.epoch, "alphas": [a.alpha for a in self.adapters]}

    def checked_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The schedule's part of ``state`` after checking it, changing nothing (a load checks all before it writes)."""
        alphas = state["alphas"]
        if not isinstance(alphas, Sequence) or len(alphas) != len(self.adapters):
            raise ValueError(f"state['alphas'] must hold one alpha per adapter ({len(self.adapters)}), got {alphas!r}")
        alphas = [check_alpha(alpha, f"state['alphas'][{i}]") for i, alpha in enumerate(alphas)]
        if not isinstance(state["enabled"], bool):
            raise TypeError(f"state['enabled'] must be a bool, got {state['enabled']!r}")
        epoch = state["epoch"]
        if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0):
            raise ValueError(f"state['epoch'] must be an int >= 0 or None, got {epoch!r}")
        return {"enabled": state["enabled"], "epoch": epoch, "alphas": alphas}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Apply a state from :meth:`checked_state` and publish it to DataLoader workers."""
        for adapter, alpha in zip(self.adapters, state["alphas"], strict=True):
            adapter.alpha = alpha
        self.enabled = state["enabled"]
        self.epoch = state["epoch"]
        self.publish()

    def publish(self) -> None:
        """Share the epoch and ``enabled`` with DataLoader workers."""
        self.shared.copy_(torch.tensor([-1 if self.epoch is None else self.epoch, int(self.enabled)]))

    def follow_main_process(self) -> None:
        """In a worker: apply the epoch and ``enabled`` that the main process set after this copy was made."""
        epoch, enabled = self.shared.tolist()  # a CPU tensor in shared memory: no device involved
        if epoch >= 0 and epoch != self.epoch:
            self.set_epoch(epoch)
        self.enabled = bool(enabled)


class Scheduled:
    """The Mixer's epochs and resume (a base class: it reads the Mixer's generator and :class:`Schedule`)."""

    generator: torch.Generator
    _schedule: Schedule

    @property
    def enabled(self) -> bool:
        """Whether calls mix; when False they only turn targets into (smoothed) soft rows."""
        return self._schedule.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"enabled must be a bool, got {value!r}")
        self._schedule.enabled = value
        self._schedule.publish()

    @property
    def off_epoch(self) -> int | None:
        """From this epoch on, :meth:`set_epoch` switches mixing off (timm's ``mixup_off_epoch``); None: never."""
        return self._schedule.off_epoch

    @off_epoch.setter
    def off_epoch(self, value: int | None) -> None:
        self._schedule.off_epoch = check_off_epoch(value)

    @property
    def alpha_schedule(self) -> Callable[[int], float] | None:
        """``epoch -> factor``: :meth:`set_epoch` sets each adapter's alpha to its initial alpha times the factor."""
        return self._schedule.alpha_schedule

    @alpha_schedule.setter
    def alpha_schedule(self, value: Callable[[int], float] | None) -> None:
        self._schedule.alpha_schedule = check_alpha_schedule(value)

    def set_epoch(self, epoch: int) -> None:
        """Apply ``off_epoch`` and ``alpha_schedule`` for ``epoch``; call it at each epoch start."""
        self._schedule.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Generator state and schedule, so a resumed run draws the same plans."""
        return {"generator": self.generator.get_state(), **self._schedule.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; everything is checked before anything changes."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be the dict Mixer.state_dict() returned, got {type(state).__name__}")
        missing = {"generator", "enabled", "epoch", "alphas"} - set(state)
        if missing:
            raise ValueError(f"state is missing keys {sorted(missing)}; pass what Mixer.state_dict() returned")
        schedule = self._schedule.checked_state(state)
        generator_state = check_generator_state(state["generator"], "state['generator']")
        self.generator.set_state(generator_state)
        self._schedule.load_state_dict(schedule)
