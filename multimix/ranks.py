"""Every process's mixer state in one checkpoint object, for ``accelerate`` and hand-written loops.

``accelerator.register_for_checkpointing(mixer)`` is not enough on several processes:
accelerate calls ``state_dict()`` on every rank but writes only the main process's result
(``custom_checkpoint_{i}.pkl``), and on ``load_state`` every rank loads that same file, so
each rank ends up with rank 0's plan generator and all ranks draw the same plans. Register
``RankStates(mixer)`` instead: its state holds every rank's mixer state, and each rank
restores its own (the design of :class:`multimix.lightning.MixupCallback`'s checkpoints).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

from multimix.mixer import Mixer
from multimix.seeding import rank_seed

__all__ = ["RankStates", "describe", "gather_states", "rank_and_world", "warn_world_change"]


class RankStates:
    """Checkpoint the mixer of every process, each rank restoring its own plan generator.

    Build it once the process group is up (after ``accelerate.Accelerator()`` or
    ``torch.distributed.init_process_group``): process r > 0 then reseeds the mixer's
    generator from :func:`multimix.seeding.rank_seed` ``(mixer.seed, r)``, so ranks draw
    different plans, reproducibly; rank 0 keeps the mixer's own stream, so one process
    draws exactly what the Mixer draws alone.

    :meth:`state_dict` gathers every rank's :meth:`Mixer.state_dict` over the process
    group (it must run on every rank, as ``accelerator.save_state`` does) into
    ``{"world_size": W, "ranks": {rank: state}}``; :meth:`load_state_dict` gives each rank
    its own. If the world size changed, ranks found in the checkpoint restore theirs, new
    ranks take the saved schedule (epoch, alphas, on/off) with a fresh generator from
    ``rank_seed(mixer.seed, rank)``, the states of ranks that no longer exist are dropped,
    and a warning says so.

    Args:
        mixer: the :class:`multimix.Mixer` whose plans each rank draws.

    Example:
        >>> import multimix
        >>> from multimix.image import Mixup
        >>> mixer = multimix.Mixer(Mixup(1.0), num_classes=10, seed=0)
        >>> states = RankStates(mixer)  # accelerator.register_for_checkpointing(states)
        >>> saved = states.state_dict()
        >>> saved["world_size"], list(saved["ranks"])
        (1, [0])
        >>> before = mixer.draw(4).lam
        >>> states.load_state_dict(saved)
        >>> bool((mixer.draw(4).lam == before).all())
        True
    """

    def __init__(self, mixer: Mixer) -> None:
        if not isinstance(mixer, Mixer):
            raise TypeError(
                f"mixer must be a multimix.Mixer, got {type(mixer).__name__}; pass the Mixer itself, "
                f"e.g. RankStates(model.mixer) for a model made by multimix.wrap"
            )
        self.mixer = mixer
        self.rank, self.world_size = rank_and_world()
        if self.rank > 0:
            mixer.generator.manual_seed(rank_seed(mixer.seed, self.rank))

    def _check_group(self) -> tuple[int, int]:
        rank, world = rank_and_world()
        if (rank, world) != (self.rank, self.world_size):
            raise ValueError(
                f"RankStates was built as rank {self.rank} of {self.world_size} but runs as rank {rank} of {world}: "
                f"it was built before the process group started; build it after accelerate.Accelerator() "
                f"(or torch.distributed.init_process_group)"
            )
        return rank, world

    def state_dict(self) -> dict[str, Any]:
        """Every rank's mixer state, ``{"world_size": W, "ranks": {rank: Mixer.state_dict()}}``."""
        self._check_group()
        return gather_states(self.mixer)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore this rank's mixer state from what :meth:`state_dict` saved."""
        ranks, saved = check_rank_states(state_dict)
        rank, _ = self._check_group()
        warn_world_change("RankStates", ranks, saved, "start fresh streams")
        if rank in ranks:
            self.mixer.load_state_dict(ranks[rank])
        else:  # a new rank: the run's schedule, its own stream
            self.mixer.load_state_dict(ranks[0])
            self.mixer.generator.manual_seed(rank_seed(self.mixer.seed, rank))


def check_rank_states(state_dict: object, owner: str = "RankStates") -> tuple[Mapping[int, Any], int]:
    """The ranks' states and the saved world size of what ``owner.state_dict()`` returned, checked."""
    if not isinstance(state_dict, Mapping) or not isinstance(state_dict.get("ranks"), Mapping):
        if isinstance(state_dict, Mapping) and "generator" in state_dict:
            hint = "this is one Mixer.state_dict() (a bare mixer was checkpointed); load it with mixer.load_state_dict"
        else:
            hint = f"pass what {owner}.state_dict() returned"
        raise ValueError(
            f"state_dict must be a dict with a 'ranks' dict and 'world_size', got {describe(state_dict)}; {hint}"
        )
    ranks, saved = state_dict["ranks"], state_dict.get("world_size")
    if isinstance(saved, bool) or not isinstance(saved, int) or saved < 1:
        raise ValueError(f"state_dict['world_size'] must be an int >= 1, got {saved!r}")
    if set(ranks) != set(range(saved)):
        raise ValueError(
            f"state_dict['ranks'] must hold ranks 0..{saved - 1} (world_size={saved}), got {sorted(ranks, key=str)}; "
            f"pass what {owner}.state_dict() returned"
        )
    return ranks, saved


def warn_world_change(owner: str, ranks: Mapping[int, Any], saved: int, new_ranks: str) -> None:
    """On rank 0, warn that ``owner``'s states of ``saved`` ranks are restored on a different number of processes.

    ``new_ranks`` says what the ranks without a saved state do (e.g. "start fresh streams").
    """
    rank, world = rank_and_world()
    if saved == world or rank != 0:
        return
    notes = [f"ranks {sorted(r for r in ranks if r < world)} restore their plan generators"]
    if world > saved:
        notes.append(f"ranks {saved}..{world - 1} {new_ranks} from rank_seed(mixer.seed, rank)")
    else:
        notes.append(f"the states of ranks {world}..{saved - 1} are dropped")
    warnings.warn(
        f"{owner} saved with world size {saved} is restored on {world} processes: " + "; ".join(notes), stacklevel=3
    )


def gather_states(mixer: Mixer) -> dict[str, Any]:
    """Every rank's ``mixer.state_dict()`` as ``{"world_size": W, "ranks": {rank: state}}``.

    Under a process group this gathers over all ranks, so every rank must call it.
    """
    rank, world = rank_and_world()
    mine = (rank, mixer.state_dict())
    if world == 1:
        return {"world_size": 1, "ranks": dict([mine])}
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, mine)
    return {"world_size": world, "ranks": dict(gathered)}


def describe(value: object) -> str:
    """A short description of a state that is not what was expected, for error messages."""
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with keys {sorted(value, key=str)}"
    return type(value).__name__


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size (0, 1 without a process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
