"""A throwaway PostgreSQL cluster for the metering tests (the pattern of tests/store/conftest.py,
on tests/store/postgres_cluster.py): one cluster per session, started on first use, skipped
where the server binaries or psycopg are missing (failed under CI=true), stopped and removed
at the end of the session.

Databases are cheap copies: `PgDatabases.create(template=...)` clones a finished database with
`CREATE DATABASE ... TEMPLATE`, so a workload is run once and each test tampers with its own
copy. Import the fixtures into a test module: `from .pg import pg_cluster, pg_databases`.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator

import pytest

from tests.store.postgres_cluster import Cluster, cluster_for_tests


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """initdb + pg_ctl on a free 127.0.0.1 port (fsync off: the cluster is thrown away)."""
    with cluster_for_tests(fsync=False) as cluster:
        yield cluster


class PgDatabases:
    """Creates databases on the cluster (empty, or copies of a template) and drops them all."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.made: list[str] = []
        self._counter = itertools.count()

    def create(self, *, template: str | None = None) -> tuple[str, str]:
        """A new database: (its name, its URL)."""
        import psycopg

        name = f"meter_{next(self._counter)}_{secrets.token_hex(4)}"
        self.made.append(name)
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.cluster.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return name, self.cluster.url(name)

    def drop(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.cluster.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        for name in self.made:
            self.drop(name)
        self.made.clear()


@pytest.fixture(scope="module")
def pg_databases(pg_cluster: Cluster) -> Iterator[PgDatabases]:
    """Databases of one test module, dropped when the module is done."""
    made = PgDatabases(pg_cluster)
    try:
        yield made
    finally:
        made.drop_all()
