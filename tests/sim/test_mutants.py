"""Every seeded bug is found by the swarm within 200 seeds: the transition kernel's (those of
proofs/mutants.py that mutate ledger/core/kernel.py; they bite through the comparison with the
reference ledger, which then runs the mutated kernel) and the access engine's
(ledger/sim/mutants.py; each hunted in a fresh process, since a metering mutant must be installed
before anything imports ledger.metering). A hunt stops at the first failing seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.core import reference
from ledger.sim import mutants, swarm
from proofs import mutants as kernel_mutants

ROOT = Path(__file__).resolve().parents[2]
KERNEL = [m.name for m in kernel_mutants.MUTANTS if m.file == kernel_mutants.KERNEL]
METERING = [m.name for m in mutants.MUTANTS]


def hunt(name: str, *extra: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "ledger.sim.mutants", name, "--seeds", "0..199", *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_there_are_enough_seeded_bugs_and_each_applies_once() -> None:
    assert len(KERNEL) >= 17
    assert len(METERING) >= 6
    for m in mutants.MUTANTS:
        assert mutants.mutated_source(m) != (ROOT / m.file).read_text()


def test_a_metering_mutant_cannot_be_installed_too_late() -> None:
    import ledger.metering  # noqa: F401 - already imported by the tests in this process

    with pytest.raises(mutants.MutantError, match="fresh process"):
        mutants.install(METERING[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", KERNEL)
def test_the_swarm_finds_the_kernel_mutant(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference ledger runs the mutated kernel (swapped in here; the swarm's worker
    processes inherit it), the store runs the real engine: the comparison must tell."""
    [m] = [k for k in kernel_mutants.MUTANTS if k.name == name]
    monkeypatch.setattr(reference, "kernel", kernel_mutants.load(m))
    summary = swarm(range(200), 2000, stop_at_first=True, shrink_first=False)
    assert summary.failures, f"{name} survived {len(summary.seeds_run)} seeds"
    first = summary.failures[0]
    print(f"{name}: seed {first.seed}, step {first.failed_step}: {first.violations[0].message}")


@pytest.mark.slow
@pytest.mark.parametrize("name", METERING)
def test_the_swarm_finds_the_metering_mutant(name: str) -> None:
    result = hunt(name)
    assert result["found"], result
    print(f"{name}: seed {result['seed']}, step {result['step']}: {result['violation']}")
