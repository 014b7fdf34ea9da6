"""bench/grown_tables.py reads what it wrote, through plans cached on the empty tables, and
prints its figures in the shared BENCH format. No timing is asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.store.postgres_cluster import find_binaries, skip_or_fail

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_reads_the_grown_tables_and_prints_its_figures() -> None:
    if find_binaries() is None:
        skip_or_fail("PostgreSQL server binaries not found")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "grown_tables.py"), "--events", "3000",
         "--keys", "20", "--queued", "7", "--runs", "1", "--repeat", "2"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = {f["name"]: f for f in map(json.loads, result.stdout.splitlines())}
    assert set(figures) == {"grown.postgres.known_usage_ms", "grown.postgres.backlog_ms"}
    for f in figures.values():
        assert f["unit"] == "ms" and math.isfinite(f["value"]) and f["value"] > 0
        p = f["params"]
        assert (p["events"], p["keys"], p["queued"], len(p["runs_values"])) == (3000, 20, 7, 1)
