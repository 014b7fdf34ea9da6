"""What the in-process engine keeps per decision: decisions stored packed (plain tuples of
atoms) come back equal, and deciding does not grow what the garbage collector must traverse
(a full collection over millions of kept records was most of a decision's cost)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.metering import registry as registry_module
from ledger.metering.decision import (
    Consulted,
    Decision,
    Part,
    Reason,
    Unblock,
    pack_decision,
    unpack_decision,
)
from ledger.store.sqlite import SqliteStore

from .fixtures import (
    CREDITS,
    HOUR,
    T0,
    book_data,
    feature,
    make_meter,
    plan_data,
    window,
    windows_layer,
)

F = "codex.task"
ints = st.integers(min_value=0, max_value=2**63 - 1)
names = st.text(max_size=8)
parts = st.builds(Part, names, ints, ints, ints, ints)
consulted = st.builds(Consulted, names, ints, ints)
reasons = st.builds(Reason, names, names, names)
unblocks = st.builds(Unblock, names, ints, names)
decisions = st.builds(
    Decision,
    *(ints, names, names, names, ints, st.booleans(), ints, names, ints, ints, ints, ints),
    parts=st.lists(parts, max_size=4).map(tuple),
    consulted=st.lists(consulted, max_size=4).map(tuple),
    reasons=st.lists(reasons, max_size=3).map(tuple),
    retry_after=st.none() | ints,
    unblock=st.lists(unblocks, max_size=2).map(tuple),
    timeout_override=st.none() | ints,
)


@given(decisions)
def test_a_packed_decision_unpacks_equal(d: Decision) -> None:
    packed = pack_decision(d)
    assert type(packed) is tuple
    assert all(x is None or type(x) in (int, str, bool) for x in packed)
    assert unpack_decision(packed) == d


def _tracked_after_collection() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_deciding_does_not_grow_what_the_collector_traverses() -> None:
    customers, rounds = 50, 40
    meter = make_meter({F: feature(windows_layer(window("5h", "5h", 10**6)), CREDITS)}, {F: 7})
    for c in range(customers):
        meter.add_customer(f"c{c}", "pro", T0)

    def decide_round(r: int) -> None:
        for c in range(customers):
            meter.decide(f"c{c}", F, 1, f"k{r}", T0 + r * HOUR + c)

    decide_round(0)  # every customer's window logs exist from here on
    before = _tracked_after_collection()
    for r in range(1, rounds):
        decide_round(r)
    grown = _tracked_after_collection() - before
    kept = customers * (rounds - 1)
    assert meter.tables.decision_by_key(None, "c7", f"k{rounds - 1}") is not None
    assert grown < kept // 10, f"{grown} more tracked objects after {kept} decisions"


def test_a_meter_on_a_database_caches_only_the_recent_decisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = 5
    monkeypatch.setattr(registry_module, "DECISIONS_CACHED", cached)
    meter = Meter(SqliteStore(tmp_path / "m.db", synchronous="NORMAL"))
    meter.publish_plan(
        plan_from_data(plan_data({F: feature(windows_layer(window("5h", "5h", 99)))}))
    )
    meter.publish_prices(price_book_from_data(book_data({F: 7})))
    meter.add_customer("c", "pro", T0)
    made = [meter.decide("c", F, 1, f"k{i}", T0 + i) for i in range(3 * cached)]
    assert len(meter.registry.decisions) == len(meter.registry.decisions_by_id) == cached
    assert set(meter.registry.decisions_by_id) == {d.decision_id for d in made[-cached:]}
    # An evicted decision is read from the tables: a replay still consumes nothing.
    assert meter.decide("c", F, 1, "k0", T0 + 99) == made[0]
    assert meter.decision(made[1].decision_id) == made[1]
    assert meter.windows.used([(f"c|{F}|5h", 5 * HOUR)], T0 + 99) == [3 * cached]
    meter.store.close()
