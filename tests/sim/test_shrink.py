"""A failing seed reproduces exactly when run again, its trace shrinks to a few steps, and the
shrunk steps replayed alone fail the same way. Shown with a seeded bug in the kernel (run by the
reference ledger, in this process) and one in the access engine (in a fresh process)."""

from __future__ import annotations

import pytest

from ledger.core import reference
from ledger.sim import simulate
from proofs import mutants as kernel_mutants

MAX_SHRUNK = 30


@pytest.fixture
def void_releases_wrong_amount(monkeypatch: pytest.MonkeyPatch) -> None:
    [m] = [k for k in kernel_mutants.MUTANTS if k.name == "void_releases_wrong_amount"]
    monkeypatch.setattr(reference, "kernel", kernel_mutants.load(m))


def _first_failing(steps: int) -> int:
    for seed in range(200):
        if not simulate(seed, steps, shrink_failure=False).ok:
            return seed
    raise AssertionError("no seed failed")


@pytest.mark.usefixtures("void_releases_wrong_amount")
def test_a_failing_seed_reproduces_and_shrinks() -> None:
    seed = _first_failing(2000)
    first = simulate(seed, 2000)
    again = simulate(seed, 2000)
    assert not first.ok
    assert first.violations == again.violations
    assert first.trace == again.trace
    assert first.shrunk == again.shrunk
    assert 0 < len(first.shrunk_steps) <= MAX_SHRUNK, first.report()
    assert first.shrunk_steps[-1] <= first.violations[0].step
    alone = simulate(seed, 2000, only=first.shrunk_steps, shrink_failure=False)
    assert not alone.ok
    assert alone.violations[0].category == first.violations[0].category
    assert alone.violations[0].step == first.shrunk_steps[-1]
    report = first.report()
    assert f"seed {seed} FAILED at step #{first.violations[0].step}" in report
    assert f"--only {','.join(map(str, first.shrunk_steps))}" in report


def test_a_metering_mutant_shrinks_to_a_short_trace() -> None:
    from .test_mutants import hunt

    result = hunt("grants_burnt_out_of_order", "--shrink", "yes")
    assert result["found"], result
    shrunk = result["shrunk_steps"]
    assert isinstance(shrunk, list)
    assert 0 < len(shrunk) <= MAX_SHRUNK, result
