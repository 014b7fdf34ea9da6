"""Settling after a reservation lapsed: the money the expiry returned pays for the usage (it is
not written off), whichever path settles it and on every store."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.store import MemoryStore, SqliteStore, Store

NS = 10**9


def lapsed_hold_completion(store: Store, *, reported_first: bool) -> tuple[object, ...]:
    """Buy 20 units' worth, hold all 20 for 60 s, complete 11 units 100 s later (reported
    first, while the hold was live, or not): the used units' charges and the credits left."""
    meter = Meter(store)
    features = {"f": {"layers": [{"kind": "credits"}], "reservation_timeout": 60}}
    meter.publish_plan(plan_from_data({"plan": "p", "version": 1, "features": features}))
    book = {"version": 1, "effective_from": 0, "prices": {"f": 10}}
    meter.publish_prices(price_book_from_data(book))
    meter.add_customer("c", "p", 1000 * NS)
    meter.purchase("c", 200, "buy", 1000 * NS)
    decision = meter.decide("c", "f", 20, "k", 1000 * NS)
    if reported_first:
        meter.report_usage("c", "f", 11, "u", decision.decision_id, 1030 * NS, 1030 * NS)
    completion = meter.complete(decision.decision_id, 11, 1100 * NS)
    charges = [(c.layer, c.units, c.amount) for c in completion.charges]
    return charges, meter.balances("c")["credits"]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
@pytest.mark.parametrize("reported_first", [False, True])
def test_a_completion_after_a_lapsed_hold_charges_the_funds_it_released(
    tmp_path: Path, kind: str, reported_first: bool
) -> None:
    store: Store = SqliteStore(tmp_path / "lapsed.db") if kind == "sqlite" else MemoryStore()
    with store:
        found = lapsed_hold_completion(store, reported_first=reported_first)
    assert found == ([("credits", 11, 110)], 90)
