"""Packaging: the wheel holds the library and the recipes' code, not their 33 MB of data; a clone (the README's
``pip install -e``) reads that data offline; a recipe run from the wheel says the data is missing and downloads it."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from multimix_recipes import embedded, runner
from multimix_recipes.config import resolve

ROOT = Path(__file__).resolve().parents[1]
README_COMMANDS = ['pip install -e ".[recipes]" && multimix run image', 'pip install -e ".[dev]" && pytest']
# a subprocess that sees only the given site folder's multimix (the venv's editable finder removed)
ISOLATE = ("import sys, site; sys.meta_path = [f for f in sys.meta_path if 'editable' not in "
           "getattr(f, '__module__', '')]; [sys.modules.pop(m) for m in list(sys.modules) if 'editable' in m]; "
           "sys.path[:0] = {paths!r}; [site.addsitedir(p) for p in {paths!r}]\n")  # fmt: skip


def test_the_readme_keeps_its_two_commands():
    assert re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S) == README_COMMANDS


def test_the_recipes_data_is_not_a_package():
    """Only packages and their package-data go into the wheel: recipes/data/ is neither."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "multimix_recipes.data" not in setuptools["packages"]
    assert not any("data" in name for name in setuptools.get("package-data", {}) if name != "multimix_recipes")
    assert all(not p.endswith((".gz", ".xz")) for p in setuptools["package-data"]["multimix_recipes"])
    assert (ROOT / "recipes" / "data" / "cifar10.tar.gz").is_file()  # still in the repository


@pytest.mark.parametrize(("recipe", "name"), [("image", "cifar10"), ("speech", "fsdd"), ("text", "rotten_tomatoes")])
def test_without_the_data_folder_a_run_downloads_the_same_dataset(recipe, name, tmp_path, monkeypatch):
    config = resolve(recipe, None, {"data_root": str(tmp_path)})
    assert embedded.embedded_or_download(recipe, config) == (config, None)  # a clone: the embedded data
    monkeypatch.setattr(embedded, "HERE", tmp_path)  # as installed from the wheel: no data/ folder
    changed, note = embedded.embedded_or_download(recipe, config)
    assert changed == {**config, "data": name}
    assert note.endswith(f"is not in this installation: it ships in a clone of the repository, not in the wheel; "
                         f"downloading it instead (--data {name}) into {tmp_path}")  # fmt: skip
    other = {**config, "data": str(tmp_path)}  # a --data the user gave is left alone
    assert embedded.embedded_or_download(recipe, other) == (other, None)


def test_the_runner_prints_the_note_and_saves_the_download(tmp_path, monkeypatch, capsys):
    from multimix_recipes import engine
    from multimix_recipes.image import train as image

    built = []

    def build(config):
        built.append(config["data"])
        raise ValueError("stop")  # what was built is all this test needs

    monkeypatch.setattr(embedded, "HERE", tmp_path)
    monkeypatch.setattr(image, "build", build)
    monkeypatch.setattr(engine, "train", None)
    with pytest.raises(ValueError, match="stop"):
        runner.run("image", overrides={"out": str(tmp_path / "out"), "device": "cpu", "quick": True})
    assert built == ["cifar10"] and "downloading it instead (--data cifar10)" in capsys.readouterr().out


def test_the_fsdd_download_is_refused_cleanly_offline(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    from multimix_recipes.speech import train as speech

    config = resolve("speech", None, {"data": "fsdd", "data_root": str(tmp_path)})
    with pytest.raises(ValueError, match=r"could not download https://github.com/Jakobovski/free-spoken-digit-dataset/"
                                         r".* \(network is unreachable \(test\)\); offline, run from a clone"):
        speech.load_data(config)
    assert list((tmp_path / "fsdd").iterdir()) == []  # no partial file left behind


def _copy_of_the_clone(dest: Path) -> Path:
    """The repository's files (tracked and new, as ``git clone`` plus the work in progress would give)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _pip(*args: str) -> None:
    """pip in this environment; only ``wheel`` and ``install --target`` here, which leave the environment as it is."""
    result = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_wheel_is_small_and_a_run_from_it_downloads_the_data(tmp_path):
    source = _copy_of_the_clone(tmp_path / "clone")
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(source))
    (wheel,) = (tmp_path / "dist").glob("multimix-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.stat().st_size < 1_000_000, wheel.stat().st_size
    assert not [n for n in names if n.startswith("multimix_recipes/data/")]
    for name in ("image", "speech", "text"):
        assert f"multimix_recipes/{name}/defaults.yaml" in names and f"multimix_recipes/{name}/train.py" in names
    _pip("install", "--no-deps", "-q", "--target", str(tmp_path / "site"), str(wheel))
    code = ISOLATE.format(paths=[str(tmp_path / "site")]) + (
        "import urllib.request\n"
        "def offline(*a, **k): raise OSError('network is unreachable (test)')\n"
        "urllib.request.urlopen = offline\n"
        "from multimix.cli import main\n"
        "import multimix_recipes; print('from', multimix_recipes.HERE)\n"
        f"main(['run', 'speech', '--quick', '--device', 'cpu', '--out', {str(tmp_path / 'out')!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert f"from {tmp_path / 'site' / 'multimix_recipes'}" in result.stdout, result.stderr[-2000:]
    assert "is not in this installation: it ships in a clone of the repository, not in the wheel; downloading it " \
           "instead (--data fsdd)" in result.stdout  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "could not download https://github.com/Jakobovski/free-spoken-digit-dataset" in result.stderr


@pytest.mark.slow  # 15-20 s on 2 cores; the default suite's recipe runs already read recipes/data/ from this clone
def test_the_readme_command_runs_offline_from_an_editable_clone(tmp_path):
    """``pip install -e`` of a clone, then ``multimix run image`` (kept tiny): the embedded CIFAR-10 is read from
    the clone's recipes/data/, with no network."""
    source = _copy_of_the_clone(tmp_path / "clone")
    build = "import sys; from setuptools import build_meta; print(build_meta.build_editable(sys.argv[1]))"
    built = subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist")], cwd=source, capture_output=True,
                           text=True)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    site = tmp_path / "site"  # --target never touches the environment's own multimix (--prefix would uninstall it)
    _pip("install", "--no-deps", "-q", "--target", str(site), str(tmp_path / "dist" / built.stdout.split()[-1]))
    code = ISOLATE.format(paths=[str(site)]) + (
        "import urllib.request\n"
        "def offline(*a, **k): raise OSError('network is unreachable (test)')\n"
        "urllib.request.urlopen = offline\n"
        "from multimix.cli import main\n"
        "import multimix, multimix_recipes; print('from', multimix_recipes.HERE, multimix.__file__)\n"
        "main(['run', 'image', '--quick', '--device', 'cpu', '--set', 'progress=false', '--set', 'train_limit=160',"
        " '--set', 'val_size=32', '--set', 'test_limit=64', '--batch-size', '32'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"from {source / 'recipes'} {source / 'multimix' / '__init__.py'}" in result.stdout
    assert "not in this installation" not in result.stdout
    assert f"results in {tmp_path / 'runs' / 'image'}" in result.stdout
    assert (tmp_path / "runs" / "image" / "metrics.json").is_file()
