"""bench/restore.py runs and prints its figure in the shared BENCH format (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_run_prints_the_figure_as_json() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "restore.py"), "--users", "10", "--hours", "24"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    figure = json.loads(line)
    assert set(figure) == {"name", "value", "unit", "params"}
    assert (figure["name"], figure["unit"]) == ("restore.windows", "decisions/s")
    assert figure["value"] > 0 and figure["params"]["decisions"] > 0
    assert len(figure["params"]["runs_values"]) == 3
