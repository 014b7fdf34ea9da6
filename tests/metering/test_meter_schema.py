"""The metering tables record their layout (`meter_schema`), as the ledger's tables do: a
database whose metering tables a newer Tollgate wrote is refused with nothing written, a
database written before the record existed is taken as layout 1, and a database of layout 1 is
taken to layout 2 (outbox entries keep their usage event's digest) when a `Meter` opens it, with
every queued event bound as it stands, then to layout 3 (completions keep the time they were
settled at; 0 for those settled before), then to layout 4 (decisions indexed by time,
completions by the time they were settled at). On SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.metering import accounts as acc
from ledger.metering.audit import audit
from ledger.metering.tables import METER_SCHEMA_VERSION
from ledger.store.base import SchemaTooNewError, Store, StoreError

from .fixtures import CREDITS, NS, T0, Opener, book_data, feature, plan_data, reopener
from .pg import pg_cluster, pg_databases

__all__ = ["pg_cluster", "pg_databases"]  # fixtures used by this module


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new store on one database each time it is called (all closed at the end)."""
    with reopener(request.param, request, tmp_path) as make:
        yield make


LAYOUT_4_INDEXES_DROPPED = (
    "DROP INDEX decisions_by_now",
    "DROP INDEX completions_by_settled_at",
)


def execute(store: Store, *statements: str) -> None:
    """Raw SQL in one write transaction, behind the meter's back."""
    store.transact(T0, lambda view: ([], lambda results, cur: [cur.execute(s) for s in statements]))


def recorded_version(store: Store) -> Any:
    def read(cur: Any) -> Any:
        cur.execute("SELECT version FROM meter_schema WHERE id = 1")
        return cur.fetchone()[0]

    return store.read(read)


def used(store: Store) -> Meter:
    """A meter on `store` with one plan and one customer."""
    meter = Meter(store)
    meter.publish_plan(plan_from_data(plan_data({"f": feature(CREDITS)})))
    meter.add_customer("ann", "pro", T0)
    return meter


def test_a_new_database_records_the_layout_and_opens_again(opener: Opener) -> None:
    meter = used(opener())
    assert recorded_version(meter.store) == METER_SCHEMA_VERSION == 4
    again = Meter(opener())
    assert again.registry.customers.get("ann") is not None


def test_a_database_from_before_the_record_is_taken_as_layout_1(opener: Opener) -> None:
    used(opener())
    execute(
        opener(),
        "DROP TABLE meter_schema",
        *LAYOUT_4_INDEXES_DROPPED,
        "ALTER TABLE outbox DROP COLUMN digest",
        "ALTER TABLE completions DROP COLUMN settled_at",
    )
    again = Meter(opener())
    assert recorded_version(again.store) == 4  # layout 1, then migrated
    assert again.registry.customers.get("ann") is not None


def test_tables_of_a_newer_tollgate_are_refused_and_nothing_is_written(opener: Opener) -> None:
    store = opener()  # the ledger's schema only: no meter has used it yet
    execute(
        store,
        "CREATE TABLE meter_schema (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
        "INSERT INTO meter_schema (id, version) VALUES (1, 5)",
    )
    with pytest.raises(SchemaTooNewError, match=r"meter schema 5, this one reads up to 4"):
        Meter(store)
    platform = [a.id for a in acc.platform_accounts()]
    assert store.lookup_accounts(platform) == []
    assert recorded_version(store) == 5
    assert not store.read(_has_table("decisions"))


def _has_table(name: str) -> Callable[[Any], bool]:
    def read(cur: Any) -> bool:
        if isinstance(cur, sqlite3.Cursor):
            cur.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            )
        else:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = %s", (name,)
            )
        return bool(cur.fetchone()[0])

    return read


# --- layout 1 to 2: the outbox keeps each queued event's digest ---------------------------------


