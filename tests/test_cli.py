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
