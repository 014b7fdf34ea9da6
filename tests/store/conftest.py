"""Fixtures shared by every store test: one parameter per store kind, so the conformance suite
runs unchanged against memory, SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger.store import MemoryStore, SqliteStore, Store

from .postgres_cluster import Cluster, cluster_for_tests

STORE_KINDS = ("memory", "sqlite", "postgres")

MakeStore = Callable[[], Store]


@pytest.fixture(params=STORE_KINDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """A factory of fresh, empty stores of one kind; every store it made is closed afterwards.
    Calling it twice gives two independent stores (for PostgreSQL: two databases)."""
    opened: list[Store] = []
    counter = iter(range(1_000_000))

    def make() -> Store:
        n = next(counter)
        store: Store
        if request.param == "memory":
            store = MemoryStore()
        elif request.param == "sqlite":
            store = SqliteStore(tmp_path / f"ledger-{n}.db")
        else:
            store = request.getfixturevalue("fresh_postgres_store")()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


# --- PostgreSQL: one throwaway cluster per session, one new database per store ---------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A throwaway cluster (tests/store/postgres_cluster.py): initdb in a temporary folder, a
    free port on 127.0.0.1, as an unprivileged user when run as root; stopped with
    `pg_ctl stop -m immediate` and removed at the end of the session, even after failures."""
    with cluster_for_tests() as cluster:
        yield cluster


@pytest.fixture
def postgres_database(postgres_cluster: Cluster) -> Iterator[Callable[[], str]]:
    """A factory of new, empty databases on the session's cluster; returns each one's URL.
    The databases are dropped afterwards (connections still open are cut)."""
    made: list[str] = []
    counter = itertools.count()

    def create() -> str:
        name = f"tollgate_{next(counter)}_{secrets.token_hex(4)}"
        made.append(name)
        return postgres_cluster.create_database(name)

    yield create
    for name in made:
        postgres_cluster.drop_database(name)


@pytest.fixture
def fresh_postgres_store(
    postgres_database: Callable[[], str],
) -> Iterator[Callable[[], Store]]:
    """A factory of `PostgresStore`s, each on a new database; all closed afterwards."""
    from ledger.store.postgres import PostgresStore

    opened: list[Store] = []

    def make() -> Store:
        store = PostgresStore(postgres_database())
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
