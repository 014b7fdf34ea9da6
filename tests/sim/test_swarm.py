"""The CI swarm: 200 seeds x 2,000 steps on the memory store and 20 seeds on SQLite, every
check after every step, all passing; every kind of fault is injected along the way."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.sim import swarm

FAULTS = (
    "node_killed",
    "clock_skew_corrected",
    "duplicate_request",
    "redelivered_report",
    "reordered_report",
    "redelivered_settlement",
    "stalled_worker",
    "store_transaction_failed",
)


@pytest.mark.slow
def test_200_seeds_on_the_memory_store() -> None:
    summary = swarm(range(200), 2000, "memory")
    assert summary.ok, summary.report()
    assert summary.executed == 200 * 2000
    for kind in FAULTS:
        assert summary.faults.get(kind, 0) > 0, kind


@pytest.mark.slow
def test_20_seeds_on_sqlite(tmp_path: Path) -> None:
    summary = swarm(range(1000, 1020), 2000, "sqlite", directory=tmp_path)
    assert summary.ok, summary.report()
    assert summary.executed == 20 * 2000
    for kind in FAULTS:
        assert summary.faults.get(kind, 0) > 0, kind
