"""A meter that keeps its windows in its own memory starts them again from its tables: after a
restart, every window and allowance counts what it counted before (ledger/metering/restore.py).
On the memory store (its tables outlive the meter), SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.metering.decision import Decision
from ledger.metering.restore import horizon, restore_windows
from ledger.metering.windows import MemoryWindows
from ledger.store.base import Store
from ledger.store.memory import MemoryStore

from .fixtures import (
    CREDITS,
    DAY,
    HOUR,
    MINUTE,
    T0,
    Opener,
    allowance_layer,
    book_data,
    feature,
    plan_data,
    reopener,
    window,
    windows_layer,
)
from .pg import pg_cluster, pg_databases

__all__ = ["pg_cluster", "pg_databases"]  # fixtures used by this module

LENGTHS = {"5h": 5 * HOUR, "1d": DAY, "team": HOUR}
PLAN = feature(
    windows_layer(window("5h", "5h", 100), window("1d", "1d", 300)),
    allowance_layer(50, "day"),
    CREDITS,
)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same database again each time it is called (a restarted process)."""
    with reopener(request.param, request, tmp_path) as make:
        yield make


def counted(meter: Meter, now: int) -> dict[str, tuple[Any, ...]]:
    """Every window and allowance log as counted at `now`: total, live entries (time, units,
    token) and what was given back of them."""
    windows: MemoryWindows = meter.windows  # type: ignore[assignment]
    found = {}
    for key in list(windows._logs):
        length = DAY if "|allowance|" in key else LENGTHS[key.rsplit("|", 1)[1]]
        [total] = windows.used([(key, length)], now)
        log = windows._logs[key]
        if total or log.entries:
            found[key] = (total, tuple(log.entries), tuple(sorted(log.released.items())))
    return found


def used_before_restart(opener: Opener) -> tuple[Meter, int, dict[str, Decision]]:
    """A day of use on a fresh meter: window and allowance parts given back, kept, exceeded
    at settlement, left unsettled, and one decision from a day before (its window entries
    have expired; its allowance period is over). Returns the meter, the last time and the
    decisions by key."""
    meter = Meter(opener())
    meter.publish_plan(plan_from_data(plan_data({"f": PLAN})))
    meter.publish_prices(price_book_from_data(book_data({"f": 2})))
    for customer in ("ann", "bob"):
        meter.add_customer(customer, "pro", T0 - 2 * DAY)
        meter.purchase(customer, 10**6, f"p-{customer}", T0 - 2 * DAY)
    old = meter.decide("ann", "f", 30, "old", T0 - DAY - HOUR)
    meter.complete(old.decision_id, 20, T0 - DAY)
    d1 = meter.decide("ann", "f", 60, "d1", T0)  # windows 60
    d2 = meter.decide("ann", "f", 60, "d2", T0 + MINUTE)  # windows 40, allowance 20
    d3 = meter.decide("ann", "f", 80, "d3", T0 + 2 * MINUTE)  # allowance 30, credits 50
    d4 = meter.decide("bob", "f", 30, "d4", T0 + 3 * MINUTE)  # windows 30, never settled
    d5 = meter.decide("bob", "f", 110, "d5", T0 + 4 * MINUTE)  # windows 70, allowance 40
    assert [p.layer for p in d3.parts] == ["allowance", "credits"]
    meter.complete(d1.decision_id, 40, T0 + 10 * MINUTE)  # 20 window units back
    meter.complete(d2.decision_id, 60, T0 + 11 * MINUTE)
    meter.complete(d3.decision_id, 90, T0 + 12 * MINUTE)  # excess 10: the windows have 20
    meter.complete(d5.decision_id, 50, T0 + 13 * MINUTE)  # 40 allowance, 20 window units back
    assert d4.allowed
    return meter, T0 + 20 * MINUTE, {d.key: d for d in (old, d1, d2, d3, d4, d5)}


def test_a_restarted_meter_counts_what_its_windows_counted(opener: Opener) -> None:
    before, now, decided = used_before_restart(opener)
    completion = before.completion(decided["d3"].decision_id)
    assert completion is not None and completion.settled_at == T0 + 12 * MINUTE
    assert ("windows", 10) in [(c.layer, c.units) for c in completion.charges]
    again = Meter(opener())
    assert counted(again, now) == counted(before, now)
    assert counted(again, now)["ann|f|5h"][0] == 40 + 40 + 10  # kept, kept, the excess


def test_a_restarted_meter_refuses_what_the_windows_no_longer_hold(opener: Opener) -> None:
    _, now, _ = used_before_restart(opener)
    again = Meter(opener())
    probe = again.decide("ann", "f", 11, "probe", now)
    assert [(c.layer, c.room) for c in probe.consulted][:2] == [("windows", 10), ("allowance", 0)]


def test_the_rebuild_gives_back_what_a_completion_left_unused_by_itself(opener: Opener) -> None:
    """From the completion, not from what the windows were given back before the restart."""
    meter = Meter(opener())
    meter.publish_plan(plan_from_data(plan_data({"f": PLAN})))
    meter.publish_prices(price_book_from_data(book_data({"f": 2})))
    meter.add_customer("ann", "pro", T0)
    d = meter.decide("ann", "f", 60, "d", T0)
    meter.keep_free = lambda *args: None  # type: ignore[method-assign]  # never given back
    meter.complete(d.decision_id, 15, T0 + MINUTE)
    assert counted(meter, T0 + MINUTE)["ann|f|5h"][0] == 60
    again = Meter(opener())
    assert counted(again, T0 + MINUTE)["ann|f|5h"][0] == 15


