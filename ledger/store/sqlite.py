"""The embedded default: one SQLite file, WAL, `synchronous=FULL`, one batch per transaction.

One process writes at a time (SQLite's own write lock, taken with BEGIN IMMEDIATE); readers in
other processes see committed batches. The file is identified as Tollgate's by
`PRAGMA application_id` and versioned by `PRAGMA user_version`; opening a file that is not a
Tollgate database, or one written by a newer version, fails before anything is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ledger.store.base import (
    NotATollgateDatabaseError,
    Release,
    SchemaTooNewError,
    StoreError,
    StoreUnavailableError,
    check_lock_name,
)
from ledger.store.chain import GENESIS
from ledger.store.sql import CLOCK_ROW, SCHEMA_VERSION, SqlStore

APPLICATION_ID = 0x546F6C6C  # "Toll"
_MAX_PARAMETERS = 30_000  # below SQLite's default limit of 32,766 host parameters
CACHE_KIB = 65_536
"""Each connection's page cache, at most (SQLite's default: 2 MiB). Transfer ids are derived,
so random: a batch touches pages all over the table, and with the default cache it read most of
them again from the operating system (bench/RESULTS.md, "SQLite's cache and checkpoints")."""
CHECKPOINT_PAGES = 10_000
"""WAL pages written before a commit copies them back into the file (SQLite's default: 1,000,
about what one settled claim of 1,000 events writes, so nearly every such commit did it)."""

_SCHEMA_V1 = """
CREATE TABLE clock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    timestamp INTEGER NOT NULL CHECK (timestamp >= 0),
    head BLOB NOT NULL
);
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY CHECK (id > 0),
    ledger INTEGER NOT NULL CHECK (ledger > 0),
    code INTEGER NOT NULL CHECK (code > 0),
    flags INTEGER NOT NULL,
    user_data INTEGER NOT NULL,
    debits_pending INTEGER NOT NULL CHECK (debits_pending >= 0),
    debits_posted INTEGER NOT NULL CHECK (debits_posted >= 0),
    credits_pending INTEGER NOT NULL CHECK (credits_pending >= 0),
    credits_posted INTEGER NOT NULL CHECK (credits_posted >= 0),
    timestamp INTEGER NOT NULL UNIQUE,
    hash BLOB NOT NULL,
    CHECK (flags & 2 = 0 OR debits_pending + debits_posted <= credits_posted),
    CHECK (flags & 4 = 0 OR credits_pending + credits_posted <= debits_posted)
);
CREATE TABLE transfers (
    id INTEGER PRIMARY KEY CHECK (id > 0),
    debit_account_id INTEGER NOT NULL,
    credit_account_id INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    pending_id INTEGER NOT NULL,
    timeout INTEGER NOT NULL,
    ledger INTEGER NOT NULL,
    code INTEGER NOT NULL,
    user_data INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    timestamp INTEGER NOT NULL UNIQUE,
    status INTEGER NOT NULL CHECK (status BETWEEN 0 AND 4),
    expires_at INTEGER,
    hash BLOB NOT NULL,
    CHECK (debit_account_id <> credit_account_id)
);
CREATE INDEX transfers_due ON transfers (expires_at) WHERE status = 1;
CREATE TABLE expiries (
    pending_id INTEGER PRIMARY KEY,
    amount INTEGER NOT NULL CHECK (amount > 0),
    timestamp INTEGER NOT NULL UNIQUE,
    hash BLOB NOT NULL
);
CREATE TABLE failed (id INTEGER PRIMARY KEY);
CREATE TABLE history (
    account_id INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    debits_pending INTEGER NOT NULL,
    debits_posted INTEGER NOT NULL,
    credits_pending INTEGER NOT NULL,
    credits_posted INTEGER NOT NULL,
    PRIMARY KEY (account_id, timestamp)
);
"""

MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}
"""Forward migrations: MIGRATIONS[n] takes a database from version n-1 to n."""


class SqliteStore(SqlStore):
    """A ledger in one SQLite file."""

    placeholder = "?"

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._lock_fds: set[int] = set()  # the flocks `hold_lock` granted
        mode = _synchronous(synchronous)  # refuse a bad argument before any file exists
        _check_header(self.path)
        self._closed = False
        self._db = _open(self.path)
        try:
            _check_identity(self._db, self.path)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(f"PRAGMA synchronous = {mode}")
            self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self._db.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
            _migrate(self._db, self.path)
        except sqlite3.Error as exc:
            self._db.close()
            raise _failure(self.path, exc) from exc
        except BaseException:
            self._db.close()
            raise

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[Any]:
        cur = self._cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            cur.execute(CLOCK_ROW)
            yield cur
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise _failure(self.path, exc) from exc
        except BaseException:
            self._rollback()
            raise
        finally:
            cur.close()

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _cursor(self) -> sqlite3.Cursor:
        if self._closed:
            raise StoreError(f"the store on {self.path} is closed; open a new one")
        return self._db.cursor()

    @contextlib.contextmanager
    def _read_cursor(self) -> Iterator[Any]:
        cur = self._cursor()
        try:
            cur.execute("BEGIN")
            yield cur
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc
        finally:
            if self._db.in_transaction:
                self._db.execute("COMMIT")
            cur.close()

    def _statement_rows(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        cur = self._cursor()  # no BEGIN: the statement is a read transaction of its own
        try:
            return list(cur.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc
        finally:
            cur.close()

    def _matching(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        if len(ids) <= _MAX_PARAMETERS:
            return f"{column} IN ({', '.join('?' * len(ids))})", list(ids)
        # More ids than parameters: match through a JSON array instead.
        return f"{column} IN (SELECT value FROM json_each(?))", [_json_list(ids)]

    def hold_lock(self, name: str, *, shared: bool) -> Release | None:
        """An flock on the file `<database>-<name>.lock` beside the database, made on first
        use: the kernel releases it when the process ends."""
        check_lock_name(name)
        path = self.path.with_name(f"{self.path.name}-{name}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot open the lock file {path} ({exc.strerror}); open the store as a user "
                "who may write the database's folder"
            ) from exc
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        self._lock_fds.add(fd)
        return lambda: self._unlock(fd)

    def _unlock(self, fd: int) -> None:
        if fd in self._lock_fds:  # once: the number may belong to another file afterwards
            self._lock_fds.remove(fd)
            os.close(fd)  # gives up its flock

    def close(self) -> None:
        self._closed = True
        for fd in list(self._lock_fds):
            self._unlock(fd)
        self._db.close()


def _failure(path: Path, exc: sqlite3.Error) -> StoreError:
    """The store error for a driver error, naming the file and what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreUnavailableError(
            f"{path} is locked by another writer ({text}); retry, or stop the other process"
        )
    if "readonly" in text or "read-only" in text:
        return StoreUnavailableError(
            f"{path} is read-only ({text}); open it as a user who may write the file and its folder"
        )
    if "malformed" in text or "not a database" in text:
        return StoreError(f"{path} is damaged ({text}); restore it from a backup")
    return StoreUnavailableError(f"cannot use SQLite database {path}: {text}")


