"""The docs site's generated pages (``tools/docs_hooks.py``) cover what they describe: every key, flag and name."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "tools" / "docs_hooks.py")
hooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hooks)


def test_cli_page_lists_every_recipe_key_with_its_default_and_comment():
    recipes = pytest.importorskip("multimix_recipes")
    from multimix.cli import _yaml_value

    page = hooks.cli_page()
    for name in recipes.RECIPES:
        section = page.split(f"## `multimix run {name}`", 1)[1].split("\n## ", 1)[0]
        docs = recipes.key_docs(name)
        assert len(docs) > 10
        for key, kind, default, meaning in docs:
            row = next((line for line in section.splitlines() if line.startswith(f"| `{key}` |")), None)
            assert row is not None, f"{name}: key {key} missing from the CLI page"
            assert f"| {kind} |" in row and hooks._cell(_yaml_value(default)) in row
            assert hooks._cell(meaning) in row
    assert "| `alpha` | float |" in page


def test_cli_page_lists_every_run_flag():
    from multimix.cli import build_parser

    page = hooks.cli_page()
    run = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    flags = [s for a in run._actions for s in a.option_strings if s not in ("-h", "--help")]
    assert "--sweep" in flags and "--seeds" in flags
    for flag in flags:
        assert f"| `{flag}" in page, f"{flag} missing from the CLI page"
    assert "| `--lr LR` | sets the key `lr` |" in page  # a shortcut without help names its key


def test_reference_documents_every_public_name_once():
    pages = hooks.reference_pages()
    assert set(pages) == {hooks.reference_path(m) for m in hooks.MODULES}
    blocks = [line[4:] for page in pages.values() for line in page.splitlines()
              if line.startswith("::: ") and line[4:] not in hooks.MODULES]  # fmt: skip
    assert len(blocks) == len(set(blocks)), "an object is documented on two pages"
    for module in hooks.MODULES:
        page = pages[hooks.reference_path(module)]
        for name in importlib.import_module(module).__all__:
            assert f'heading: "{module}.{name}"' in page or f"## `{module}.{name}`" in page, f"{module}.{name}"
    # the lazily loaded adapters resolve to where they are defined; wrap is the top level's own (no transformers)
    assert "::: multimix.image.fmix.FMix" in pages["reference/multimix.image.md"]
    assert "::: multimix.wrapping.wrap" in pages["reference/multimix.md"]


def test_index_is_the_readme_with_site_links():
    index = hooks.index_page()
    assert index.startswith("# multimix") and "](docs/" not in index and "](quickstart.md)" in index


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def files(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from files(value) if isinstance(value, list) else [value]

    listed = set(files(config["nav"]))
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert page.name in listed, f"docs/{page.name} is not in mkdocs.yml's nav: add it there"
    generated = set(hooks.pages())
    for page in listed:
        assert (ROOT / "docs" / page).exists() or page in generated, f"mkdocs.yml's nav names {page}, which is missing"
    assert re.search(r"^site/$", (ROOT / ".gitignore").read_text(), flags=re.M)


def test_members_from_unpublished_base_classes_are_documented_on_the_class():
    """``Mixer.collate``, ``Mixer.set_epoch``, ... live on base classes without a page: the Mixer's page shows them."""
    import multimix

    schedule = ["enabled", "off_epoch", "alpha_schedule", "set_epoch", "state_dict", "load_state_dict"]
    assert hooks.unpublished_members(multimix.Mixer) == ["seed_worker", "collate", *schedule]
    assert hooks.unpublished_members(multimix.image.Mixup) == []  # Adapter has its own page
    assert hooks.unpublished_members(multimix.audio.SpecMix) == []  # its private base overrides Adapter's own API
    assert f"      inherited_members: [seed_worker, collate, {', '.join(schedule)}]" in \
        hooks.reference_pages()["reference/multimix.md"]  # fmt: skip
