"""What lets a Mixer run as a DataLoader ``collate_fn``: a plan generator of its own in each worker.

Each worker holds a copy of the mixer, made when the worker started (pickled for
spawned workers). Without reseeding, every copy would draw the same plans; the worker
seed comes from the copy's own stream and the DataLoader's generator, so runs stay
reproducible and processes whose mixers draw different streams (ranks) stay apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import default_collate, get_worker_info

from multimix.batch import MixedBatch
from multimix.schedule import Schedule

__all__: list[str] = []


class WorkerCopies:
    """The Mixer's DataLoader-worker side (a base class: it reseeds and follows the Mixer's own generator)."""

    generator: torch.Generator
    seed: int
    _schedule: Schedule
    _worker_seed: int | None

    def seed_worker(self) -> None:
        """In a DataLoader worker, reseed the plan generator once from the worker's seed, and follow the schedule.

        Each worker holds a copy of the mixer; without this they would all draw the
        same plans. The worker seed mixes the DataLoader's seed of the worker with a draw
        from the copy's own stream, which a rank's reseed (:class:`~multimix.ranks.RankStates`,
        the callbacks) or a restored state has set: seeded alike, ranks still draw apart, and
        a run is reproducible from the mixer's state and the DataLoader's seed. The copy also
        applies the epoch and ``enabled`` the main process set since (``set_epoch`` reaches
        persistent workers). A no-op in the main process.
        """
        info = get_worker_info()
        if info is None:
            return
        if self._worker_seed != info.seed:
            self._worker_seed = info.seed
            stream = int(torch.randint(0, 2**62, (), generator=self.generator))
            self.generator.manual_seed((stream * 1_000_003 + info.seed) % 2**63)
        self._schedule.follow_main_process()

    def collate(self, samples: Sequence[Any]) -> MixedBatch:
        """A ``DataLoader`` ``collate_fn``: stack with ``default_collate``, then mix in the worker.

        Samples are ``(input, target)`` pairs, or dicts for a dict-built mixer. Each
        worker reseeds its copy of the plan generator from the DataLoader's per-worker
        seed, so workers draw different plans and runs stay reproducible.
        """
        self.seed_worker()
        batch = default_collate(samples)
        if isinstance(batch, Mapping):
            return self(dict(batch))
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            raise ValueError("collate expects samples that are (input, target) pairs or dicts")
        return self(batch[0], batch[1])

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the generator as its state bytes, so the mixer reaches spawned DataLoader workers."""
        state = dict(self.__dict__)
        # bytes, not a tensor: a temporary tensor sent to a spawned worker by file descriptor could be
        # freed before the worker opens it
        state["generator"] = self.generator.get_state().numpy().tobytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        generator = torch.Generator()
        generator.set_state(torch.frombuffer(bytearray(state["generator"]), dtype=torch.uint8))
        self.__dict__.update({**state, "generator": generator})  # bypasses __setattr__: attributes restored as saved
