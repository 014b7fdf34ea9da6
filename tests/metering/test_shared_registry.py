"""Several processes on one database: what one registers, the others find (customers, grants),
so a long-running worker settles usage of customers added after it started."""

from __future__ import annotations

from pathlib import Path

from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.store import SqliteStore

NS = 10**9
PLAN = {
    "plan": "p",
    "version": 1,
    "features": {"f": {"layers": [{"kind": "grants"}, {"kind": "credits"}]}},
}


def test_a_worker_started_first_settles_a_later_customer_from_its_grant(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    api = Meter(SqliteStore(path))
    api.publish_plan(plan_from_data(PLAN))
    api.publish_prices(
        price_book_from_data({"version": 1, "effective_from": 0, "prices": {"f": 7}})
    )
    worker = Meter(SqliteStore(path))  # started before the customer exists
    api.add_customer("bob", "p", NS)
    api.grant("bob", "g", 700, 3600 * NS, NS)
    d = api.decide("bob", "f", 10, "k", 2 * NS)
    report = worker.report_usage("bob", "f", 30, "u", d.decision_id, 3 * NS, 3 * NS)
    assert not report.duplicate
    assert worker.settle_pending("w", 4 * NS) == 1
    completion = worker.completion(d.decision_id)
    assert completion is not None
    charged = {c.layer: c.amount for c in completion.charges}
    assert charged == {"grant:g": 30 * 7}  # the grant covers all 30 units: nothing written off
    assert api.balances("bob")["grant:g"] == 700 - 30 * 7
