"""Every statement the HTTP service sends to PostgreSQL keeps probing indexes under a plan the
server cached while the tables were empty (`tests/store/plans.py`): the service's own reads
(decisions by id, balances, history, keys, the backlog, readiness) besides the meter's."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.metering.pg import pg_cluster, pg_databases
from tests.store.plans import statements_sent, whole_table_reads_when_empty

from .helpers import FEATURE, Api, make_api

__all__ = ["pg_cluster", "pg_databases"]  # fixtures used by this module

CUSTOMERS = ("alice", "bob", "carol")


def ok(response: Any) -> Any:
    assert response.is_success, (response.request.url, response.text)
    return response.json() if response.headers["content-type"] == "application/json" else None


def exercise(api: Api) -> None:
    """Each route a service, an admin, an auditor and a customer use, several times over."""
    service, admin, now = api.as_("service"), api.as_("admin"), time.time_ns()
    ok(api.client.post("/v1/orgs", json={"org": "acme"}, headers=admin))
    top_up = {"top_up_id": "t1", "amount": 10_000}
    ok(api.client.post("/v1/orgs/acme/top-ups", json=top_up, headers=admin))
    for c in CUSTOMERS:
        grant = {"grant": "welcome", "amount": 20_000, "expires_at": now + 10**12}
        ok(api.client.post(f"/v1/customers/{c}/grants", json=grant, headers=admin))
        events = []
        for i in range(8):  # the windows, then the grant, then credits, then refusals
            body = {"customer": c, "feature": FEATURE, "units": 30, "idempotency_key": f"k{i}"}
            d = ok(api.client.post("/v1/decisions", json=body, headers=service))
            ok(api.client.get(f"/v1/decisions/{d['decision_id']}", headers=service))
            if d["allowed"] and i % 2:
                done = {"actual_units": 20}
                path = f"/v1/decisions/{d['decision_id']}/complete"
                ok(api.client.post(path, json=done, headers=service))
            elif d["allowed"]:
                event = {"customer": c, "feature": FEATURE, "units": 35, "key": f"u{i}"}
                events.append({**event, "decision_id": d["decision_id"], "occurred_at": now})
        ok(api.client.post("/v1/usage", json={"events": events}, headers=service))
        ok(api.client.post("/v1/usage", json={"events": events}, headers=service))  # replayed
        for path in ("", "/balances", "/history"):
            ok(api.client.get(f"/v1/customers/{c}{path}", headers=api.as_(c)))
        ok(api.client.get("/v1/settlement", headers=admin))
        ok(api.client.post("/v1/settlement/run", headers=admin))
    for path in ("/metrics", "/readyz", "/v1/plans", "/v1/price-books"):
        ok(api.client.get(path, headers=admin))


def test_no_statement_the_http_service_sends_reads_a_growing_table_whole(
    pg_databases: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = statements_sent(
        pg_databases.create()[1],
        lambda meter: exercise(make_api(customers=CUSTOMERS, meter=meter)),
        monkeypatch,
    )
    assert len(sent) >= 25 and sum(sent.values()) > 200, sent
    assert not whole_table_reads_when_empty(pg_databases.create()[1], list(sent))
