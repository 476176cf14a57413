"""Lightning integration: a callback that mixes each training batch before ``training_step``.

The only module importing ``lightning`` (install it with ``pip install "lightning>=2.2"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as error:  # pragma: no cover - exercised only without lightning
    raise ImportError('multimix.lightning needs Lightning: pip install "lightning>=2.2" (or multimix[dev])') from error

from multimix.mixer import MixedBatch, Mixer
from multimix.ranks import check_rank_states, gather_states, rank_and_world, warn_world_change
from multimix.seeding import rank_seed

__all__ = ["MixupCallback", "rank_seed"]


def _check_batch_keys(batch_keys: object, mixer: Mixer) -> tuple[Any, Any] | None:
    if batch_keys is None:
        return None
    if mixer.fields is not None:
        raise ValueError(
            f"batch_keys={batch_keys!r} but this Mixer mixes dict batches by its field names {mixer.fields} and "
            f"finds the targets under target_key={mixer.target_key!r}; leave batch_keys=None"
        )
    if isinstance(batch_keys, (str, bytes)) or not isinstance(batch_keys, Sequence) or len(batch_keys) != 2:
        raise TypeError(
            f"batch_keys must be a pair (inputs, targets) such as (0, 1) or ('image', 'label'), got {batch_keys!r}"
        )
    kinds = {type(k) for k in batch_keys}
    if kinds not in ({int}, {str}) or batch_keys[0] == batch_keys[1]:
        raise TypeError(
            f"batch_keys must be two different ints (list batches) or two different strs (dict batches), "
            f"got {batch_keys!r}"
        )
    return batch_keys[0], batch_keys[1]


class MixupCallback(pl.Callback):
    """Mix every training batch with ``mixer`` before the ``LightningModule`` sees it.

    In ``on_train_batch_start`` the callback mixes the batch and writes the mixed inputs
    and the soft ``(B, C)`` targets back into the batch object itself. Lightning's training
    loop hands that same object to ``training_step`` (``training_epoch_loop.advance`` calls
    the ``on_train_batch_start`` hooks, then builds the step's arguments from the same
    ``batch``), so the step reads mixed data; train with :func:`multimix.soft_cross_entropy`.
    The batch is already on the device there: the mixer moves its CPU plan itself and
    nothing is read back. Validation, test and predict batches are left alone.

    Batches the callback can write into:

    - a list ``[x, y, ...]``: ``x`` and ``y`` at ``batch_keys`` (default ``(0, 1)``) are
      replaced; what ``DataLoader``'s default collate makes of ``(x, y)`` samples. A tuple
      cannot be written into and is refused (return a list from your ``collate_fn``).
    - a dict, with a dict-built mixer (``Mixer({"pixel_values": Mixup(1.0)}, ...)``): its
      fields are mixed and ``batch[mixer.target_key]`` becomes the soft targets.
    - a dict, with a tensor mixer and ``batch_keys=("image", "label")``.

    It also calls ``mixer.set_epoch(trainer.current_epoch)`` at each training epoch start
    (``off_epoch`` and ``alpha_schedule`` apply), and gives each process its own plans:
    rank 0 keeps the mixer's generator, so one device draws exactly what the Mixer draws
    alone; rank r > 0 reseeds it once, at setup, from :func:`rank_seed` ``(mixer.seed, r)``.

    Its ``state_dict`` holds every rank's mixer state (gathered over the process group,
    keyed by global rank) in the Lightning checkpoint; on resume each rank restores its
    own, so a resumed run draws the plans an uninterrupted one would. If the world size
    changed, ranks found in the checkpoint restore theirs, new ranks keep their fresh
    :func:`rank_seed` stream (the schedule is reapplied before the next batch), the states
    of ranks that no longer exist are dropped, and a warning says so.

    Args:
        mixer: the :class:`multimix.Mixer` to draw plans from.
        batch_keys: where inputs and targets are in the batch, ``(inputs, targets)``: list
            positions (default ``(0, 1)``) or dict keys for a tensor mixer. Must be None
            for a dict-built mixer, whose field names and ``target_key`` say it.

    Attributes:
        last: the :class:`~multimix.MixedBatch` of the current (or latest) training batch
            with ``inputs=None`` (they are in the batch): ``lam``, ``index`` and ``plan``,
            e.g. for :func:`multimix.mixed_accuracy` inside ``training_step``.

    Example:
        >>> import multimix
        >>> from multimix.image import Mixup
        >>> callback = MixupCallback(multimix.Mixer(Mixup(1.0), num_classes=10, seed=0))
        >>> # pl.Trainer(callbacks=[callback]).fit(module); see docs/integrations.md
    """

    def __init__(self, mixer: Mixer, *, batch_keys: Sequence[int] | Sequence[str] | None = None) -> None:
        if not isinstance(mixer, Mixer):
            raise TypeError(
                f"mixer must be a multimix.Mixer, got {type(mixer).__name__}; "
                f"build one with multimix.Mixer(Mixup(1.0), num_classes=...)"
            )
        self.mixer = mixer
        self.batch_keys = _check_batch_keys(batch_keys, mixer)
        self.last: MixedBatch | None = None
        self._seeded = False
        self._epoch: int | None = None

    # ------------------------------------------------------------------ setup and schedule
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        others = [cb for cb in trainer.callbacks if isinstance(cb, MixupCallback) and cb is not self]
        if others:
            raise ValueError(
                f"the Trainer has {len(others) + 1} MixupCallbacks, which would mix every batch more than once; "
                f"pass one (a list of adapters in one Mixer switches between them)"
            )
        rank = trainer.global_rank
        self._epoch = None  # a new fit (or a restored state) gets set_epoch before its first batch
        if not self._seeded:
            self._seeded = True
            if rank > 0:  # before any checkpoint is restored: restored states override this
                self.mixer.generator.manual_seed(rank_seed(self.mixer.seed, rank))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set_epoch(trainer.current_epoch)

    def _set_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            self.mixer.set_epoch(epoch)
            self._epoch = epoch

    # ------------------------------------------------------------------ mixing
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        if isinstance(batch, MixedBatch):
            raise TypeError(
                "the batch is already a MixedBatch (DataLoader(collate_fn=mixer.collate)); mix either in the "
                "DataLoader or with MixupCallback, not both"
            )
        if self.mixer.fields is not None:
            if not isinstance(batch, MutableMapping):
                raise TypeError(
                    f"this Mixer mixes dict batches with fields {self.mixer.fields}, got a "
                    f"{type(batch).__name__} batch; return dicts from the DataLoader or build the Mixer from adapters"
                )
            self._sync_epoch(trainer)
            out = self.mixer(batch)
            batch.update(out.inputs)
            batch[self.mixer.target_key] = out.targets
        else:
            inputs_key, targets_key = self._keys(batch)
            self._sync_epoch(trainer)
            out = self.mixer(batch[inputs_key], batch[targets_key])
            batch[inputs_key] = out.inputs
            batch[targets_key] = out.targets
        self.last = dataclasses.replace(out, inputs=None)

    def _sync_epoch(self, trainer: pl.Trainer) -> None:
        # Resuming from a checkpoint saved on an epoch's last batch, Lightning skips the next
        # on_train_epoch_start (fit_loop: restarted_mid_epoch), so the epoch is also checked here.
        self._set_epoch(trainer.current_epoch)

    def _keys(self, batch: Any) -> tuple[Any, Any]:
        if isinstance(batch, tuple):
            raise TypeError(
                "MixupCallback writes the mixed batch back into the batch, which a tuple does not allow; "
                "return a list [x, y] from your collate_fn (DataLoader's default collate does)"
            )
        if isinstance(batch, list):
            keys = self.batch_keys or (0, 1)
            if not all(isinstance(k, int) for k in keys):
                raise TypeError(f"batch_keys={keys!r} names dict keys, but the batch is a list; pass positions")
            if len(batch) <= max(keys):
                raise ValueError(
                    f"the batch is a list of {len(batch)} items, batch_keys={keys!r} needs more; "
                    f"pass batch_keys=(inputs_position, targets_position)"
                )
            return keys
        if isinstance(batch, MutableMapping):
            if self.batch_keys is None:
                raise TypeError(
                    f"got a dict batch with keys {sorted(batch)} but no batch_keys; pass e.g. "
                    f"MixupCallback(mixer, batch_keys=('image', 'label')), or build the Mixer as {{field: adapter}}"
                )
            missing = [k for k in self.batch_keys if k not in batch]
            if missing:
                raise ValueError(f"batch has no key(s) {missing} from batch_keys; it has {sorted(batch)}")
            return self.batch_keys
        raise TypeError(
            f"MixupCallback mixes list [x, y] or dict batches, got {type(batch).__name__}; "
            f"return one of those from the DataLoader"
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Every rank's mixer state, ``{"world_size": W, "ranks": {rank: Mixer.state_dict()}}``.

        Under a process group this gathers over all ranks, so it must run on every rank,
        as ``Trainer.save_checkpoint`` (and so ``ModelCheckpoint``) does.
        """
        return gather_states(self.mixer)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore this rank's mixer state from what :meth:`state_dict` saved."""
        ranks, saved = check_rank_states(state_dict, "MixupCallback")
        warn_world_change("MixupCallback state", ranks, saved, "keep fresh streams")
        rank, _ = rank_and_world()
        if rank in ranks:
            self.mixer.load_state_dict(ranks[rank])
        self._epoch = None
