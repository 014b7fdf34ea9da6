"""bench/restore.py runs and prints its figures in the shared BENCH format (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_run_prints_the_figures_as_json() -> None:
    bench = str(ROOT / "bench" / "restore.py")
    result = subprocess.run(
        [sys.executable, bench, "--users", "10", "--hours", "24", "--old", "2000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    windows, opening = map(json.loads, result.stdout.splitlines())
    for figure in (windows, opening):
        assert set(figure) == {"name", "value", "unit", "params"}
        assert figure["value"] > 0 and figure["params"]["decisions"] > 0
        assert len(figure["params"]["runs_values"]) == 3
    assert (windows["name"], windows["unit"]) == ("restore.windows", "decisions/s")
    assert (opening["name"], opening["unit"]) == ("restore.open_s", "s")
    assert opening["params"]["decisions"] == windows["params"]["decisions"]
    assert 1000 < opening["params"]["old_decisions"] <= 2000
