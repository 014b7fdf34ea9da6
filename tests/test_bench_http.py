"""bench/http.py runs a real `python -m ledger.api` server on SQLite and on memory:// and prints
its figures in the shared BENCH format; every decision it sent was answered 200 and allowed
(the script fails otherwise). No timing is asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_serves_every_decision_and_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "http.py"), "--quick", "--db", "both"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    figures = [json.loads(line) for line in result.stdout.splitlines()]
    named = {(f["name"], f["params"]["store"]): f for f in figures}
    assert len(named) == len(figures) == 6, result.stdout
    for store in ("sqlite", "memory"):
        for name in ("http.decide", "http.decide.p50_ms", "http.decide.p99_ms"):
            value = named[(name, store)]["value"]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, store)
        params = named[("http.decide", store)]["params"]
        assert params["decisions_per_run"] == 1_000 and len(params["runs"]) == 1
        assert params["server_cpu_us_per_decision"] > 0
