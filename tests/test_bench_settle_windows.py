"""bench/settle_windows.py settles what it decided and prints its figures in the shared BENCH
format (both when redis-server is installed). No timing is asserted."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_settles_every_event_and_prints_its_figures() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "settle_windows.py"), "--events", "200",
         "--runs", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = {f["name"]: f for f in map(json.loads, result.stdout.splitlines())}
    expected = {"settle.windows.memory"}
    if shutil.which("redis-server") is not None:
        expected.add("settle.windows.redis")
    assert set(figures) == expected, result.stdout
    for f in figures.values():
        assert f["unit"] == "events/s" and math.isfinite(f["value"]) and f["value"] > 0
        assert f["params"]["events"] == 200 and len(f["params"]["runs"]) == 1
