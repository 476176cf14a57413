"""Build the compact real datasets that multimix ships as its offline recipe defaults.

    python recipes/data/build.py --shared ../shared/data

Reads the sources listed in ../shared/data/README.md (checking their SHA-256) and
writes, beside this script (recipes/data/):

- cifar10.tar.gz: all of CIFAR-10 (50,000 train and 10,000 test JPEGs) in the
  ImageFolder layout ``{train,test}/<class>/NNNN.jpg``;
- fsdd-recordings.tar.xz: the Free Spoken Digit Dataset as published (3,000 WAVs);
- mr.csv.gz: the Rotten Tomatoes "fresh"/"rotten" review snippets (MR), text,label.

The run is deterministic; PROVENANCE.md beside the data records sources and licences.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import hashlib
import io
import shutil
import tarfile
from pathlib import Path

SOURCES = {
    "cifar10/cifar10-jpeg.tar.gz": "fa03f4f7d5c3304af079074b00193414f952422a70ad143b43b5ac76ba4c276c",
    "fsdd/fsdd-recordings.tar.xz": "d93f0572b69d968069fda7acbaf6c2167044d03e8456237480396fa5d89f9102",
    "mr/rotten_tomatoes_corpus_full.csv.bz2": "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
}
OUT = Path(__file__).resolve().parent
SPLITS = {"train": 50000, "test": 10000}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_cifar(source: Path, out: Path) -> None:
    """All 60,000 JPEGs, in name order, re-packed deterministically (mtime 0) as ``{train,test}/<class>/NNNN.jpg``."""
    with tarfile.open(source, "r|gz") as archive:
        images = {}
        for member in archive:
            parts = Path(member.name).parts
            if member.isfile() and member.name.endswith(".jpg") and parts[-3] in SPLITS:
                images[f"{parts[-3]}/{parts[-2]}/{parts[-1]}"] = archive.extractfile(member).read()
    counts = {split: sum(name.startswith(split + "/") for name in images) for split in SPLITS}
    if counts != SPLITS:
        raise SystemExit(f"{source}: expected {SPLITS} images, found {counts}")
    with gzip.GzipFile(out, "wb", compresslevel=9, mtime=0) as raw, tarfile.open(fileobj=raw, mode="w") as packed:
        for name in sorted(images):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(images[name]), 0
            packed.addfile(info, io.BytesIO(images[name]))


def build_mr(source: Path, out: Path) -> None:
    labels = {"rotten": 0, "fresh": 1}
    with bz2.open(source, "rt", encoding="utf-8") as handle:
        rows = [(r["text"].strip(), labels[r["category"]]) for r in csv.DictReader(handle) if r["category"] in labels]
    with gzip.GzipFile(out, "wb", mtime=0) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    args = parser.parse_args()
    for relative, digest in SOURCES.items():
        if sha256(args.shared / relative) != digest:
            raise SystemExit(f"{args.shared / relative} does not have the expected SHA-256 {digest}")
    OUT.mkdir(parents=True, exist_ok=True)
    build_cifar(args.shared / "cifar10/cifar10-jpeg.tar.gz", OUT / "cifar10.tar.gz")
    shutil.copyfile(args.shared / "fsdd/fsdd-recordings.tar.xz", OUT / "fsdd-recordings.tar.xz")
    build_mr(args.shared / "mr/rotten_tomatoes_corpus_full.csv.bz2", OUT / "mr.csv.gz")
    for path in sorted(OUT.glob("*.*")):
        if path.suffix != ".md":
            print(f"{path.name}: {path.stat().st_size / 2**20:.1f} MB  sha256 {sha256(path)}")


if __name__ == "__main__":
    main()
