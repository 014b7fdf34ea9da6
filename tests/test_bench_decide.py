"""bench/decide.py runs and prints its figures in the shared BENCH format (no timing asserted)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"name", "value", "unit", "params"}
COMPARISONS = {"decide.vs_limits", "decide.vs_limits.tuned_gc"}


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def test_quick_run_prints_every_figure_as_json() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "decide.py"), "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines, f"no figures on stdout; stderr:\n{result.stderr}"
    figures = {}
    for line in lines:
        figure = json.loads(line)  # everything on stdout is a figure
        assert isinstance(figure, dict), line
        assert figure.keys() >= KEYS, line
        assert isinstance(figure["name"], str) and isinstance(figure["unit"], str), line
        assert isinstance(figure["params"], dict), line
        assert _positive(figure["value"]), line
        assert figure["name"] not in figures, f"{figure['name']} printed twice"
        figures[figure["name"]] = figure

    expected = {
        "decide.memory",
        "decide.memory.p50_us",
        "decide.memory.p99_us",
        "decide.vs_limits",
        "decide.memory.tuned_gc",
        "decide.vs_limits.tuned_gc",
    }
    if shutil.which("redis-server") is not None:
        expected.add("decide.redis")
    assert expected <= figures.keys(), sorted(expected - figures.keys())

    for name in COMPARISONS:
        figure = figures[name]
        assert isinstance(figure.get("peer"), str) and figure["peer"], name
        assert _positive(figure.get("peer_value")), name
        assert _positive(figure.get("ratio")), name
        # the ratio is value / peer_value (both rounded before printing)
        assert math.isclose(figure["ratio"], figure["value"] / figure["peer_value"], rel_tol=0.01)

    for name in ("decide.memory", "decide.vs_limits", "decide.memory.tuned_gc"):
        params = figures[name]["params"]
        for key in ("decisions", "customers", "windows", "runs", "python", "cores"):
            assert key in params, f"{name} params lack {key!r}"
    if "decide.redis" in figures:
        assert "started by the script" in figures["decide.redis"]["params"]["server"]
