"""The ``multimix`` command line.

``multimix recipes`` lists the recipes, ``multimix run NAME`` trains one (flags
override the recipe's YAML defaults), ``multimix info`` reports versions and devices.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

import multimix


def adapter_names() -> list[str]:
    """Every adapter the modality modules export, as ``module.Name``: read from their ``__all__``, not a list here."""
    names = []
    for module_name in ("image", "audio", "text"):
        module = importlib.import_module(f"multimix.{module_name}")
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, multimix.Adapter):
                names.append(f"{module_name}.{name}")
    return names


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
    print(f"adapters: {', '.join(adapter_names())}")
    print("recipes: image, speech, text (multimix recipes)")
    return 0


SHORTCUTS = ("method", "alpha", "epochs", "batch_size", "lr", "data", "model", "out", "seed", "device", "quick")


def _defaults_epilog(argv: Sequence[str]) -> str:
    """For ``multimix run NAME --help``: every key of NAME's YAML with its type, default and meaning (the key's
    comment in the YAML, read from the file, so the help cannot drift from it)."""
    args = list(argv)
    name = args[args.index("run") + 1] if "run" in args and args.index("run") + 1 < len(args) else None
    try:
        recipes = recipes_package()
        docs = recipes.key_docs(name) if name in recipes.RECIPES else None
        on_gpu = importlib.import_module("multimix_recipes.config").load_defaults(name).get("on_gpu") if docs else None
    except (ImportError, ValueError):
        docs = None
    if docs is None:
        return "`multimix run NAME --help` lists NAME's keys, their types, defaults and meanings."
    lines = [f"keys of {name} (set any with --set KEY=VALUE or in a --config YAML; values are typed like the "
             "default):"]  # fmt: skip
    for key, kind, default, meaning in docs:
        lines.append(f"  {key} ({kind}, default {_yaml_value(default)})"
                     + (f": {meaning}" if meaning else ""))  # fmt: skip
    if on_gpu:
        lines.append(f"on a GPU, the keys you do not give default to {on_gpu}")
    return "\n".join(lines)


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("name", help="recipe: image, speech or text (see `multimix recipes`)")
    run.add_argument("--config", help="a YAML file of keys overriding the recipe's defaults (a saved config.yaml too)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                     help="any key of the recipe's YAML (repeatable), e.g. --set optimizer=sgd")  # fmt: skip
    run.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    run.add_argument("--method", help="erm, mixup, cutmix, specmix, hidden, ... (see `multimix recipes`)")
    run.add_argument("--alpha", type=float, help="lam ~ Beta(alpha, alpha)")
    run.add_argument("--epochs", type=int, help="with --resume, a larger number extends a finished run")
    run.add_argument("--batch-size", type=int, dest="batch_size")
    run.add_argument("--lr", type=float)
    run.add_argument("--data", help="'embedded', a dataset name, or a local path")
    run.add_argument("--model", help="model name (image/speech) or Hugging Face checkpoint (text)")
    run.add_argument("--out", help="output folder")
    run.add_argument("--seed", type=int)
    run.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--quick", action="store_const", const=True,
                     help="a smoke run: 1 epoch on a few hundred samples (keys you give win)")  # fmt: skip
    run.add_argument("--compare", help="comma-separated methods trained on the same data and seed, e.g. erm,mixup")
    run.add_argument("--seeds", help="comma-separated seeds, each method run once per seed (mean ± std), e.g. 0,1,2")
    run.add_argument("--sweep", metavar="KEY=V1,V2,...",
                     help="run once per value of any key (typed as --set types it; with --compare and --seeds, "
                          "every method x value x seed) and choose the value on the validation split "
                          "(selection.md), e.g. --sweep alpha=0.1,0.2,0.4")  # fmt: skip
    run.add_argument("--parallel", type=int, default=1, metavar="N",
                     help="train up to N of the --compare/--seeds/--sweep runs at once, one process each, sharing "
                          "the GPU or the CPU cores (same folders, checkpoints and table as one after the other)")
    run.add_argument("--resume", action="store_true",
                     help="continue from the checkpoint in the output folder (with --compare/--seeds/--sweep: finished "
                          "runs are kept, the interrupted one continues, the others start)")  # fmt: skip
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run already in the output folder (without it, one there is refused)")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multimix", description=multimix.__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"multimix {multimix.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("info", help="show versions, devices and installed extras")
    commands.add_parser("recipes", help="list the recipes: task, default data, model, methods")
    epilog = _defaults_epilog(argv) if {"-h", "--help"} & set(argv) else None
    run = commands.add_parser("run", help="train and evaluate a recipe", epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    _add_run_arguments(run)
    return parser


def recipes_package() -> ModuleType:
    """``multimix_recipes``: installed with the package, or the ``recipes/`` folder beside ``multimix/``.

    The fallback keeps a source checkout that was never installed working (``python -m multimix``).
    """
    try:
        return importlib.import_module("multimix_recipes")
    except ModuleNotFoundError as error:
        if error.name != "multimix_recipes":
            raise
    folder = Path(__file__).resolve().parents[1] / "recipes"
    if not (folder / "__init__.py").is_file():
        raise ValueError("the recipes are not installed; pip install 'multimix[recipes]' (or -e '.[recipes]')")
    spec = importlib.util.spec_from_file_location(
        "multimix_recipes", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["multimix_recipes"] = module
    spec.loader.exec_module(module)
    return module


def _run(args: argparse.Namespace) -> int:
    recipes = recipes_package()
    from multimix_recipes.config import parse_assignment, resolve
    from multimix_recipes.parallel import RunFailed
    from multimix_recipes.runner import run
    from multimix_recipes.sweep import parse as parse_sweep

    recipes.load(args.name)  # an unknown recipe fails first, listing the valid ones
    overrides = dict(parse_assignment(text) for text in args.assignments)
    if args.seeds is not None:
        overrides["seeds"] = parse_assignment(f"seeds={args.seeds}")[1]
    overrides.update({key: getattr(args, key) for key in SHORTCUTS if getattr(args, key) is not None})
    if args.print_config:
        config = resolve(args.name, args.config, overrides)
        print(yaml_dump(config), end="")
        return 0
    compare = [m.strip() for m in args.compare.split(",") if m.strip()] if args.compare else None
    if compare is not None and len(compare) < 2:
        raise ValueError(f"--compare needs at least two methods separated by commas, got {args.compare!r}")
    sweep = parse_sweep(args.sweep) if args.sweep is not None else None
    try:
        run(args.name, config_file=args.config, overrides=overrides, compare=compare, sweep=sweep,
            resume=args.resume, overwrite=args.overwrite, parallel=args.parallel)  # fmt: skip
    except RunFailed as error:  # a parallel run that failed on something other than its input
        print(f"multimix: error: {error}", file=sys.stderr)
        return 1
    return 0


def _yaml_value(value: object) -> str:
    """``value`` as it is written in YAML or after ``--set KEY=`` (``null``, ``[3, 4]``, ``true``)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def yaml_dump(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "recipes":
        try:
            print("\n".join(recipes_package().describe()))
        except ValueError as error:
            parser.exit(2, f"multimix: error: {error}\n")
        return 0
    try:
        return _run(args)
    except (ValueError, OSError) as error:
        parser.exit(2, f"multimix: error: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, "multimix: interrupted; --resume continues the runs from their last checkpoints\n")
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
