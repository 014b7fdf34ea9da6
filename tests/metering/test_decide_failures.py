"""What a decision leaves behind when something fails under it, and repeated set-up calls."""

from __future__ import annotations

import pytest

from ledger.metering import GrantConflictError, Meter, PlanError, plan_from_data
from ledger.store import MemoryStore, StoreError
from ledger.store.base import Build

from .fixtures import HOUR, NS, T0, feature, make_meter, window, window_used, windows_layer

F = "codex.task"


class FailingStore(MemoryStore):
    """A memory store whose next write transaction fails (as a lost database would)."""

    fail_next = False

    def transact(self, now: int, build: Build) -> list:  # type: ignore[type-arg]
        if self.fail_next:
            self.fail_next = False
            raise StoreError("the database went away")
        return super().transact(now, build)


def _meter_on(store: MemoryStore) -> Meter:
    template = make_meter(
        {F: feature(windows_layer(window("1h", "1h", 10)), {"kind": "credits"})}, {F: 5}
    )
    meter = Meter(store)
    for plans in template.registry.plans.values():
        for plan in plans:
            meter.publish_plan(plan)
    for book in template.registry.books:
        meter.publish_prices(book)
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 1_000, "p1", T0)
    return meter


def test_a_store_failure_while_holding_gives_the_window_units_back() -> None:
    store = FailingStore()
    meter = _meter_on(store)
    store.fail_next = True
    with pytest.raises(StoreError):
        meter.decide("alice", F, 14, "k1", T0)  # 10 from the window, 4 held on credits
    assert window_used(meter, "alice", F, "1h", HOUR, T0) == 0
    d = meter.decide("alice", F, 14, "k1", T0 + NS)  # the key was not consumed either
    assert d.allowed and [p.units for p in d.parts] == [10, 4]


def test_a_grant_repeated_with_the_same_terms_is_the_same_grant() -> None:
    meter = _meter_on(MemoryStore())
    first = meter.grant("alice", "welcome", 500, T0 + HOUR, T0)
    assert meter.grant("alice", "welcome", 500, T0 + HOUR, T0 + NS) == first
    assert meter.balances("alice")["grant:welcome"] == 500


def test_a_grant_repeated_with_other_terms_is_a_conflict_and_changes_nothing() -> None:
    meter = _meter_on(MemoryStore())
    meter.grant("alice", "welcome", 500, T0 + HOUR, T0)
    with pytest.raises(GrantConflictError, match="welcome"):
        meter.grant("alice", "welcome", 900, T0 + HOUR, T0 + NS)
    assert meter.balances("alice")["grant:welcome"] == 500


@pytest.mark.parametrize("timeout", [2**32, "49711d"])
def test_a_reservation_timeout_beyond_the_ledger_is_a_plan_error(timeout: object) -> None:
    data = {
        "plan": "p",
        "version": 1,
        "features": {F: {"layers": [{"kind": "credits"}], "reservation_timeout": timeout}},
    }
    with pytest.raises(PlanError, match="reservation_timeout"):
        plan_from_data(data)
