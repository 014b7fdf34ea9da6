"""The metering tables record their layout (`meter_schema`), as the ledger's tables do: a
database whose metering tables a newer Tollgate wrote is refused with nothing written, and a
database written before the record existed is taken as layout 1. On SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.metering import Meter, plan_from_data
from ledger.metering import accounts as acc
from ledger.metering.tables import METER_SCHEMA_VERSION
from ledger.store.base import SchemaTooNewError, Store
from ledger.store.sqlite import SqliteStore

from .fixtures import CREDITS, T0, feature, plan_data
from .pg import PgDatabases, pg_cluster, pg_databases

__all__ = ["pg_cluster", "pg_databases"]  # fixtures used by this module

Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new store on one database each time it is called (all closed at the end)."""
    opened: list[Store] = []
    if request.param == "sqlite":
        path = tmp_path / "meter.db"

        def make() -> Store:
            opened.append(SqliteStore(path, synchronous="NORMAL"))
            return opened[-1]
    else:
        from ledger.store.postgres import PostgresStore

        databases: PgDatabases = request.getfixturevalue("pg_databases")
        _, url = databases.create()

        def make() -> Store:
            opened.append(PostgresStore(url))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


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
    assert recorded_version(meter.store) == METER_SCHEMA_VERSION == 1
    again = Meter(opener())
    assert again.registry.customers.get("ann") is not None


def test_a_database_from_before_the_record_is_taken_as_layout_1(opener: Opener) -> None:
    used(opener())
    execute(opener(), "DROP TABLE meter_schema")
    again = Meter(opener())
    assert recorded_version(again.store) == 1
    assert again.registry.customers.get("ann") is not None


def test_tables_of_a_newer_tollgate_are_refused_and_nothing_is_written(opener: Opener) -> None:
    store = opener()  # the ledger's schema only: no meter has used it yet
    execute(
        store,
        "CREATE TABLE meter_schema (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
        "INSERT INTO meter_schema (id, version) VALUES (1, 2)",
    )
    with pytest.raises(SchemaTooNewError, match=r"meter schema 2, this one reads up to 1"):
        Meter(store)
    platform = [a.id for a in acc.platform_accounts()]
    assert store.lookup_accounts(platform) == []
    assert recorded_version(store) == 2
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
