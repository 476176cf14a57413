"""mkdocs hooks: the site's generated pages, built from the code they describe so they cannot drift.

- ``index.md``: the README (GitHub's front page), its ``docs/`` links made relative to the site.
- ``reference/<module>.md``: one page per public module, one mkdocstrings block per name of its
  ``__all__``, at the path where the name is defined (the lazily loaded ones included).
- ``reference/cli.md``: ``multimix run``'s flags from the CLI's own parser and every recipe's keys
  with their types, defaults and meanings from ``defaults.yaml`` (what ``multimix run NAME --help`` prints).

The page builders are plain functions (``tests/test_docs_site.py`` calls them without mkdocs).
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("multimix", "multimix.image", "multimix.audio", "multimix.text", "multimix.hf", "multimix.lightning",
           "multimix.timm")  # fmt: skip


def reference_path(module: str) -> str:
    """The generated page of ``module``, relative to ``docs/``."""
    return f"reference/{module}.md"


def defined_at(module: str, name: str) -> str:
    """Where ``module.name`` is defined: its own module's path for classes and functions, else ``module.name``."""
    value = getattr(importlib.import_module(module), name)
    home, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if isinstance(home, str) and isinstance(qualname, str) and home.startswith("multimix"):
        return f"{home}.{qualname}"
    return f"{module}.{name}"


def module_page(module: str, elsewhere: dict[str, str] | None = None) -> str:
    """The reference page of ``module``: its docstring, then every name of its ``__all__`` in that order.

    A name whose object another page documents (``elsewhere``: path -> page) links there, so
    every object has one home and one anchor (``multimix.MixupModel`` is ``multimix.hf.MixupModel``).
    """
    elsewhere = elsewhere or {}
    names = importlib.import_module(module).__all__
    lines = [f"# `{module}`", "", f"::: {module}", "    options:", "      members: false",
             "      show_root_heading: false", ""]  # fmt: skip
    for name in names:
        path = defined_at(module, name)
        if path in elsewhere:
            page = elsewhere[path].removeprefix("reference/")
            lines += [f"## `{module}.{name}`", "", f"The same object as [`{path}`]({page}#{path}).", ""]
            continue
        lines += [f"::: {path}", "    options:", "      show_root_heading: true",
                  "      show_root_full_path: false", f"      heading: \"{module}.{name}\""]  # fmt: skip
        inherited = unpublished_members(getattr(importlib.import_module(module), name))
        lines += [f"      inherited_members: [{', '.join(inherited)}]"] if inherited else []
        lines += [""]
    return "\n".join(lines)


def unpublished_members(value: object) -> list[str]:
    """Public members a class inherits from multimix base classes that no module exports (``Mixer.collate`` from
    its worker-side base): documented on the class itself, since their own class has no page."""
    if not isinstance(value, type):
        return []
    exported = {id(getattr(importlib.import_module(m), n)) for m in MODULES for n in importlib.import_module(m).__all__}
    published = [base for base in value.__mro__ if id(base) in exported and base is not value]
    names: list[str] = []
    for base in value.__mro__[1:]:
        if not base.__module__.startswith("multimix") or id(base) in exported:
            continue
        names += [n for n in vars(base) if not n.startswith("_") and n not in vars(value) and n not in names
                  and not any(n in vars(other) for other in published)]  # fmt: skip  (documented on its own page)
    return names


def reference_pages() -> dict[str, str]:
    """Every module's page; an object exported by several modules is documented on the most specific one."""
    homes: dict[str, str] = {}
    for module in sorted(MODULES, key=lambda m: -m.count(".")):  # submodules before the package
        for name in importlib.import_module(module).__all__:
            homes.setdefault(defined_at(module, name), reference_path(module))
    pages = {}
    for module in MODULES:
        page = reference_path(module)
        pages[page] = module_page(module, {path: home for path, home in homes.items() if home != page})
    return pages


def _flag_rows(parser: argparse.ArgumentParser, shortcuts: tuple[str, ...]) -> list[str]:
    """A table row per flag of ``parser``: a shortcut without help text names the key it sets."""
    rows = ["| flag | meaning |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        flag = ", ".join(action.option_strings) or action.dest
        if action.option_strings and action.nargs != 0:
            flag += f" {action.metavar or action.dest.upper()}"
        meaning = action.help or (f"sets the key `{action.dest}`" if action.dest in shortcuts else "")
        rows.append(f"| `{flag}` | {_cell(meaning)} |")
    return rows


def _cell(value: Any) -> str:
    return str(value).replace("|", "&#124;").replace("\n", " ")


def cli_page() -> str:
    """``multimix run``'s flags (from :func:`multimix.cli.build_parser`) and each recipe's keys (``key_docs``)."""
    from multimix import cli

    recipes = cli.recipes_package()
    parser = cli.build_parser()
    run = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    lines = ["# `multimix run`: flags and configuration keys", "",
             "Generated from the command's parser and from each recipe's `defaults.yaml` (a key's meaning is its "
             "comment there), as `multimix run NAME --help` prints them. A flag is a shortcut for the key of the same "
             "name; any key is set with `--set KEY=VALUE` (typed like its default) or in a `--config` YAML.", "",
             "## Flags", "", *_flag_rows(run, cli.SHORTCUTS), ""]  # fmt: skip
    from multimix_recipes.config import load_defaults

    for name in recipes.RECIPES:
        lines += [f"## `multimix run {name}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for key, kind, default, meaning in recipes.key_docs(name):
            lines.append(f"| `{key}` | {kind} | `{_cell(cli._yaml_value(default))}` | {_cell(meaning)} |")
        on_gpu = load_defaults(name).get("on_gpu")
        if on_gpu:
            lines += ["", f"On a GPU, the keys you do not give default to: `{_cell(cli._yaml_value(on_gpu))}`."]
        lines.append("")
    return "\n".join(lines)


def index_page() -> str:
    """The README as the site's front page: links into ``docs/`` become site-relative."""
    text = (ROOT / "README.md").read_text()
    return re.sub(r"\]\(docs/", "](", text)


def pages() -> dict[str, str]:
    """Every generated page, ``{path relative to docs/: markdown}``."""
    return {"index.md": index_page(), "reference/cli.md": cli_page(),
            **reference_pages()}  # fmt: skip


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated pages to the site (before the nav is built from ``mkdocs.yml``)."""
    from mkdocs.structure.files import File

    for path, content in pages().items():
        files.append(File.generated(config, path, content=content))
    return files
