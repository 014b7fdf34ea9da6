"""The metering tables' hot statements on PostgreSQL keep probing indexes under a plan the
server cached while the tables were nearly empty (`tests/store/plans.py`): a batch's up-front
read of earlier decisions and latest times, a settlement batch's read of its events, and every
statement a demo workload sends."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.demo import DemoConfig, run, workload
from ledger.metering import Meter
from tests.store.plans import generic_plan

from .pg import pg_cluster, pg_databases

__all__ = ["pg_cluster", "pg_databases"]  # fixtures used by this module


def sent(meter: Meter, monkeypatch: pytest.MonkeyPatch, read: Any) -> str:
    """The one statement `read(meter)` sends."""
    statements: list[str] = []
    store = meter.store
    real_query, real_read = store.query, store.read  # type: ignore[attr-defined]

    class Recording:
        def __init__(self, cur: Any) -> None:
            self.cur = cur

        def execute(self, sql: str, params: Any) -> Any:
            statements.append(sql)
            return self.cur.execute(sql, params)

        def fetchall(self) -> Any:
            return self.cur.fetchall()

    def query(sql: str, params: Any) -> Any:
        statements.append(sql)
        return real_query(sql, params)

    monkeypatch.setattr(store, "query", query)
    monkeypatch.setattr(store, "read", lambda fn: real_read(lambda cur: fn(Recording(cur))))
    read(meter)
    assert len(statements) == 1, statements
    return statements[0]


@pytest.fixture
def meter(pg_databases: Any) -> Any:
    from ledger.store.postgres import PostgresStore

    url = pg_databases.create()[1]
    with PostgresStore(url) as store:
        yield Meter(store), url


def test_a_batch_reads_its_earlier_decisions_and_latest_times_by_index_probes(
    meter: tuple[Meter, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    m, url = meter
    statement = sent(
        m, monkeypatch, lambda m: m.tables.earlier_and_latest(m.store, [("a", "k")], ["a"])
    )
    plan = generic_plan(url, statement, ["text[]"] * statement.count("%s"))
    assert "Seq Scan on decisions" not in plan and "Bitmap" not in plan, plan
    assert "Index Scan using decisions_customer_key_key on decisions" in plan, plan
    assert "Index Only Scan Backward using decisions_by_time on decisions" in plan, plan


def test_a_settlement_batch_reads_its_events_by_primary_key_probes(
    meter: tuple[Meter, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    m, url = meter
    statement = sent(
        m,
        monkeypatch,
        lambda m: m.tables.read(m.store, lambda cur: m.tables.settlement_inputs(cur, [1])),
    )
    plan = generic_plan(url, statement, ["bigint[]"])
    assert "Seq Scan" not in plan and "Join" not in plan, plan
    for index in ("usage_events_pkey", "decisions_pkey", "completions_pkey", "outbox_2_pkey"):
        assert f"using {index}" in plan or f"on {index}" in plan, (index, plan)


# Tables a statement may read whole: the queue of unsettled events (a backlog count reads it; it
# is as long as the backlog, not the history) and the one-row bookkeeping tables.
READ_WHOLE = frozenset({"outbox", "clock", "meter_schema", "meter_stamp", "tollgate_meta"})
PLANNED = ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE")


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Every statement text sent through a psycopg cursor while the test runs, with its count."""
    import psycopg

    sent: Counter[str] = Counter()
    for name in ("execute", "executemany"):
        real = getattr(psycopg.Cursor, name)

        def recording(self: Any, query: Any, *args: Any, _real: Any = real, **kw: Any) -> Any:
            if isinstance(query, str):
                sent[query] += 1
            return _real(self, query, *args, **kw)

        monkeypatch.setattr(psycopg.Cursor, name, recording)
    yield sent


def test_no_statement_of_a_demo_workload_reads_a_growing_table_whole(
    pg_databases: Any, recorded: Counter[str]
) -> None:
    from ledger.store.postgres import PostgresStore

    with PostgresStore(pg_databases.create()[1]) as store:
        meter = Meter(store)
        recorded.clear()  # what opening a meter reads once is not a per-request cost
        run(meter, workload(DemoConfig(users=12, hours=30, seed=3)))
        meter.backlog()
    statements = [q for q in recorded if q.split(None, 1)[0].upper() in PLANNED]
    empty = pg_databases.create()[1]
    with PostgresStore(empty) as store:
        Meter(store)  # the tables and indexes, no rows: as when the plans get cached
    assert len(statements) >= 25 and sum(recorded[q] for q in statements) > 1000, recorded
    whole = {}
    for statement in statements:
        plan = generic_plan(empty, statement)
        scanned = set(re.findall(r"Seq Scan on (\w+)", plan)) - READ_WHOLE
        if scanned:
            whole[statement] = (sorted(scanned), plan)
    assert not whole, whole
