"""Shared helpers of the access-engine tests (test_decide, test_complete, test_plans,
test_grants_pool, test_metering_bad_input): plan builders, a meter factory on a `MemoryStore`,
readers of window and allowance counts, and snapshots that prove "nothing was consumed".

Times are integer nanoseconds; money is integer micro-credits. The test clock starts at a
Wednesday noon UTC so that day, ISO-week and month boundaries are all ahead of it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.core.types import Account
from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.metering import accounts as acc
from ledger.metering.accounts import Code
from ledger.store.base import Store
from ledger.store.memory import MemoryStore
from ledger.store.sqlite import SqliteStore

NS = 10**9
MINUTE = 60 * NS
HOUR = 3600 * NS
DAY = 86400 * NS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns_at(moment: datetime) -> int:
    """Integer ns since the epoch of a UTC datetime (whole seconds), without floats."""
    return (moment - EPOCH) // timedelta(seconds=1) * NS


T0 = ns_at(datetime(2024, 1, 3, 12, 0, 0, tzinfo=UTC))  # a Wednesday, 12:00 UTC


# --- plan builders -------------------------------------------------------------------------------


def window(name: str, length: int | str, limit: int) -> dict[str, Any]:
    return {"name": name, "length": length, "limit": limit}


def windows_layer(*windows: dict[str, Any], shared: Sequence[str] = ()) -> dict[str, Any]:
    layer: dict[str, Any] = {"kind": "windows", "windows": list(windows)}
    if shared:
        layer["shared"] = list(shared)
    return layer


def allowance_layer(amount: int, period: str = "day") -> dict[str, Any]:
    return {"kind": "allowance", "amount": amount, "period": period}


GRANTS: dict[str, Any] = {"kind": "grants"}
CREDITS: dict[str, Any] = {"kind": "credits"}
POOL: dict[str, Any] = {"kind": "pool"}


def feature(*layers: dict[str, Any], timeout: int | str | None = None) -> dict[str, Any]:
    fp: dict[str, Any] = {"layers": [dict(x) for x in layers]}
    if timeout is not None:
        fp["reservation_timeout"] = timeout
    return fp


def plan_data(
    features: Mapping[str, dict[str, Any]],
    *,
    name: str = "pro",
    version: int = 1,
    effective_from: int = 0,
    shared_windows: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "plan": name,
        "version": version,
        "effective_from": effective_from,
        "features": dict(features),
    }
    if shared_windows:
        data["shared_windows"] = list(shared_windows)
    return data


def book_data(prices: Mapping[str, int], *, version: int = 1, effective_from: int = 0) -> dict:
    return {"version": version, "effective_from": effective_from, "prices": dict(prices)}


def fresh_store() -> Store:
    directory = os.environ.get("TOLLGATE_METER_STORE")
    if not directory:
        return MemoryStore()
    return SqliteStore(Path(directory) / f"{uuid.uuid4().hex}.db", synchronous="NORMAL")


Opener = Callable[[], Store]


@contextmanager
def reopener(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A function that opens one database again at each call, as a restarted process would:
    `kind` "memory" (the same `MemoryStore`), "sqlite" (a file in `tmp_path`) or "postgres"
    (a database of the session's cluster; needs the `pg_databases` fixture imported into the
    test module). Every store opened is closed at the end."""
    opened: list[Store] = []
    url = request.getfixturevalue("pg_databases").create()[1] if kind == "postgres" else ""

    def make() -> Store:
        if kind == "memory" and opened:
            return opened[0]  # its tables outlive every meter made on it
        if kind == "postgres":
            from ledger.store.postgres import PostgresStore

            opened.append(PostgresStore(url))
        elif kind == "sqlite":
            opened.append(SqliteStore(tmp_path / "meter.db", synchronous="NORMAL"))
        else:
            opened.append(MemoryStore())
        return opened[-1]

    try:
        yield make
    finally:
        for store in opened:
            store.close()


def make_meter(
    features: Mapping[str, dict[str, Any]],
    prices: Mapping[str, int],
    *,
    plan_name: str = "pro",
    shared_windows: Sequence[dict[str, Any]] = (),
) -> Meter:
    """A meter on a fresh store with one plan (version 1, in force from 0) and one price book
    (version 1, in force from 0). The store is a `MemoryStore` unless TOLLGATE_METER_STORE
    names a SQLite directory (tests/metering/test_on_sqlite.py runs the suite that way)."""
    meter = Meter(fresh_store())
    meter.publish_plan(
        plan_from_data(plan_data(features, name=plan_name, shared_windows=shared_windows))
    )
    meter.publish_prices(price_book_from_data(book_data(prices)))
    return meter


# --- readers -------------------------------------------------------------------------------------


def window_used(
    meter: Meter,
    customer: str,
    scope: str,
    name: str,
    length_ns: int,
    now: int,
) -> int:
    """Units counted now in a window. `scope` is the feature, or "*" for a shared window (the
    engine's key layout: customer|scope|window)."""
    return meter.windows.used([(f"{customer}|{scope}|{name}", length_ns)], now)[0]


def account(meter: Meter, account_id: int) -> Account:
    [found] = meter.store.lookup_accounts([account_id])
    return found


def platform(meter: Meter, code: Code) -> Account:
    return account(meter, acc.platform_account(code))


def credits_account(meter: Meter, customer: str) -> Account:
    return account(meter, acc.customer_account(customer))


def all_accounts(meter: Meter) -> list[Account]:
    """Every account the ledger ever created (from its journal), with current totals."""
    ids = [e.id for e in meter.store.journal() if isinstance(e, Account)]
    return meter.store.lookup_accounts(ids)


def assert_double_entry(meter: Meter) -> None:
    """L2 over the whole ledger: posted debits equal posted credits, and likewise pending."""
    accounts = all_accounts(meter)
    assert sum(a.debits_posted for a in accounts) == sum(a.credits_posted for a in accounts)
    assert sum(a.debits_pending for a in accounts) == sum(a.credits_pending for a in accounts)


def ledger_snapshot(meter: Meter) -> tuple[Any, ...]:
    """Every account's totals and the journal's length: equal snapshots, nothing moved."""
    accounts = tuple(
        (a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in sorted(all_accounts(meter), key=lambda a: a.id)
    )
    return accounts, sum(1 for _ in meter.store.journal())


def windows_snapshot(meter: Meter) -> dict[str, tuple[Any, ...]]:
    """Every non-empty window and allowance log of a `MemoryWindows`: its entries and what
    was released (read from its internals, so that a refusal is seen to append no entry at all;
    a log merely looked at, with no entry, counts as empty)."""
    logs = meter.windows._logs  # type: ignore[attr-defined]
    return {
        key: (log.total, tuple(log.entries), tuple(sorted(log.released.items())))
        for key, log in logs.items()
        if log.entries or log.total
    }


def snapshot(meter: Meter) -> tuple[Any, ...]:
    """Ledger, windows and the decision and completion logs together."""
    registry = meter.registry

    def logs(cur: Any) -> tuple[Any, ...]:
        decisions = {(d.customer, d.key): d for d in meter.tables.all_decisions(cur)}
        return decisions, list(meter.tables.all_completions(cur))

    return (
        ledger_snapshot(meter),
        windows_snapshot(meter),
        *meter.tables.read(meter.store, logs),
        {c: r.last_seen for c, r in registry.customers.items()},
    )


def parts_of(decision: Any) -> list[tuple[str, int, int]]:
    """(layer, units, micro-credits) of each part, in the decision's order."""
    return [(p.layer, p.units, p.amount) for p in decision.parts]