def queued_on_layout_1(opener: Opener) -> tuple[Meter, list[int]]:
    """Three usage events queued (one of them claimed by a worker), then the database taken
    back to layout 1: the outbox without digests and the record saying 1."""
    meter = used(opener())
    meter.publish_prices(price_book_from_data(book_data({"f": 3})))
    meter.purchase("ann", 10**6, "p1", T0)
    ids = []
    for i in range(3):
        d = meter.decide("ann", "f", 5, f"d{i}", T0 + i)
        ids.append(meter.report_usage("ann", "f", 4, f"u{i}", d.decision_id, T0, T0 + 9).usage.id)
    meter.tables.write(
        meter.store, T0 + 10, lambda cur: meter.tables.claim(cur, "w1", T0 + 10, 60 * NS, 1)
    )
    execute(
        meter.store,
        *LAYOUT_4_INDEXES_DROPPED,
        "ALTER TABLE outbox DROP COLUMN digest",
        "ALTER TABLE completions DROP COLUMN settled_at",
        "UPDATE meter_schema SET version = 1 WHERE id = 1",
    )
    return meter, ids


def outbox(store: Store) -> dict[int, tuple[Any, ...]]:
    def read(cur: Any) -> dict[int, tuple[Any, ...]]:
        cur.execute("SELECT * FROM outbox")
        names = [d[0] for d in cur.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}

    return store.read(read)


def test_layout_1_is_migrated_with_each_queued_event_bound_as_it_stands(opener: Opener) -> None:
    meter, ids = queued_on_layout_1(opener)
    before = outbox(meter.store)
    unchecked = audit(meter.store)
    assert unchecked.ok and unchecked.backlog == 3
    assert any("NOT checked" in c and "layout 1" in c for c in unchecked.checks)

    migrated = Meter(opener())
    assert recorded_version(migrated.store) == 4
    after = outbox(migrated.store)
    usage = {u.id: u for u in migrated.tables.read(migrated.store, migrated.tables.all_usage)}
    assert set(after) == set(ids) == set(before)
    for i in ids:  # the claims as they were, and the digest of the event as it stands
        assert {k: v for k, v in after[i].items() if k != "digest"} == before[i]
        assert after[i]["digest"] == usage[i].digest()
    assert sum(1 for row in after.values() if row["claimed_by"] == "w1") == 1
    checked = audit(migrated.store)
    assert checked.ok and "NOT checked" not in " ".join(checked.checks)

    execute(migrated.store, f"UPDATE usage_events SET units = 40 WHERE id = {ids[1]}")
    assert [p for p in audit(migrated.store).discrepancies if str(ids[1]) in p] == [
        f"M6: usage {ids[1]} was changed after it was reported (its outbox entry keeps the "
        "digest of another report)"
    ]


def test_after_the_migration_nothing_is_queued_without_a_digest(opener: Opener) -> None:
    """What a process still on layout 1 would write: refused by the database."""
    meter, ids = queued_on_layout_1(opener)
    Meter(opener())
    execute(meter.store, f"DELETE FROM outbox WHERE usage_id = {ids[0]}")
    with pytest.raises(StoreError, match=r"(?i)digest"):
        execute(
            meter.store,
            "INSERT INTO outbox (usage_id, claimed_by, claimed_until, attempts) "
            f"VALUES ({ids[0]}, NULL, 0, 0)",
        )
    assert ids[0] not in outbox(meter.store)


def test_an_outbox_entry_whose_event_is_gone_survives_the_migration(opener: Opener) -> None:
    """Evidence is kept: the audit still names the entry after the upgrade."""
    meter, ids = queued_on_layout_1(opener)
    execute(meter.store, f"DELETE FROM usage_events WHERE id = {ids[2]}")
    migrated = Meter(opener())
    assert outbox(migrated.store)[ids[2]]["digest"] == 0  # no event has digest 0
    assert f"M6: outbox entry for absent usage {ids[2]}" in audit(migrated.store).discrepancies


# --- layout 2 to 3: completions keep the time they were settled at ------------------------------


def completion_times(store: Store) -> dict[int, int]:
    def read(cur: Any) -> dict[int, int]:
        cur.execute("SELECT decision_id, settled_at FROM completions")
        return {int(d): int(at) for d, at in cur.fetchall()}

    return store.read(read)


