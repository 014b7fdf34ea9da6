"""The metering tables' hot statements on PostgreSQL keep probing indexes under a plan the
server cached while the tables were nearly empty (`tests/store/plans.py`): a batch's up-front
read of earlier decisions and latest times, a settlement batch's read of its events, and every
statement a demo workload sends."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.demo import DemoConfig, run, workload
from ledger.metering import Meter
from tests.store.plans import generic_plan, statements_sent, whole_table_reads_when_empty

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


def test_no_statement_of_a_demo_workload_reads_a_growing_table_whole(
    pg_databases: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def demo_week(meter: Meter) -> None:
        run(meter, workload(DemoConfig(users=12, hours=30, seed=3)))
        meter.backlog()

    sent = statements_sent(pg_databases.create()[1], demo_week, monkeypatch)
    assert len(sent) >= 25 and sum(sent.values()) > 1000, sent
    assert not whole_table_reads_when_empty(pg_databases.create()[1], list(sent))
