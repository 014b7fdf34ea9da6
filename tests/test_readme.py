"""The README's examples and commands are the ones that work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 2, "the README should show the ledger and a store in use"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for block in blocks:  # in an empty folder: an example's files must not land in the checkout
        result = subprocess.run(
            [sys.executable, "-c", block],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=environment,
        )
        assert result.returncode == 0, result.stderr


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_section = README.split("Run every test", 1)[1]
    command = re.search(r"```sh\n(.*?)\n```", test_section, re.S)
    assert command is not None
    ci_script = (ROOT / ".ci" / "run").read_text()
    assert command.group(1).strip() in ci_script.splitlines()
