"""Shared pieces of the HTTP API tests: the plan and prices of the flows, an in-process app on a
MemoryStore with one key per role, and snapshots that show a refused request wrote nothing.

Money is integer micro-credits; one unit of `codex.task` costs 1,000 micro-credits.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

from ledger.api import create_api_key, create_app
from ledger.core.types import Account
from ledger.metering import Meter
from ledger.store.memory import MemoryStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns about its httpx dependency
    from fastapi.testclient import TestClient

FEATURE = "codex.task"
PRICE = 1000
PLAN: dict[str, Any] = {
    "plan": "pro",
    "version": 1,
    "features": {
        FEATURE: {
            "layers": [
                {"kind": "windows", "windows": [{"name": "5h", "length": "5h", "limit": 100}]},
                {"kind": "grants"},
                {"kind": "credits"},
            ],
            "reservation_timeout": 3600,
        }
    },
}
PRICES: dict[str, Any] = {"version": 1, "effective_from": 0, "prices": {FEATURE: PRICE}}
DAY_NS = 86_400 * 10**9


def bearer(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


@dataclass
class Api:
    """An app in process: its meter, a client, and a key per role (plus read tokens)."""

    meter: Meter
    client: TestClient
    keys: dict[str, str]

    def as_(self, who: str | None) -> dict[str, str]:
        return bearer(None if who is None else self.keys.get(who, who))


def make_api(*, customers: tuple[str, ...] = ("alice", "bob"), meter: Meter | None = None) -> Api:
    """A meter (by default on a MemoryStore) with the plan, the prices and `customers` (each
    with 100,000 bought micro-credits), keys for service, admin and auditor, and a read token
    per customer."""
    meter = meter if meter is not None else Meter(MemoryStore())
    now = time.time_ns()
    keys = {role: create_api_key(meter, role, now) for role in ("service", "admin", "auditor")}
    client = TestClient(create_app(meter), raise_server_exceptions=False)
    admin = bearer(keys["admin"])
    assert client.post("/v1/plans", json=PLAN, headers=admin).status_code == 200
    assert client.post("/v1/price-books", json=PRICES, headers=admin).status_code == 200
    for name in customers:
        made = client.post("/v1/customers", json={"customer": name, "plan": "pro"}, headers=admin)
        assert made.status_code == 200, made.text
        bought = {"purchase_id": f"{name}-p0", "amount": 100_000}
        assert client.post(f"/v1/customers/{name}/purchases", json=bought, headers=admin).is_success
        keys[name] = create_api_key(meter, "customer", now, name)
    client.app.state.tollgate.keyring.refresh()  # know the tokens made beside the app
    return Api(meter, client, keys)


def ledger_snapshot(meter: Meter) -> tuple[Any, ...]:
    """Every account's totals, the journal's length and every stored record: equal snapshots
    mean nothing was written."""
    ids = [e.id for e in meter.store.journal() if isinstance(e, Account)]
    accounts = tuple(
        (a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in meter.store.lookup_accounts(ids)
    )
    tables = meter.tables
    records = tables.read(
        meter.store,
        lambda cur: {
            kind: tables.records(cur, kind)
            for kind in ("plan", "book", "customer", "org", "grant", "api_key")
        },
    )
    datasets = tables.read(
        meter.store,
        lambda cur: (
            len(list(tables.all_decisions(cur))),
            len(list(tables.all_usage(cur))),
            len(list(tables.all_rejections(cur))),
            len(list(tables.all_completions(cur))),
        ),
    )
    return accounts, sum(1 for _ in meter.store.journal()), records, datasets


def error_of(response: Any) -> dict[str, Any]:
    """The error object of an error response, checked for shape and for leaks."""
    data = response.json()
    assert set(data) == {"error"}, data
    error: dict[str, Any] = data["error"]
    assert set(error) == {"code", "message", "field"}, error
    assert "Traceback" not in response.text
    assert "tg_" not in response.text, "an error body must never carry key material"
    return error
