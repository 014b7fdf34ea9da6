"""Durable ledger state behind one small interface: memory, SQLite (the default), PostgreSQL."""

from __future__ import annotations

from urllib.parse import urlsplit

from ledger.store.base import (
    NotATollgateDatabaseError,
    Rollback,
    SchemaTooNewError,
    Store,
    StoreError,
    StoreUnavailableError,
    TxView,
)
from ledger.store.chain import ChainReport
from ledger.store.memory import MemoryStore
from ledger.store.sqlite import SqliteStore

__all__ = [
    "ChainReport",
    "MemoryStore",
    "NotATollgateDatabaseError",
    "Rollback",
    "SchemaTooNewError",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TxView",
    "store_from_url",
]


def store_from_url(url: str) -> Store:
    """Open the store a URL names: `memory://`, `sqlite:///relative/or/absolute/path.db`
    (three slashes, then the path; four for an absolute path), or `postgresql://...`."""
    if not isinstance(url, str):
        raise StoreError(
            f"a store URL is text, not {url!r}: use memory://, sqlite:///path/to/file.db or "
            "postgresql://user@host:port/dbname"
        )
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise StoreError(f"{url!r}: write sqlite:///path/to/file.db (three slashes)")
        return SqliteStore(path)
    if scheme in {"postgresql", "postgres"}:
        from ledger.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(
        f"unknown store URL {url!r}: use memory://, sqlite:///path/to/file.db or "
        "postgresql://user@host:port/dbname"
    )
