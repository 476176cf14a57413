import re
import subprocess
import sys

import pytest

import multimix
from multimix.cli import main


def test_info_reports_versions(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"multimix {multimix.__version__}" in out and "torch" in out and "cpu threads" in out


def test_version_and_unknown_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and multimix.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["fly"])
    assert exit_info.value.code == 2 and "invalid choice: 'fly'" in capsys.readouterr().err


def test_module_entry_point_and_light_import():
    result = subprocess.run([sys.executable, "-m", "multimix", "info"], capture_output=True, text=True, check=True)
    assert "multimix" in result.stdout
    heavy = ("transformers", "torchaudio", "torchvision", "multimix.image")
    code = f"import sys, multimix; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


def test_import_multimix_never_imports_recipe_code():
    code = "import sys, multimix, multimix.cli; print(sorted(m for m in sys.modules if 'recipe' in m))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


def test_recipes_lists_the_three_recipes(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["image", "speech", "text"]
    assert "methods erm, mixup, cutmix, mixup+cutmix, regmixup, resizemix, fmix, saliencymix, manifold" in lines[0]


def test_an_uninstalled_checkout_finds_the_recipes_folder(tmp_path):
    """Without the installed package, the recipes/ folder beside multimix/ is loaded as multimix_recipes."""
    from pathlib import Path

    root = Path(multimix.__file__).resolve().parents[1]
    code = (
        "import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "import importlib.util; assert importlib.util.find_spec('multimix_recipes') is None  # not installed\n"
        "from multimix.cli import recipes_package\n"
        "package = recipes_package()\n"
        "print(package.__name__, package.HERE, package.load('image').__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["multimix_recipes", str(root / "recipes"), "multimix_recipes.image.train"]


def test_recipes_use_only_the_public_api():
    """Recipe code imports multimix and its modality modules, never private modules or internals."""
    import ast
    from pathlib import Path

    public = {"multimix", "multimix.image", "multimix.audio", "multimix.text", "multimix.metrics"}
    folder = Path(multimix.__file__).resolve().parents[1] / "recipes"
    used = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            used |= {n for n in names if n == "multimix" or n.startswith("multimix.")}
    assert used and used <= public, sorted(used - public)


def test_info_lists_every_exported_adapter(capsys):
    from multimix.cli import adapter_names

    names = adapter_names()
    expected = {"image.Mixup", "image.CutMix", "image.FMix", "audio.SpecMix", "audio.WaveMix", "text.HiddenMix"}
    assert expected <= set(names)
    assert "image.Boxes" not in names  # only Adapter subclasses
    main(["info"])
    assert "image.FMix" in capsys.readouterr().out


def test_info_reads_adapters_from_the_modules_exports(monkeypatch, capsys):
    """A new adapter appears in `multimix info` once its module exports it: no list to keep by hand."""
    import multimix.audio
    from multimix.cli import adapter_names

    class TinyAdapter(multimix.Adapter):
        def draw_region(self, x, plan, generator):
            return None

        def apply(self, x, plan, region, valid=None):
            return x, plan.lam

    monkeypatch.setattr(multimix.audio, "TinyAdapter", TinyAdapter, raising=False)
    monkeypatch.setattr(multimix.audio, "__all__", [*multimix.audio.__all__, "TinyAdapter"])
    assert "audio.TinyAdapter" in adapter_names()
    main(["info"])
    assert "audio.TinyAdapter" in capsys.readouterr().out
    monkeypatch.undo()
    assert "audio.TinyAdapter" not in adapter_names()


def test_seeds_flag_is_the_seeds_key(capsys):
    import yaml

    assert main(["run", "image", "--seeds", "0,1,2", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seeds"] == [0, 1, 2]
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "image", "--seeds", "0,0", "--print-config"])
    assert exit_info.value.code == 2 and "seeds must be distinct integers" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["image", "speech", "text"])
def test_run_help_lists_every_key_with_its_type_default_and_meaning(name, capsys):
    from multimix_recipes.config import load_defaults

    with pytest.raises(SystemExit) as exit_info:
        main(["run", name, "--help"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    keys = [key for key in load_defaults(name) if key != "on_gpu"]
    for key in keys:  # a key added without a comment in defaults.yaml fails here
        line = next((x for x in lines if x.startswith(f"  {key} (")), None)
        assert line is not None, key
        assert re.fullmatch(rf"  {re.escape(key)} \([a-z|\[\] ]+, default .+\): \S.{{8,}}", line), line
    text = "\n".join(lines)
    for expected in ("  epochs (int, default ", "  lr (float, default ", "  seeds (list, default []): several seeds",
                     "  train_limit (int or null, default ", "  alpha (float, default 0.", "lam ~ Beta(alpha, alpha)"):
        assert expected in text, expected
    if name == "text":
        assert "on a GPU, the keys you do not give default to {'train_limit': None" in text


def test_run_help_is_read_from_the_yaml_comments(tmp_path, monkeypatch, capsys):
    """The help is generated from defaults.yaml, so editing a comment changes it: nothing to keep in step by hand."""
    import shutil

    import multimix_recipes
    from multimix_recipes import config

    shutil.copytree(multimix_recipes.HERE / "speech", tmp_path / "speech")
    yaml_file = tmp_path / "speech" / "defaults.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("# mel bins of the log-mel spectrogram", "# how many mels"))
    monkeypatch.setattr(multimix_recipes, "HERE", tmp_path)
    monkeypatch.setattr(config, "HERE", tmp_path)
    with pytest.raises(SystemExit):
        main(["run", "speech", "--help"])
    assert "  n_mels (int, default 40): how many mels\n" in capsys.readouterr().out
