"""The same seed gives a byte-identical trace: run twice in one process, and in two processes
with different hash seeds (nothing may depend on set or dict order of hashed strings). The runs
go on past a violation (`keep_going`), so the whole trace is compared whatever they find."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from ledger.sim import simulate

ROOT = Path(__file__).resolve().parents[2]
SEED, STEPS = 11, 1000

_CHILD = """
import hashlib, sys
from ledger.sim import simulate
result = simulate(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], keep_going=True)
sys.stdout.write(hashlib.sha256(result.trace_text().encode()).hexdigest())
"""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _child(hash_seed: str, store: str, steps: int) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(SEED), str(steps), store],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    return done.stdout.strip()


def test_the_same_seed_gives_a_byte_identical_trace() -> None:
    first = simulate(SEED, STEPS, keep_going=True)
    second = simulate(SEED, STEPS, keep_going=True)
    assert first.trace_text() == second.trace_text()
    assert first.faults == second.faults
    assert first.executed == STEPS
    assert len(first.trace) == STEPS + 1  # a header, then a line per step


def test_the_trace_does_not_depend_on_the_hash_seed() -> None:
    here = _digest(simulate(SEED, STEPS, keep_going=True).trace_text())
    assert _child("1", "memory", STEPS) == here
    assert _child("2", "memory", STEPS) == here


def test_the_sqlite_trace_is_deterministic_too(tmp_path: Path) -> None:
    first = simulate(SEED, 300, "sqlite", tmp_path, keep_going=True)
    second = simulate(SEED, 300, "sqlite", tmp_path, keep_going=True)
    assert first.trace_text() == second.trace_text()
    assert _child("3", "sqlite", 300) == _digest(first.trace_text())