def test_layout_2_is_migrated_with_earlier_completions_at_0(opener: Opener) -> None:
    meter = used(opener())
    meter.publish_prices(price_book_from_data(book_data({"f": 3})))
    meter.purchase("ann", 10**6, "p1", T0)
    first = meter.decide("ann", "f", 5, "d1", T0)
    meter.complete(first.decision_id, 4, T0 + NS)
    execute(
        meter.store,
        *LAYOUT_4_INDEXES_DROPPED,
        "ALTER TABLE completions DROP COLUMN settled_at",
        "UPDATE meter_schema SET version = 2 WHERE id = 1",
    )
    migrated = Meter(opener())
    assert recorded_version(migrated.store) == 4
    assert completion_times(migrated.store) == {first.decision_id: 0}
    second = migrated.decide("ann", "f", 5, "d2", T0 + 2 * NS)
    migrated.complete(second.decision_id, 5, T0 + 3 * NS)
    assert completion_times(migrated.store)[second.decision_id] == T0 + 3 * NS
    assert audit(migrated.store).ok


# --- layout 3 to 4: what a meter opening reads is found through indexes ------------------------


def _indexes(store: Store) -> set[str]:
    def read(cur: Any) -> set[str]:
        if isinstance(cur, sqlite3.Cursor):
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        else:
            cur.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        return {str(name) for (name,) in cur.fetchall()}

    return store.read(read)


def test_layout_3_is_migrated_to_indexes_on_the_times_a_meter_opening_reads(
    opener: Opener,
) -> None:
    meter = used(opener())
    execute(meter.store, *LAYOUT_4_INDEXES_DROPPED, "UPDATE meter_schema SET version = 3")
    assert not {"decisions_by_now", "completions_by_settled_at"} & _indexes(meter.store)
    migrated = Meter(opener())
    assert recorded_version(migrated.store) == 4
    assert {"decisions_by_now", "completions_by_settled_at"} <= _indexes(migrated.store)


class _Recording:
    """A cursor that keeps what it was asked to execute."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self.cur = cur
        self.statements: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.statements.append((sql, params))
        return self.cur.execute(sql, params)

    def fetchone(self) -> Any:
        return self.cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self.cur.fetchall()


def test_a_meter_opening_on_sqlite_reads_its_history_without_walking_every_decision(
    tmp_path: Path,
) -> None:
    """SQLite's plan for `window_history`: every table is searched through an index, none
    scanned, and the older decisions only through the completions settled within the horizon,
    whatever the database's size (before layout 4 it scanned every decision)."""
    from ledger.store.sqlite import SqliteStore

    with SqliteStore(tmp_path / "m.db") as store:
        meter = used(store)
        recording = store.read(lambda cur: _history_read(meter, cur))
    with sqlite3.connect(tmp_path / "m.db") as conn:
        plans = [
            [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            for sql, params in recording.statements
        ]
    assert all(plan and not [s for s in plan if s.startswith("SCAN")] for plan in plans), plans
    history = " | ".join(plans[1])
    assert "decisions_by_now (now>?)" in history, history  # those made within the horizon
    assert "completions_by_settled_at (settled_at>?)" in history, history  # settled within it
    assert "(now<?)" not in history, history  # not every older decision


def _history_read(meter: Meter, cur: sqlite3.Cursor) -> _Recording:
    recording = _Recording(cur)
    meter.tables.window_history(recording, 7 * 24 * 3600 * NS)
    assert len(recording.statements) == 2  # the latest time, then the history
    return recording


# --- layout 4 on PostgreSQL: tables that have rows are indexed without holding their writes ----

LAYOUT_4 = ("decisions_by_now", "completions_by_settled_at")


def _on_layout_3_with_rows(url: str) -> None:
    """Decisions and a completion, then the database taken back to layout 3."""
    from ledger.store.postgres import PostgresStore

    with PostgresStore(url) as store:
        meter = used(store)
        meter.publish_prices(price_book_from_data(book_data({"f": 3})))
        meter.purchase("ann", 10**6, "p1", T0)
        for i in range(3):
            d = meter.decide("ann", "f", 5, f"d{i}", T0 + i)
        meter.complete(d.decision_id, 4, T0 + NS)
        execute(store, *LAYOUT_4_INDEXES_DROPPED, "UPDATE meter_schema SET version = 3")


def _valid_indexes(url: str) -> dict[str, bool]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = "
            "i.indexrelid WHERE c.relname = ANY(%s)",
            [list(LAYOUT_4)],
        )
        return {str(name): bool(valid) for name, valid in rows}


