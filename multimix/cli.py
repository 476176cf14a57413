"""The ``multimix`` command line.

``multimix info`` reports what this installation can run (versions, devices,
adapters); the recipes (``multimix run``) build on it.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
from collections.abc import Sequence

import torch

import multimix


def _info() -> int:
    """Print versions, devices and the optional parts that are importable."""
    print(f"multimix {multimix.__version__}  python {platform.python_version()}  torch {torch.__version__}")
    cuda = torch.cuda.is_available()
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    print(f"cpu threads: {torch.get_num_threads()}  cuda: {', '.join(devices) if devices else 'none'}")
    for extra, module in (("audio", "torchaudio"), ("hf", "transformers"), ("recipes", "torchvision")):
        found = importlib.util.find_spec(module) is not None
        print(
            f"extra {extra:<8} {module:<13} {'installed' if found else 'missing: pip install multimix[' + extra + ']'}"
        )
    print("adapters: image.Mixup, image.CutMix, audio.SpecMixup, audio.SpecMix, audio.WaveMix")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multimix", description=multimix.__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"multimix {multimix.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("info", help="show versions, devices and installed extras")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "info":
        return _info()
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":
    sys.exit(main())
