"""In-process flows the end-to-end test does not reach: organisations and pools, grant expiry
through `POST /v1/settlement/run`, metrics that never count a replay twice, and a customer
added by another process sharing the database."""

from __future__ import annotations

import time
from pathlib import Path

from ledger.api import create_api_key, create_app
from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.store.sqlite import SqliteStore

from .helpers import FEATURE, PLAN, PRICES, TestClient, bearer, make_api
from .test_serve import metric

NS = 10**9


def test_orgs_top_ups_and_pool_balances() -> None:
    api = make_api(customers=())
    admin = api.as_("admin")
    post = api.client.post
    assert post("/v1/orgs", json={"org": "acme", "overage_cap": 5_000}, headers=admin).json() == {
        "org": "acme",
        "overage_cap": 5_000,
    }
    member = {"customer": "dan", "plan": "pro", "org": "acme"}
    assert post("/v1/customers", json=member, headers=admin).json() == member
    topped = post("/v1/orgs/acme/top-ups", json={"top_up_id": "t1", "amount": 70_000},
                  headers=admin).json()  # fmt: skip
    assert (topped["owner"], topped["amount"], topped["available"]) == ("acme", 70_000, 70_000)
    again = post("/v1/orgs/acme/top-ups", json={"top_up_id": "t1", "amount": 70_000},
                 headers=admin).json()  # fmt: skip
    assert again["available"] == 70_000  # the same top-up id credits once
    balances = api.client.get("/v1/customers/dan/balances", headers=admin).json()
    assert balances["balances"] == {"credits": 0, "pool": 70_000, "overage": 5_000}
    assert balances["total"] == 75_000
    record = api.client.get("/v1/customers/dan", headers=admin).json()
    assert record == {"customer": "dan", "plan": "pro", "org": "acme"}


def test_settlement_run_expires_grants_to_breakage() -> None:
    api = make_api()
    now = [time.time_ns()]
    app = create_app(api.meter, clock=lambda: now[0])
    client = TestClient(app, raise_server_exceptions=False)
    admin = api.as_("admin")
    grant = {"grant": "short", "amount": 7_000, "expires_at": now[0] + 10 * NS}
    made = client.post("/v1/customers/alice/grants", json=grant, headers=admin)
    assert made.status_code == 200, made.text
    assert made.json()["created_at"] == now[0]
    assert (
        client.get("/v1/customers/alice/balances", headers=admin).json()["balances"]["grant:short"]
        == 7_000
    )
    nothing = client.post("/v1/settlement/run", headers=admin).json()
    assert nothing == {"settled": 0, "grants_expired": 0, "backlog": 0, "oldest_unsettled_at": None}
    now[0] += 10 * NS  # the grant serves decisions before its expiry only
    swept = client.post("/v1/settlement/run", headers=admin).json()
    assert swept["grants_expired"] == 1
    balances = client.get("/v1/customers/alice/balances", headers=admin).json()["balances"]
    assert balances["grant:short"] == 0
    assert metric(client.get("/metrics").text, "tollgate_grants_expired_total") == 1
    history = client.get("/v1/customers/alice/history", headers=admin).json()["entries"]
    short = [e for e in history if e["account"] == "grant:short"]
    assert [e["change"] for e in short] == [7_000, -7_000]


def test_replays_are_not_counted_twice_in_the_metrics() -> None:
    api = make_api()
    service = api.as_("service")
    body = {"customer": "alice", "feature": FEATURE, "units": 150, "idempotency_key": "m-1"}
    first = api.client.post("/v1/decisions", json=body, headers=service).json()
    assert api.client.post("/v1/decisions", json=body, headers=service).json() == first
    path = f"/v1/decisions/{first['decision_id']}/complete"
    started = time.time_ns()
    once = api.client.post(path, json={"actual_units": 120}, headers=service).json()
    assert started <= once["settled_at"] <= time.time_ns()
    done = api.client.post(path, json={"actual_units": 120}, headers=service).json()
    assert done == once  # the same completion, settled_at included
    # 100 free units in the window and 50 held on credits; 120 used: 20 charged, 30 voided
    assert (done["charged"], done["released_units"], done["released_amount"]) == (
        20_000,
        30,
        30_000,
    )
    assert done["written_off"] == 0
    text = api.client.get("/metrics").text
    assert metric(text, "tollgate_decisions_total", outcome="allowed", layer="credits") == 1
    assert metric(text, "tollgate_decision_units_total", layer="windows") == 100
    assert metric(text, "tollgate_decision_units_total", layer="credits") == 50
    assert metric(text, "tollgate_write_offs_total") == 0


def test_write_offs_are_counted_once() -> None:
    api = make_api()
    service = api.as_("service")
    body = {"customer": "bob", "feature": FEATURE, "units": 150, "idempotency_key": "w-1"}
    decided = api.client.post("/v1/decisions", json=body, headers=service).json()
    path = f"/v1/decisions/{decided['decision_id']}/complete"
    for _ in range(2):
        done = api.client.post(path, json={"actual_units": 260}, headers=service).json()
    assert (done["charged"], done["written_off"]) == (100_000, 60_000)
    text = api.client.get("/metrics").text
    assert metric(text, "tollgate_write_offs_total") == 1
    assert metric(text, "tollgate_written_off_microcredits_total") == 60_000


def test_a_customer_added_by_another_process_is_found(tmp_path: Path) -> None:
    """Two API processes share one database: a customer the other one registered is found
    by re-reading the registry on the first miss."""
    path = tmp_path / "shared.db"
    served = Meter(SqliteStore(path))
    key = create_api_key(served, "service", time.time_ns())
    client = TestClient(create_app(served), raise_server_exceptions=False)
    other = Meter(SqliteStore(path))
    other.publish_plan(plan_from_data(PLAN))
    other.publish_prices(price_book_from_data(PRICES))
    other.add_customer("zoe", "pro", time.time_ns())
    body = {"customer": "zoe", "feature": FEATURE, "units": 1, "idempotency_key": "z-1"}
    response = client.post("/v1/decisions", json=body, headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.json()["allowed"] is True
    other.store.close()
    served.store.close()
