"""bench/settle_floor.py settles every event it reports, once, and prints its figure in the
shared BENCH format. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_settles_every_event_once_and_prints_its_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "settle_floor.py"), "--events", "1500", "--runs", "1",
         "--synchronous", "OFF"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (figure,) = map(json.loads, result.stdout.splitlines())
    assert (figure["name"], figure["unit"]) == ("settle.floor", "events/s")
    assert figure["value"] > 0
    p = figure["params"]
    assert (p["events"], p["synchronous"], len(p["runs_values"])) == (1500, "OFF", 1)