def _opening(url: str) -> tuple[Any, list[BaseException]]:
    """A meter being opened on `url` in a thread of its own; its errors land in the list."""
    import threading

    from ledger.store.postgres import PostgresStore

    failed: list[BaseException] = []

    def open_meter() -> None:
        try:
            with PostgresStore(url) as store:
                assert recorded_version(Meter(store).store) == 4
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=open_meter, daemon=True)
    thread.start()
    return thread, failed


def _await_a_lock_wait(url: str) -> None:
    """Until some session of the database waits for a lock (at most 20 s)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(400):
            waiting = conn.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE NOT l.granted AND a.datname = current_database()"
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    raise AssertionError("no session waited for a lock")


def test_on_postgres_layout_4_indexes_tables_with_rows_while_their_writes_go_on(
    pg_databases: Any,
) -> None:
    """A build in the set-up transaction would wait for a running write and make every later
    write wait behind it; built concurrently, only the opening waits."""
    import psycopg

    url = pg_databases.create()[1]
    _on_layout_3_with_rows(url)
    touch = (
        "UPDATE decisions SET now = now WHERE decision_id = (SELECT {}(decision_id) FROM decisions)"
    )
    with psycopg.connect(url) as running:
        running.execute(touch.format("min"))  # a write in progress: its transaction stays open
        thread, failed = _opening(url)
        _await_a_lock_wait(url)  # the opening waits for that write
        with psycopg.connect(url) as later:
            later.execute("SET lock_timeout = '3s'")
            later.execute(touch.format("max"))  # a later write is not held behind the opening
            later.commit()
        assert thread.is_alive() and not failed, failed
        running.commit()
    thread.join(60)
    assert not thread.is_alive() and not failed, failed
    assert _valid_indexes(url) == dict.fromkeys(LAYOUT_4, True)


def test_on_postgres_an_index_build_left_invalid_is_built_again(pg_databases: Any) -> None:
    import psycopg

    url = pg_databases.create()[1]
    _on_layout_3_with_rows(url)
    thread, failed = _opening(url)
    thread.join(60)
    assert not failed and _valid_indexes(url) == dict.fromkeys(LAYOUT_4, True), failed
    with psycopg.connect(url) as conn:  # as an interrupted CREATE INDEX CONCURRENTLY leaves it
        conn.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'decisions_by_now'::regclass"
        )
    assert _valid_indexes(url)["decisions_by_now"] is False
    thread, failed = _opening(url)
    thread.join(60)
    assert not failed and _valid_indexes(url) == dict.fromkeys(LAYOUT_4, True), failed


def test_on_postgres_processes_opening_together_build_each_index_once(pg_databases: Any) -> None:
    import psycopg

    url = pg_databases.create()[1]
    _on_layout_3_with_rows(url)
    with psycopg.connect(url) as running:
        running.execute("UPDATE decisions SET now = now")  # the first build waits for it
        openings = [_opening(url) for _ in range(3)]
        _await_a_lock_wait(url)
        time.sleep(0.5)  # the others reach the indexes meanwhile
        running.commit()
    for thread, failed in openings:
        thread.join(60)
        assert not thread.is_alive() and not failed, failed
    assert _valid_indexes(url) == dict.fromkeys(LAYOUT_4, True)


def test_on_postgres_opening_a_meter_on_its_layout_waits_for_no_write(pg_databases: Any) -> None:
    """No DDL: CREATE INDEX IF NOT EXISTS locks the table even when the index exists."""
    import psycopg

    url = pg_databases.create()[1]
    _on_layout_3_with_rows(url)
    thread, failed = _opening(url)
    thread.join(60)
    with psycopg.connect(url) as running:
        running.execute("UPDATE decisions SET now = now")  # writes in progress on every table
        running.execute("UPDATE completions SET settled_at = settled_at")
        running.execute("UPDATE usage_events SET units = units")
        thread, failed = _opening(url)
        thread.join(30)
        assert not thread.is_alive() and not failed, failed
