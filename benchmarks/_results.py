"""Raw benchmark rows to ``benchmarks/results/<card>-torch<version>.csv``: where every published figure comes from.

One file per card (or CPU model) and torch version, rows appended by each run with the
commit they measured, so a figure in the docs can be traced to its runs.
"""

from __future__ import annotations

import csv
import platform
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

import multimix

RESULTS = Path(__file__).resolve().parent / "results"


def card_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model's (``/proc/cpuinfo``), for the results file and its rows."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def commit() -> str:
    """The commit of the multimix imported, ``+dirty`` when its files differ from it (the numbers are of that code)."""
    root = Path(multimix.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "multimix"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


# Read once, when the benchmark imports this module (as it starts): the code a long run measures is the code it
# loaded, whatever the working tree holds by the time its rows are written.
MEASURED = commit()


def results_path(device: torch.device) -> Path:
    """``results/<card>-torch<version>.csv`` for ``device``'s card and the torch imported."""
    slug = re.sub(r"[^a-z0-9]+", "-", card_name(device).lower()).strip("-")
    return RESULTS / f"{slug}-torch{torch.__version__.split('+')[0]}.csv"


def append(benchmark: str, device: torch.device, rows: Iterable[dict[str, Any]], columns: list[str]) -> Path:
    """Append ``rows`` (each with ``columns``) under ``benchmark``; the header is written when the file is new."""
    path = results_path(device)
    RESULTS.mkdir(exist_ok=True)
    fixed = {"benchmark": benchmark, "device": device.type, "card": card_name(device), "torch": torch.__version__,
             "commit": MEASURED, "threads": torch.get_num_threads() if device.type == "cpu" else ""}  # fmt: skip
    fields = [*fixed, *columns]
    new = not path.exists()
    if not new:
        with path.open() as file:
            header = next(csv.reader(file), [])
        if header != fields:  # another benchmark's layout: a file of its own beside it
            path = path.with_name(f"{path.stem}-{benchmark}.csv")
            new = not path.exists()
    with path.open("a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({**fixed, **row})
    return path
