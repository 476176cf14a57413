"""Checkpoints: written atomically (a failed or interrupted write keeps the previous one), read safely on the CPU.

A checkpoint holds the model, optimizer, scheduler, every rank's mixer state, the RNG
states, the history and the configuration: tensors and plain containers only, so it is
read with ``torch.load(weights_only=True)``, which builds nothing else (a crafted file
cannot run code when ``--resume`` reads it). It is read on the CPU (``map_location``
would otherwise turn the RNG states into CUDA tensors, which torch refuses back) and
checked before any model is built.
"""

from __future__ import annotations

import os
import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["read", "rng_state", "rng_state_on_cpu", "set_rng_state", "write"]

KEYS = ("epoch", "model", "optimizer", "scheduler", "rng", "history", "config")


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # this process's GPU only (one per rank)
        state["cuda"] = [torch.cuda.get_rng_state()]
    return state


def rng_state_on_cpu(state: dict[str, Any]) -> dict[str, Any]:
    """RNG states as torch wants them back: CPU ``ByteTensor`` s, whatever device the checkpoint was mapped to."""
    as_bytes = lambda t: torch.as_tensor(t).to("cpu", torch.uint8)  # noqa: E731
    fixed = dict(state)
    fixed["torch"] = as_bytes(state["torch"])
    if "cuda" in state:
        fixed["cuda"] = [as_bytes(t) for t in state["cuda"]]
    return fixed


def set_rng_state(state: dict[str, Any]) -> None:
    state = rng_state_on_cpu(state)
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"][0])


def write(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` through a temporary file, so ``path`` is always a complete checkpoint.

    Raises:
        OSError: the write failed (a full disk, say); the message says that the previous
            checkpoint is intact and that the temporary file was removed.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if not isinstance(error, OSError):
            raise
        kept = f"the previous checkpoint {path} is intact" if path.is_file() else "no earlier checkpoint exists"
        raise OSError(f"could not write the checkpoint {path} ({error}); {kept} and the temporary file {tmp.name} "
                      "was removed; free some space or pass another --out") from error  # fmt: skip


def read(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, on the CPU.

    Raises:
        ValueError: no file, an empty, unreadable or corrupt file, a file holding more than tensors
            and plain data, or not a recipe checkpoint (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--resume: no checkpoint at {path}; run without --resume first")
    if path.stat().st_size == 0:
        raise ValueError(f"--resume: {path} is empty, so unreadable; delete it and run without --resume")
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle's protocol before refusing it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a truncated, foreign or unsafe file
        if isinstance(error, pickle.UnpicklingError) and "global" in str(error).lower():
            raise ValueError(f"--resume: {path} holds objects other than tensors and plain data, which could run "
                             "code when loaded, so it was not loaded; multimix run never writes such a file: delete "
                             "it and run without --resume") from None  # fmt: skip
        if isinstance(error, pickle.UnpicklingError):  # torch's text would suggest weights_only=False
            reason = "not data written by torch.save"
        else:
            reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
        raise ValueError(f"--resume: {path} is unreadable or corrupt ({reason}); "
                         "delete it and run without --resume") from error  # fmt: skip
    missing = [k for k in KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"--resume: {path} is not a multimix recipe checkpoint (missing {missing})")
    return state