def test_a_shared_window_counts_each_feature_by_its_weight_again(opener: Opener) -> None:
    meter = Meter(opener())
    layer = windows_layer(window("5h", "5h", 100), shared=["team"])
    team = {**window("team", "1h", 100), "weights": {"f": 2, "g": 3}}
    meter.publish_plan(
        plan_from_data(
            plan_data({"f": feature(layer), "g": feature(layer, CREDITS)}, shared_windows=[team])
        )
    )
    meter.publish_prices(price_book_from_data(book_data({"f": 1, "g": 1})))
    meter.add_customer("ann", "pro", T0)
    meter.purchase("ann", 10**6, "p", T0)
    f = meter.decide("ann", "f", 20, "f", T0)  # team 40
    g = meter.decide("ann", "g", 30, "g", T0 + MINUTE)  # team 60 (20 units), credits 10
    assert [(p.layer, p.units) for p in g.parts] == [("windows", 20), ("credits", 10)]
    meter.complete(f.decision_id, 5, T0 + 2 * MINUTE)  # team gives back 30
    again = Meter(opener())
    assert counted(again, T0 + 3 * MINUTE) == counted(meter, T0 + 3 * MINUTE)
    assert counted(again, T0 + 3 * MINUTE)["ann|*|team"][0] == 5 * 2 + 20 * 3


def test_windows_given_to_a_meter_are_used_as_they_are(opener: Opener) -> None:
    used_before_restart(opener)
    given = MemoryWindows()
    Meter(opener(), given)
    assert given._logs == {}


def test_only_what_can_still_count_is_read(opener: Opener) -> None:
    before, _, _ = used_before_restart(opener)
    assert horizon([p for ps in before.registry.plans.values() for p in ps]) == 31 * DAY
    before.windows = MemoryWindows()
    assert restore_windows(before) == 6  # the day-old decision is within a month


def test_what_no_window_can_count_any_more_is_not_read(store: Store) -> None:
    meter = Meter(store)
    short = feature(windows_layer(window("5h", "5h", 100), window("1d", "1d", 300)))
    meter.publish_plan(plan_from_data(plan_data({"g": short}, name="short")))
    meter.publish_prices(price_book_from_data(book_data({"g": 1})))
    meter.add_customer("cy", "short", T0 - 2 * DAY)
    made = [meter.decide("cy", "g", 1, f"at-{at}", at) for at in (T0 - 2 * DAY, T0 - DAY, T0)]
    meter.complete(made[0].decision_id, 3, T0)  # two days late, 2 units over: taken at T0
    assert horizon(meter.registry.plans["short"]) == DAY
    meter.windows = MemoryWindows()
    assert restore_windows(meter) == 2  # not the one made a day before the latest
    assert counted(meter, T0)["cy|g|1d"][0] == 2 + 1
    meter.complete(made[2].decision_id, 1, T0 + MINUTE)  # settled after the latest decision
    meter.registry.plans["short"] = [plan_from_data(plan_data({"g": feature(CREDITS)}))]
    assert horizon(meter.registry.plans["short"]) == 0
    meter.windows = MemoryWindows()
    assert restore_windows(meter) == 0  # no plan counts units: nothing read


def test_a_completion_settled_before_its_time_was_kept_counts_from_its_decision() -> None:
    meter, now, decided = used_before_restart(MemoryStore)
    d3 = decided["d3"]
    completions = meter.tables.completions  # type: ignore[attr-defined]
    completions[d3.decision_id] = replace(completions[d3.decision_id], settled_at=0)
    again = Meter(meter.store)
    excess = [e for e in counted(again, now)["ann|f|5h"][1] if e[2].endswith(":excess")]
    assert excess == [(d3.now, 10, f"{d3.decision_id}:excess")]


def test_the_rebuild_evicts_as_deciding_did_when_a_later_version_lengthens_a_window(
    opener: Opener,
) -> None:
    """Deciding under version 1 (a 10-minute window) evicted what had expired under it; version
    2 makes the same window 5 hours long, and a rebuild must not bring the evicted entry back
    into it."""
    meter = Meter(opener())
    short = feature(windows_layer(window("w", "10m", 100)), CREDITS)
    long = feature(windows_layer(window("w", "5h", 100)), CREDITS)
    meter.publish_plan(plan_from_data(plan_data({"f": short}, effective_from=T0 - DAY)))
    meter.publish_plan(plan_from_data(plan_data({"f": long}, version=2, effective_from=T0 + HOUR)))
    meter.publish_prices(price_book_from_data(book_data({"f": 2})))
    meter.add_customer("ann", "pro", T0 - DAY)
    meter.purchase("ann", 10**6, "p", T0 - DAY)
    meter.decide("ann", "f", 30, "a", T0)
    meter.decide("ann", "f", 5, "b", T0 + 30 * MINUTE)  # evicts "a" from the 10-minute window
    later = meter.decide("ann", "f", 1, "c", T0 + 2 * HOUR)  # version 2
    assert later.plan_version == 2
    now = T0 + 2 * HOUR
    assert meter.windows.used([("ann|f|w", 5 * HOUR)], now) == [6]
    again = Meter(opener())
    assert again.restored == 3
    assert again.windows.used([("ann|f|w", 5 * HOUR)], now) == [6]
