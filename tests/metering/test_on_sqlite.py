"""The access-engine suite again with every meter on a SQLite file: decisions, holds,
completions and the registry go through the SQL tables, not memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SUITES = [
    "test_decide.py",
    "test_complete.py",
    "test_grants_pool.py",
    "test_metering_bad_input.py",
    "test_plans.py",
]


def test_the_metering_suite_passes_on_sqlite(tmp_path: Path) -> None:
    here = Path(__file__).parent
    env = {**os.environ, "TOLLGATE_METER_STORE": str(tmp_path)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *[str(here / name) for name in SUITES],
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert list(tmp_path.glob("*.db")), "no meter used a SQLite file"
