"""Fixtures shared by every store test: one parameter per store kind, so the conformance suite
runs unchanged against memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger.store import MemoryStore, SqliteStore, Store

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
