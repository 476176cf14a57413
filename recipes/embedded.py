"""The embedded datasets: read offline from a clone of the repository, downloaded when they are not there.

``recipes/data/`` (CIFAR-10, FSDD, MR: 33 MB) lives in the repository, so the README's
``pip install -e ".[recipes]" && multimix run image`` from a clone runs offline; the wheel
leaves it out, so ``pip install multimix`` stays small. A recipe run with ``data: embedded``
where that folder is missing says so and downloads the same dataset instead
(:data:`DOWNLOADS`): CIFAR-10 through torchvision, FSDD from its GitHub repository, MR
(``rotten_tomatoes``) through ``datasets``.
"""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path
from typing import Any

from multimix_recipes import HERE

__all__ = ["DOWNLOADS", "FSDD_URL", "download", "embedded_or_download", "installed"]

# recipe -> (its embedded file, the --data that downloads the same dataset)
DOWNLOADS = {"image": ("cifar10.tar.gz", "cifar10"), "speech": ("fsdd-recordings.tar.xz", "fsdd"),
             "text": ("mr.csv.gz", "rotten_tomatoes")}  # fmt: skip
# the commit the embedded FSDD was taken from (3,000 recordings)
FSDD_URL = ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/"
            "26eb9aaf76e81b692f806f9140c2d2777410d7a1.tar.gz")  # fmt: skip


def installed(recipe: str) -> bool:
    """Whether the recipe's embedded file is here (a clone, or an editable install of one)."""
    return (HERE / "data" / DOWNLOADS[recipe][0]).is_file()


def embedded_or_download(recipe: str, config: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``config`` unchanged, or, with ``data: embedded`` and no embedded file, with ``data`` set to the download of
    the same dataset; the second value is the line to tell the user (None when nothing changed)."""
    if config["data"] != "embedded" or installed(recipe):
        return config, None
    name = DOWNLOADS[recipe][1]
    note = (f"the embedded data ({HERE / 'data' / DOWNLOADS[recipe][0]}) is not in this installation: it ships in a "
            f"clone of the repository, not in the wheel; downloading it instead (--data {name}) into "
            f"{config['data_root']}")  # fmt: skip
    return {**config, "data": name}, note


def download(url: str, path: Path) -> Path:
    """``url`` saved at ``path`` (kept: a second run reads it), written through a temporary file.

    Raises:
        ValueError: the download failed (offline, say); the message names the URL and the folder.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")  # a failed download never looks like a complete one
    try:
        with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as handle:
            shutil.copyfileobj(response, handle)
        part.replace(path)
    except OSError as error:  # urllib's URLError included
        part.unlink(missing_ok=True)
        raise ValueError(f"could not download {url} into {path.parent} ({error}); offline, run from a clone of the "
                         "repository (its recipes/data/ holds the embedded data) or pass --data PATH") from error
    return path