def _json_list(ids: Sequence[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


def _synchronous(mode: str) -> str:
    if mode.upper() not in {"FULL", "NORMAL", "EXTRA"}:
        raise StoreError(f"synchronous must be FULL, EXTRA or NORMAL, not {mode!r}")
    return mode.upper()


_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_header(path: Path) -> None:
    """Refuse a non-empty file that is not SQLite at all, before SQLite can take it for an empty
    database and write over it."""
    try:
        with path.open("rb") as f:
            start = f.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except IsADirectoryError as exc:
        raise StoreUnavailableError(f"{path} is a folder; name a database file") from exc
    except OSError as exc:
        raise StoreUnavailableError(f"cannot read {path}: {exc.strerror}") from exc
    if start and start != _SQLITE_HEADER:
        raise NotATollgateDatabaseError(
            f"{path} is not a Tollgate database (not a SQLite file); nothing was written to it"
        )


def _open(path: Path) -> sqlite3.Connection:
    """Open an existing file read-write, or create a new one; never create a directory."""
    mode = "rw" if path.exists() else "rwc"
    uri = f"file:{quote(str(path))}?mode={mode}"  # quoted: '#', '?' and '%' are file name chars
    try:
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreUnavailableError(
            f"cannot open SQLite database {path}: {exc}; check that the folder exists and that "
            "you may read and write it"
        ) from exc


def _check_identity(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is not a Tollgate database, before writing anything to it."""
    try:
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        if "not a database" not in str(exc):
            raise _failure(path, exc) from exc
        raise NotATollgateDatabaseError(
            f"{path} is not a Tollgate database ({exc}); nothing was written to it"
        ) from exc
    if application_id != APPLICATION_ID and (tables or application_id or version):
        raise NotATollgateDatabaseError(
            f"{path} is a SQLite database of another application; nothing was written to it"
        )
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{path} was written by a newer Tollgate (schema {version}, this one reads up to "
            f"{SCHEMA_VERSION}); upgrade Tollgate to open it. Nothing was written to it"
        )


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    try:
        db.execute("BEGIN IMMEDIATE")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    db.execute(statement)
        if version == 0:
            db.execute("INSERT INTO clock (id, timestamp, head) VALUES (1, 0, ?)", (GENESIS,))
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise StoreUnavailableError(f"cannot write the schema to {path}: {exc}") from exc
