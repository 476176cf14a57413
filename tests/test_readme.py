"""The README's quick start is code users paste: run it as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quick_start_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python block"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", README.read_text(), flags=re.S)
    test_command = commands[1].strip()
    lines = ci.strip().splitlines()
    assert test_command in lines, f"{test_command!r} is not a line of .ci/run"
    docs = 'pip install -e ".[docs]" && mkdocs build --strict'
    assert lines[-1] == docs and lines.index(test_command) < lines.index(docs)  # the docs build after the tests
