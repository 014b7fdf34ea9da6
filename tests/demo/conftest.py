"""One small demo run shared by the demo tests (30 users over a simulated week, seed 9: a few
seconds on SQLite, and a seed whose week has refusals, purchases at the wall, waiting, giving up,
a write-off, pool use, expired grants and lapsed reservations)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger import cli
from ledger.demo_command import DemoOutcome, demo

USERS, HOURS, SEED = 30, 168, 9


@dataclass(frozen=True)
class Ran:
    outcome: DemoOutcome
    output: str  # what the command printed


def run_demo(db: Path, report: Path, users: int = USERS, seed: int = SEED) -> Ran:
    with cli.console.capture() as printed:
        outcome = demo(db, report, users, HOURS, seed)
    return Ran(outcome, printed.get())


@pytest.fixture(scope="session")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    folder = tmp_path_factory.mktemp("demo")
    return run_demo(folder / "demo.db", folder / "demo.html")
