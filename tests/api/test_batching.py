"""Group commit over HTTP: on a database store, decide requests that reach the server together
are recorded in one transaction, and each is answered with its own decision, or its own error,
only after that transaction committed."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from ledger.api import create_api_key, create_app
from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.store.sqlite import SqliteStore

from .helpers import FEATURE, PLAN, PRICES, bearer

REQUESTS = 40


def _served(path: Path) -> tuple[Meter, str]:
    meter = Meter(SqliteStore(path, synchronous="NORMAL"))
    meter.publish_plan(plan_from_data(PLAN))
    meter.publish_prices(price_book_from_data(PRICES))
    for c in range(4):
        meter.add_customer(f"c{c}", "pro", time.time_ns())
    return meter, create_api_key(meter, "service", time.time_ns())


async def _decide_all(meter: Meter, key: str, bodies: list[dict[str, Any]]) -> list[Any]:
    transport = httpx.ASGITransport(app=create_app(meter), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tollgate") as client:
        calls = [client.post("/v1/decisions", json=b, headers=bearer(key)) for b in bodies]
        return await asyncio.gather(*calls)


def test_concurrent_decisions_share_a_commit_and_each_gets_its_own(tmp_path: Path) -> None:
    meter, key = _served(tmp_path / "api.db")
    commits: list[int] = []
    put = meter.tables.put_decisions

    def counting(cur: Any, ds: Any) -> None:
        commits.append(len(ds))
        put(cur, ds)

    meter.tables.put_decisions = counting  # type: ignore[method-assign]
    bodies = [
        {"customer": f"c{i % 4}", "feature": FEATURE, "units": 1, "idempotency_key": f"k{i}"}
        for i in range(REQUESTS)
    ]
    bodies[7] = {**bodies[7], "customer": "nobody"}  # its own error, not the batch's
    responses = asyncio.run(_decide_all(meter, key, bodies))

    assert [r.status_code for r in responses].count(200) == REQUESTS - 1
    assert responses[7].status_code == 404
    assert responses[7].json()["error"]["code"] == "unknown_customer"
    assert sum(commits) == REQUESTS - 1
    assert len(commits) < REQUESTS // 4, f"commits per batch: {commits}"
    for body, response in zip(bodies, responses, strict=True):
        if response.status_code != 200:
            continue
        got = response.json()
        stored = meter.decision(int(got["decision_id"]))
        assert stored is not None and stored.allowed
        assert (stored.customer, stored.key) == (body["customer"], body["idempotency_key"])
    meter.store.close()


def test_a_failed_commit_answers_every_request_of_its_batch_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    meter, key = _served(tmp_path / "api.db")

    def failing(cur: Any, ds: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    meter.tables.put_decisions = failing  # type: ignore[method-assign]
    bodies = [
        {"customer": f"c{i % 4}", "feature": FEATURE, "units": 1, "idempotency_key": f"k{i}"}
        for i in range(8)
    ]
    responses = asyncio.run(_decide_all(meter, key, bodies))
    assert {r.status_code for r in responses} == {503}
    assert all(r.json()["error"]["code"] == "store_unavailable" for r in responses)
    window = [(f"c0|{FEATURE}|5h", 5 * 3600 * 10**9)]
    assert meter.windows.used(window, time.time_ns()) == [0]
    assert meter.tables.read(meter.store, lambda cur: list(meter.tables.all_decisions(cur))) == []
    meter.store.close()
