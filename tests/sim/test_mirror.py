"""The reference ledger the simulation runs is `ReferenceLedger` itself; only its maps are
`FastMap`s. It must give exactly the plain one's results and states on a simulated run's
batches."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ledger.core.reference import ReferenceLedger
from ledger.sim.mirror import COMMITTED, FORGOT_FAILURES, Batch, FastMap, empty_reference
from ledger.sim.run import Runner
from ledger.sim.world import generate


def test_fast_maps_read_and_compare_like_total_maps() -> None:
    m = FastMap(0, 16)
    m2 = m.set(5, 3).set(21, 4).set(5, 0)
    assert (m2[5], m2[21], m2[99]) == (0, 4, 0)
    assert len(m2) == 1 and list(m2) == [21] and dict(m2.items()) == {21: 4}
    assert m[21] == 0  # the original is unchanged
    assert m2.set(21, 4) is m2  # writing the same value copies nothing
    plain = ReferenceLedger.empty().state.debits_posted.set(21, 4)
    assert m2 == plain


def test_the_fast_reference_agrees_with_the_plain_one(tmp_path: Path) -> None:
    batches: list[Batch] = []
    config, steps = generate(5, 600)
    runner = Runner(config, "memory", tmp_path)
    recorded = runner.mirror.on_batches

    def both(given: list[Batch]) -> None:
        batches.extend(given)
        recorded(given)

    runner.recorder.on_batches = both
    for step in steps:  # every step, whatever the checks find (this test is about the maps)
        runner._run_step(step)
    runner.close()
    assert len(batches) > 500
    fast, plain = empty_reference(), ReferenceLedger.empty()
    for events, now, _, how in batches:
        fast_next, fast_results = fast.apply(events, now)
        plain_next, plain_results = plain.apply(events, now)
        assert fast_results == plain_results
        if how == COMMITTED:
            fast, plain = fast_next, plain_next
        elif how == FORGOT_FAILURES:
            fast = ReferenceLedger(dataclasses.replace(fast_next.state, failed=fast.state.failed))
            plain = ReferenceLedger(
                dataclasses.replace(plain_next.state, failed=plain.state.failed)
            )
    for field in dataclasses.fields(plain.state):
        assert getattr(fast.state, field.name) == getattr(plain.state, field.name), field.name
