"""``multimix run NAME --compare ... --parallel N``: up to N runs at once, one process each, on one GPU or the CPU.

A step bound by host work leaves a GPU mostly idle, so several runs side by side finish
sooner than one after the other. Each run is a fresh process (``spawn``: no CUDA state is
inherited) that trains exactly what the sequential run trains: the same folder, seed,
configuration and checkpoint, so ``--resume`` treats both alike. On the CPU the cores are
split between the processes (``torch.set_num_threads``). Each line a run prints carries
its folder as a prefix, ``[mixup] epoch 1: ...``; progress bars are off.

A run that fails stops the others (their checkpoints stay, ``--resume`` continues them)
and reaches the caller as one exception: ``ValueError`` for bad input (the recipe's own
``ValueError``/``OSError``), :class:`RunFailed` for anything else, with the traceback in
the run's ``error.log``. Ctrl-C in the parent stops every child (children ignore SIGINT,
the parent terminates and reaps them); so does SIGTERM (``timeout``, a job scheduler), which
the parent takes as Ctrl-C while runs are in flight.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TextIO

import torch

__all__ = ["Job", "RunFailed", "run_all", "threads_per_run"]


class RunFailed(RuntimeError):
    """A parallel run stopped on an error that is not bad input (out of memory, a crash); the message is one line."""


@dataclass
class Job:
    """One run: the recipe, its resolved configuration, its folder, whether it resumes, and its line prefix."""

    name: str
    config: dict[str, Any]
    folder: Path
    resume: bool
    label: str


def threads_per_run(parallel: int, total: int | None = None) -> int:
    """CPU threads for each of ``parallel`` processes: the parent's threads shared out, at least one each."""
    total = torch.get_num_threads() if total is None else total
    return max(1, total // parallel)


class _Prefixed:
    """A text stream that starts every line written through it with ``prefix`` (whole lines, flushed at once)."""

    def __init__(self, stream: TextIO, prefix: str) -> None:
        self.stream, self.prefix, self.pending = stream, prefix, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        if lines:
            self.stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def _portable(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The result without its tensors, and the tensors as NumPy arrays: plain pickles through the pipe (torch's
    shared-memory tensors would need the child alive until the parent reads them)."""
    tensors = {k: v.numpy() for k, v in result.items() if isinstance(v, torch.Tensor)}
    return {k: v for k, v in result.items() if k not in tensors}, tensors


def _child(job: Job, threads: int, connection: Connection) -> None:
    """Train ``job`` in this process and send ``("ok", result)`` or ``("error", kind, message, bad_input)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops every child
    signal.signal(signal.SIGTERM, _exit)  # the parent's stop: exit cleanly (semaphores released, no tracker warning)
    torch.set_num_threads(threads)
    sys.stdout = _Prefixed(sys.__stdout__, f"[{job.label}] ")
    from multimix_recipes import runner

    try:
        config = {**job.config, "progress": False}  # several bars on one terminal garble each other
        state = runner.resume_state(config, job.folder) if job.resume else None
        message: tuple = ("ok", _portable(runner.train_one(job.name, config, job.folder, state)))
    except Exception as error:  # every failure reaches the parent as a message
        (job.folder / "error.log").write_text(traceback.format_exc())
        text = " ".join(str(error).split()) or type(error).__name__
        message = ("error", type(error).__name__, text, isinstance(error, (ValueError, OSError)))
    sys.stdout.flush()
    connection.send(message)
    connection.close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _exit(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)


def _stop(processes: dict[int, Any]) -> None:
    for process in processes.values():
        if process.is_alive():
            process.terminate()
    for process in processes.values():
        process.join(15)
        if process.is_alive():  # stuck in native code: stop it hard
            process.kill()
            process.join()


def run_all(jobs: Sequence[Job], parallel: int, on_start: Any = None) -> list[dict[str, Any]]:
    """Run ``jobs`` with at most ``parallel`` at a time; their results in the order of ``jobs``.

    Args:
        jobs: the runs, in the order the sequential run trains them (and starts them here).
        parallel: how many run at once (each gets :func:`threads_per_run` CPU threads).
        on_start: called with a job's index as it starts (the runner prints the run's header line).

    Raises:
        ValueError: a run refused its input (``run LABEL (FOLDER): message``).
        RunFailed: a run failed otherwise, or its process died without a result.
    """
    context = multiprocessing.get_context("spawn")
    threads = threads_per_run(parallel)
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    running: dict[int, Any] = {}
    pipes: dict[int, Connection] = {}
    waiting = list(range(len(jobs)))
    main = threading.current_thread() is threading.main_thread()  # only there can a signal handler be set
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                index = waiting.pop(0)
                if on_start is not None:
                    on_start(index)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(jobs[index], threads, send), daemon=True)
                process.start()
                send.close()
                running[index], pipes[index] = process, receive
            ready = wait([pipes[i] for i in running] + [running[i].sentinel for i in running])
            for index in [i for i in running if pipes[i] in ready or running[i].sentinel in ready]:
                message = pipes[index].recv() if pipes[index].poll() else None
                if message is None and running[index].is_alive():
                    continue
                process = running.pop(index)
                process.join()
                pipes.pop(index).close()
                job = jobs[index]
                if message is None:
                    raise RunFailed(f"run {job.label} ({job.folder}) stopped without a result (exit code "
                                    f"{process.exitcode}); --resume continues it from its checkpoint")
                if message[0] == "error":
                    _, kind, text, bad_input = message
                    where = f"run {job.label} ({job.folder})"
                    if bad_input:
                        raise ValueError(f"{where}: {text}")
                    raise RunFailed(f"{where} failed: {kind}: {text} (traceback in {job.folder / 'error.log'}); "
                                    "--resume continues the runs from their checkpoints")  # fmt: skip
                plain, tensors = message[1]
                results[index] = {**plain, **{k: torch.from_numpy(v) for k, v in tensors.items()}}
    finally:
        _stop(running)
        for pipe in pipes.values():
            pipe.close()
        if main:
            signal.signal(signal.SIGTERM, previous)
    return results  # type: ignore[return-value]
