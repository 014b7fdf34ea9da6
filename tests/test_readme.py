"""The README's examples and commands are the ones that work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "the README should show the library in use"
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, cwd=ROOT
        )
        assert result.returncode == 0, result.stderr


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_section = README.split("Run every test", 1)[1]
    command = re.search(r"```sh\n(.*?)\n```", test_section, re.S)
    assert command is not None
    ci_script = (ROOT / ".ci" / "run").read_text()
    assert command.group(1).strip() in ci_script.splitlines()
