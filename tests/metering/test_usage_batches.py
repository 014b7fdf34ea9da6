"""Usage reported in batches and settled by pick: the outcomes within one batch are those of
the same reports sent one by one, and a worker sees what another process registered since
its last look (the registry's change stamp), on the memory store and on a SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger.metering import InvalidRequestError, Meter, plan_from_data, price_book_from_data
from ledger.metering.settlement import Report, UsageConflictError, UsageRejectedError
from ledger.store import SqliteStore
from ledger.store.base import Store

NS = 10**9
PLAN = {
    "plan": "p",
    "version": 1,
    "features": {"f": {"layers": [{"kind": "grants"}, {"kind": "credits"}]}},
}


def new_meter(store: Store) -> Meter:
    meter = Meter(store)
    meter.publish_plan(plan_from_data(PLAN))
    meter.publish_prices(
        price_book_from_data({"version": 1, "effective_from": 0, "prices": {"f": 7}})
    )
    for name in ("ann", "ben"):
        meter.add_customer(name, "p", NS)
        meter.purchase(name, 10_000, "opening", NS)
    return meter


def body(customer: str, key: str, decision_id: int, units: int = 3) -> dict[str, Any]:
    return {
        "customer": customer,
        "feature": "f",
        "units": units,
        "key": key,
        "decision_id": decision_id,
        "occurred_at": 2 * NS,
    }


def outcome(o: Report | Exception) -> str:
    if isinstance(o, Report):
        return "duplicate" if o.duplicate else "new"
    if isinstance(o, UsageRejectedError):
        return o.reason
    return type(o).__name__


def test_a_batch_decides_each_report_as_if_sent_alone(store: Store) -> None:
    meter = new_meter(store)
    a1, a2 = (meter.decide("ann", "f", 5, k, 2 * NS).decision_id for k in ("d1", "d2"))
    b1 = meter.decide("ben", "f", 5, "d1", 2 * NS).decision_id
    first = meter.report_usage_batch([body("ann", "u1", a1)], 3 * NS)
    assert [outcome(o) for o in first] == ["new"]
    batch = [
        body("ann", "u1", a1),  # the same key and body as the earlier batch
        body("ann", "u1", a1, units=4),  # the same key, another body
        body("ann", "u2", a1),  # the decision already has usage
        body("ann", "u3", a2),  # new
        body("ann", "u3", a2),  # the same again within the batch
        body("ann", "u4", a2),  # a2's usage came earlier in this batch
        body("ann", "u5", b1),  # ben's decision
        body("cid", "u6", a2),  # unknown customer
        {**body("ben", "u7", b1), "units": -1},  # invalid
        body("ben", "u7", b1),  # new: the invalid report left no trace
    ]

    outcomes = meter.report_usage_batch(batch, 4 * NS)

    assert [outcome(o) for o in outcomes] == [
        "duplicate",
        "key_reused",
        "decision_already_reported",
        "new",
        "duplicate",
        "decision_already_reported",
        "unknown_decision",
        "unknown_customer",
        "InvalidRequestError",
        "new",
    ]
    assert isinstance(outcomes[1], UsageConflictError)
    assert isinstance(outcomes[8], InvalidRequestError)
    assert isinstance(outcomes[3], Report) and isinstance(outcomes[4], Report)
    assert outcomes[4].usage == outcomes[3].usage  # the duplicate names the event just recorded
    usage, rejections, outbox = meter.tables.read(
        meter.store,
        lambda cur: (
            list(meter.tables.all_usage(cur)),
            len(list(meter.tables.all_rejections(cur))),
            meter.tables.outbox_ids(cur),
        ),
    )
    assert sorted((u.customer, u.key) for u in usage) == [
        ("ann", "u1"),
        ("ann", "u3"),
        ("ben", "u7"),
    ]
    assert outbox == {u.id for u in usage}
    assert rejections == 6  # one per refused report (the duplicates are not refusals)
    assert meter.settle_pending("w", 5 * NS) == 3
    assert meter.backlog() == (0, None)


def test_a_worker_sees_a_grant_added_after_its_last_look(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    api = new_meter(SqliteStore(path))
    worker = Meter(SqliteStore(path))
    d1 = api.decide("ann", "f", 5, "d1", 2 * NS)
    worker.report_usage("ann", "f", 5, "u1", d1.decision_id, 2 * NS, 2 * NS)
    assert worker.settle_pending("w", 3 * NS) == 1  # the worker is up to date now
    api.grant("ann", "g", 700, 3600 * NS, 3 * NS)  # another process adds a grant
    d2 = api.decide("ann", "f", 5, "d2", 4 * NS)  # held on the grant
    worker.report_usage("ann", "f", 8, "u2", d2.decision_id, 4 * NS, 4 * NS)

    assert worker.settle_pending("w", 5 * NS) == 1

    completion = worker.completion(d2.decision_id)
    assert completion is not None
    # The excess of 3 units is charged from the grant, which the worker must know of.
    assert {c.layer: c.units for c in completion.charges} == {"grant:g": 8}


def test_a_worker_settles_what_is_queued_when_it_commits_not_what_it_saw_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker settles the events this one just saw queued; this one's batch then
    settles the events still queued (picked inside its transaction), not nothing."""
    path = tmp_path / "shared.db"
    api = new_meter(SqliteStore(path))
    for n in range(4):
        d = api.decide("ann", "f", 1, f"d{n}", 2 * NS)
        api.report_usage("ann", "f", 1, f"u{n}", d.decision_id, 2 * NS, 2 * NS)
    slow, fast = Meter(SqliteStore(path)), Meter(SqliteStore(path))
    looks: list[list[int]] = []
    left: set[int] = set()
    claimable = slow.tables.claimable

    def look_then_lose_the_race(cur: Any, now: int, limit: int, start: int) -> list[int]:
        looks.append(claimable(cur, now, limit, start))
        if len(looks) == 1:  # between this worker's look and its transaction
            assert fast.settle_pending("fast", now, limit=2) == 2
            left.update(fast.tables.read(fast.store, fast.tables.outbox_ids))
        return looks[-1]

    monkeypatch.setattr(slow.tables, "claimable", look_then_lose_the_race)
    assert slow.settle_pending("slow", 3 * NS, limit=2) == 2
    assert len(looks) == 2 and len(left) == 2 and set(looks[1]) == left
    assert api.backlog() == (0, None)
