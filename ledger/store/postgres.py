"""PostgreSQL (15+) through psycopg 3: the system of record when many processes write.

One batch is one transaction at READ COMMITTED that first locks the ledger's single clock row
(`SELECT ... FOR UPDATE`): batches from any number of connections and processes queue on that one
row and are applied one after another in timestamp order, each reading what the previous one
committed. One row means one lock order, so writers cannot deadlock on each other; should the
server still report a serialization failure, a deadlock or a lock time-out, the whole batch is
rolled back and re-run, a bounded number of times, without the caller seeing it.

Reads (lookups, the journal, the chain) run in one REPEATABLE READ READ ONLY transaction each.

The database is identified and versioned by the table `tollgate_meta` (key, value): `application`
= "tollgate" and `schema_version`. Opening a database that has tables but no `tollgate_meta`, or
whose schema is newer than this Tollgate's, fails before anything is written; an older schema is
migrated forward in one transaction under an advisory lock (so two processes opening a new
database at once do not both create it). The schema enforces what a database can: unique ids and
timestamps, non-negative totals, the overdraft guards (L1) and the 64-bit bounds (L7), as CHECK
constraints (summed as numeric, so that a bad row is refused by its constraint, not by overflow).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import random
import select
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from ledger.core.engine import Changes
from ledger.core.results import Result
from ledger.core.types import AccountBalance, PendingStatus
from ledger.store.base import (
    Build,
    NotATollgateDatabaseError,
    Release,
    SchemaTooNewError,
    StoreError,
    StoreUnavailableError,
    check_lock_name,
)
from ledger.store.chain import GENESIS
from ledger.store.sql import (
    ACCOUNT_COLUMNS,
    APPLICATION,
    CLOCK_ROW,
    SCHEMA_VERSION,
    TRANSFER_COLUMNS,
    SqlStore,
    _transfer_values,
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
ADVISORY_LOCK_KEY = 0x546F6C6C  # "Toll": held while checking and migrating the schema
CONNECT_TIMEOUT_SECONDS = 10
LOCK_CLIENT_KEEPALIVE = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
}
"""A lock's connection that stops answering is seen as cut after about 5 + 2 x 3 = 11 s..."""
LOCK_SERVER_KEEPALIVE = (
    "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"
)
"""...and its session ends on the server, dropping the lock, only after about 30 + 10 x 3 = 60 s:
this process stops counting on the lock before another can have it."""
RETRIES_MAX = 8
"""Attempts at one batch that the server rolled back as a serialization failure or deadlock."""
RETRY_PAUSE_MAX_SECONDS = 0.05
PIPELINED_ROWS_MAX = 64
"""A batch writing at most this many account, transfer and history rows is written pipelined
(one round trip); a larger one with COPY."""

_ACCOUNT_TYPES = [
    "int8",
    "int8",
    "int4",
    "int4",
    "int8",
    "int8",
    "int8",
    "int8",
    "int8",
    "int8",
    "bytea",
]
_TRANSFER_TYPES = [
    "int8",
    "int8",
    "int8",
    "int8",
    "int8",
    "int8",
    "int8",
    "int4",
    "int8",
    "int4",
    "int8",
    "int2",
    "int8",
    "bytea",
]

# The updates name their ids twice, the second time as `id = ANY(...)`: the server then probes
# the primary key for them whatever its statistics say. Joined on `v.id` alone, a plan it cached
# while the table was small (a generic plan, kept until the table is analysed) hash-joins a
# scan of the whole table, in every batch, as the table grows.
_UPDATE_ACCOUNTS = """
UPDATE accounts AS a SET debits_pending = v.debits_pending, debits_posted = v.debits_posted,
    credits_pending = v.credits_pending, credits_posted = v.credits_posted
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])
    AS v(id, debits_pending, debits_posted, credits_pending, credits_posted)
WHERE a.id = v.id AND a.id = ANY(%s::bigint[])
"""
_UPDATE_STATUSES = """
UPDATE transfers AS t SET status = v.status
FROM unnest(%s::bigint[], %s::smallint[]) AS v(id, status)
WHERE t.id = v.id AND t.id = ANY(%s::bigint[])
"""

_RETRYABLE = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
)

_META = """
CREATE TABLE IF NOT EXISTS tollgate_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
"""
"""Written first, in the same transaction as the schema: identifies the database and its
version. Its shape never changes, so every Tollgate can read any database's version."""

_SCHEMA_V1 = f"""
CREATE TABLE clock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    timestamp BIGINT NOT NULL CHECK (timestamp >= 0),
    head BYTEA NOT NULL CHECK (octet_length(head) = 32)
);
INSERT INTO clock (id, timestamp, head) VALUES (1, 0, '\\x{GENESIS.hex()}');
CREATE TABLE accounts (
    id BIGINT PRIMARY KEY CHECK (id > 0),
    ledger BIGINT NOT NULL CHECK (ledger > 0),
    code INTEGER NOT NULL CHECK (code > 0),
    flags INTEGER NOT NULL,
    user_data BIGINT NOT NULL,
    debits_pending BIGINT NOT NULL CHECK (debits_pending >= 0),
    debits_posted BIGINT NOT NULL CHECK (debits_posted >= 0),
    credits_pending BIGINT NOT NULL CHECK (credits_pending >= 0),
    credits_posted BIGINT NOT NULL CHECK (credits_posted >= 0),
    timestamp BIGINT NOT NULL UNIQUE,
    hash BYTEA NOT NULL,
    CHECK (debits_pending::numeric + debits_posted <= {INT64_MAX}),
    CHECK (credits_pending::numeric + credits_posted <= {INT64_MAX}),
    CHECK ((flags & 2) = 0 OR debits_pending::numeric + debits_posted <= credits_posted),
    CHECK ((flags & 4) = 0 OR credits_pending::numeric + credits_posted <= debits_posted)
);
CREATE TABLE transfers (
    id BIGINT PRIMARY KEY CHECK (id > 0),
    debit_account_id BIGINT NOT NULL,
    credit_account_id BIGINT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    pending_id BIGINT NOT NULL,
    timeout BIGINT NOT NULL,
    ledger BIGINT NOT NULL,
    code INTEGER NOT NULL,
    user_data BIGINT NOT NULL,
    flags INTEGER NOT NULL,
    timestamp BIGINT NOT NULL UNIQUE,
    status SMALLINT NOT NULL CHECK (status BETWEEN 0 AND 4),
    expires_at BIGINT,
    hash BYTEA NOT NULL,
    CHECK (debit_account_id <> credit_account_id)
);
CREATE INDEX transfers_due ON transfers (expires_at) WHERE status = 1;
CREATE TABLE expiries (
    pending_id BIGINT PRIMARY KEY,
    amount BIGINT NOT NULL CHECK (amount > 0),
    timestamp BIGINT NOT NULL UNIQUE,
    hash BYTEA NOT NULL
);
CREATE TABLE failed (id BIGINT PRIMARY KEY);
CREATE TABLE history (
    account_id BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    debits_pending BIGINT NOT NULL,
    debits_posted BIGINT NOT NULL,
    credits_pending BIGINT NOT NULL,
    credits_posted BIGINT NOT NULL,
    PRIMARY KEY (account_id, timestamp)
)
"""

MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}
"""Forward migrations: MIGRATIONS[n] takes a database from version n-1 to n."""

_USER_RELATIONS = """
SELECT count(*) FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  )
"""


class PostgresStore(SqlStore):
    """A ledger in one PostgreSQL database, named by a libpq URL
    (`postgresql://user:password@host:port/dbname`) or key=value connection string."""

    placeholder = "%s"

    def __init__(self, url: str, *, retries: int = RETRIES_MAX) -> None:
        self._conninfo = url
        self._locks: list[_HeldLock] = []  # `hold_lock`'s, each on a connection of its own
        self._lost_lock: str | None = None  # why this store refuses to go on, once it must
        self._password, self.name = describe(url)
        self.retries = retries
        self._closed = False
        self._conn = self._connect()
        try:
            self._open_schema()
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self.name})"

    # --- the batch, retried whole when the server rolled it back -------------------------------

    def _transact(self, now: int, build: Build, *, checked: bool) -> list[Result]:
        for attempt in range(1, self.retries + 1):
            try:
                return super()._transact(now, build, checked=checked)
            except _RETRYABLE as exc:
                if attempt == self.retries:
                    raise StoreUnavailableError(
                        f"{self.name} rolled the batch back {attempt} times in a row "
                        f"({self._scrub(exc)}); nothing of it was written. Retry later, or "
                        "check for sessions holding locks on the clock table"
                    ) from exc
                time.sleep(random.uniform(0, RETRY_PAUSE_MAX_SECONDS) * attempt / self.retries)
        raise AssertionError("unreachable: the loop returns or raises")

    # --- the dialect ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[Any]:
        try:
            # The one lock every batch takes first: batches queue here, in one order.
            with self._transaction(f"{CLOCK_ROW} FOR UPDATE") as cur:
                yield cur
        except _RETRYABLE:
            raise  # rolled back; `apply` runs the batch again
        except psycopg.Error as exc:
            raise self._failure(exc, "apply a batch to") from exc

    @contextlib.contextmanager
    def _read_cursor(self) -> Iterator[Any]:
        try:
            with self._transaction(None, read_only=True) as cur:
                yield cur
        except psycopg.Error as exc:
            raise self._failure(exc, "read") from exc

    @contextlib.contextmanager
    def _transaction(
        self, first_statement: str | None, *, read_only: bool = False
    ) -> Iterator[Any]:
        """A cursor in a new transaction (committed on success, rolled back on any exception)
        whose first statement, if any, has run. A read-only one is REPEATABLE READ, set in its
        BEGIN (no statement of its own). A connection found broken before anything of the
        transaction ran (the server restarted, an idle connection was cut) is replaced once."""
        for attempt in (1, 2):
            conn = self._connection()
            started = False
            try:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ if read_only else None
                conn.read_only = read_only or None
                with conn.transaction(), conn.cursor() as cur:
                    if first_statement is not None:
                        cur.execute(first_statement)
                    started = True
                    yield cur
                return
            except psycopg.OperationalError:
                if started or attempt == 2 or not (conn.broken or conn.closed):
                    raise

    def _statement_rows(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """In autocommit: the server runs the statement as a transaction of its own. A
        connection found broken is replaced and the statement sent again once (it only
        reads)."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                with _autocommit(conn):
                    return list(conn.execute(sql, params).fetchall())
            except psycopg.OperationalError as exc:
                if attempt == 2 or not (conn.broken or conn.closed):
                    raise self._failure(exc, "read") from exc
            except psycopg.Error as exc:
                raise self._failure(exc, "read") from exc
        raise AssertionError("unreachable: the loop returns or raises")

    def run_alone(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement outside any transaction block, for those PostgreSQL refuses
        inside one (CREATE INDEX CONCURRENTLY). Not sent again if the connection breaks."""
        conn = self._connection()
        try:
            with _autocommit(conn):
                conn.execute(sql, params or None, prepare=False)
        except psycopg.Error as exc:
            raise self._failure(exc, "change the schema of") from exc

    def _read_all(
        self, cur: Any, queries: Sequence[tuple[str, list[Any]] | None]
    ) -> list[list[Sequence[Any]]]:
        """Several queries pipelined: one round trip for all."""
        if sum(q is not None for q in queries) < 2:
            return super()._read_all(cur, queries)
        conn = cur.connection
        with conn.pipeline():  # leaving it sends them and fetches every result
            cursors = [None if q is None else conn.execute(*q) for q in queries]
        return [[] if c is None else list(c.fetchall()) for c in cursors]

    def _matching(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        # An id outside BIGINT can match no row; dropping it keeps the array a bigint[].
        inside = [i for i in ids if INT64_MIN <= i <= INT64_MAX]
        return f"{column} = ANY(%s::bigint[])", [_bigint_array(inside)]

    def hold_lock(self, name: str, *, shared: bool) -> Release | None:
        """A session advisory lock on a connection of its own, kept open while it is held: the
        server releases it when that connection ends (the process ended, the server restarted,
        the session was ended). A lock lost with its connection is taken again before this
        store's next transaction (`_keep_locks`)."""
        check_lock_name(name)
        held = self._take_lock(name, shared)
        if held is None:
            return None
        self._locks.append(held)  # kept: a connection collected would drop the lock
        return lambda: self._unlock(held)

    @contextlib.contextmanager
    def taking_turns(self, name: str, *, poll_s: float = 0.05) -> Iterator[None]:
        """Hold the advisory lock `name` for the block, against other processes doing the same,
        polling for it while another holds it: no session of this process waits inside a
        statement meanwhile (a statement that waits keeps a snapshot, and work that waits for
        older snapshots, such as CREATE INDEX CONCURRENTLY, would wait for it in turn). Unlike
        `hold_lock`, losing it with its connection is not watched for."""
        check_lock_name(name)
        held = self._take_lock(name, False)
        while held is None:
            time.sleep(poll_s)
            held = self._take_lock(name, False)
        try:
            yield
        finally:
            held.conn.close()

    def _take_lock(self, name: str, shared: bool) -> _HeldLock | None:
        conn = self._connect(autocommit=True, holding_lock=True)
        take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        try:
            row = conn.execute(
                f"SELECT {take}(%s), backend_start FROM pg_stat_activity"
                " WHERE pid = pg_backend_pid()",
                (_lock_key(name),),
            ).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise self._failure(exc, "lock") from exc
        if not row or not row[0]:
            conn.close()
            return None
        return _HeldLock(name, shared, conn, (conn.info.backend_pid, row[1]))

    def _keep_locks(self) -> None:
        """Take again every held lock whose connection was cut: the server dropped the lock
        with it. If another process took one meanwhile, refuse this and every later
        transaction: whoever asked for the lock relied on being alone (a server's rate windows
        in its memory) and no longer is."""
        if self._lost_lock is not None:
            raise StoreUnavailableError(self._lost_lock)
        for held in self._locks:
            if _alive(held.conn):
                continue
            held.conn.close()
            again = self._take_lock(held.name, held.shared)
            if again is None and self._end_session(held.session):
                again = self._take_lock(held.name, held.shared)
            if again is None:
                self._lost_lock = (
                    f"{self.name}: the connection holding this process's lock {held.name!r} was "
                    "cut (the server restarted, or its session was ended) and another process "
                    "took the lock meanwhile; this store does nothing more. Restart this process "
                    "once the other has stopped: what it kept while it held the lock does not "
                    "count the other's work"
                )
                raise StoreUnavailableError(self._lost_lock)
            held.conn, held.session = again.conn, again.session

    def _end_session(self, session: tuple[int, datetime]) -> bool:
        """End this process's own earlier session if the server still runs it: a connection
        seen as cut here (its keepalives unanswered) can still hold its lock on the server
        until the server sees the cut too. True if it was running (and has now ended)."""
        pid, started = session
        with self._connect(autocommit=True) as conn:
            try:
                row = conn.execute(
                    "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity"
                    " WHERE pid = %s AND backend_start = %s",
                    (CONNECT_TIMEOUT_SECONDS * 1000, pid, started),
                ).fetchone()
            except psycopg.Error as exc:
                raise self._failure(exc, "lock") from exc
        return bool(row and row[0])

    def _unlock(self, held: _HeldLock) -> None:
        if held in self._locks:
            self._locks.remove(held)
            held.conn.close()

    def close(self) -> None:
        self._closed = True
        for held in list(self._locks):
            self._unlock(held)
        self._conn.close()

    # --- bulk writes: one statement per table, not one per row ---------------------------------

    def _persist(
        self, cur: Any, changes: Changes, loaded_accounts: frozenset[int], head: bytes
    ) -> None:
        """A small batch (a decision's holds) in one round trip: its statements pipelined, with
        INSERTs where a large batch (settlement) uses COPY, which cannot be pipelined and is
        faster once the rows outnumber the round trips it costs."""
        rows = len(changes.account_rows) + len(changes.transfer_rows) + len(changes.history)
        if rows > PIPELINED_ROWS_MAX:
            super()._persist(cur, changes, loaded_accounts, head)
            return
        with cur.connection.pipeline():
            super()._persist(cur, changes, loaded_accounts, head)

    def _update_accounts(self, cur: Any, rows: Sequence[Sequence[int]]) -> None:
        """Every changed account's totals in one UPDATE (about twice the batch throughput of
        one UPDATE per row)."""
        if rows:
            columns = zip(*((a[0], a[5], a[6], a[7], a[8]) for a in rows), strict=True)
            arrays = [_bigint_array(column) for column in columns]
            cur.execute(_UPDATE_ACCOUNTS, [*arrays, arrays[0]])

    def _update_statuses(self, cur: Any, statuses: Mapping[int, PendingStatus]) -> None:
        """Every resolved pending transfer's status in one UPDATE."""
        if statuses:
            ids, values = _bigint_array(list(statuses)), [int(s) for s in statuses.values()]
            cur.execute(_UPDATE_STATUSES, (ids, _bigint_array(values), ids))

    def _insert_accounts(
        self, cur: Any, accounts: Sequence[Sequence[int]], hashes: dict[int, bytes]
    ) -> None:
        rows = ((*a, hashes[a[9]]) for a in accounts)
        _insert(cur, f"accounts ({ACCOUNT_COLUMNS}, hash)", _ACCOUNT_TYPES, rows, len(accounts))

    def _insert_transfers(
        self, cur: Any, transfers: Sequence[Sequence[int]], hashes: dict[int, bytes]
    ) -> None:
        rows = (_transfer_values(t, hashes[t[10]]) for t in transfers)
        columns = f"transfers ({TRANSFER_COLUMNS}, status, expires_at, hash)"
        _insert(cur, columns, _TRANSFER_TYPES, rows, len(transfers))

    def _insert_history(self, cur: Any, history: Sequence[AccountBalance]) -> None:
        rows = (
            (
                h.account_id,
                h.timestamp,
                h.debits_pending,
                h.debits_posted,
                h.credits_pending,
                h.credits_posted,
            )
            for h in history
        )
        columns = (
            "history (account_id, timestamp, debits_pending, debits_posted, credits_pending, "
            "credits_posted)"
        )
        _insert(cur, columns, ["int8"] * 6, rows, len(history))

    # --- connection and errors -----------------------------------------------------------------

    def _connect(
        self, *, autocommit: bool = False, holding_lock: bool = False
    ) -> psycopg.Connection[Any]:
        params: dict[str, Any] = conninfo_to_dict(self._conninfo)
        params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
        params.setdefault("application_name", APPLICATION)
        if holding_lock:  # these over the URL's own: their order is what makes the lock safe
            params |= LOCK_CLIENT_KEEPALIVE
            params["options"] = f"{params.get('options', '')} {LOCK_SERVER_KEEPALIVE}".strip()
        try:
            return psycopg.connect(autocommit=autocommit, prepare_threshold=2, **params)
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot connect to {self.name}: {self._scrub(exc)}; check that the server is "
                "running and reachable there, and the URL's user, password and database name "
                "(create the database first if it does not exist)"
            ) from exc

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection; a new one if the last was broken (the server restarted)."""
        if self._closed:
            raise StoreError(f"{self.name}: the store was closed; open a new one")
        self._keep_locks()
        if self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _failure(self, exc: psycopg.Error, doing: str) -> StoreError:
        detail = self._scrub(exc)
        if isinstance(exc, psycopg.OperationalError) and (self._conn.broken or self._conn.closed):
            return StoreUnavailableError(
                f"lost the connection to {self.name} while trying to {doing} it ({detail}); "
                "check the server. A batch whose commit was cut off may or may not have been "
                "written: submitting it again is safe, transfer ids make it apply once"
            )
        return StoreError(
            f"{self.name} refused to let Tollgate {doing} it ({detail}); nothing of the "
            "transaction was written"
        )

    def _scrub(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split())
        return text.replace(self._password, "***") if self._password else text

    # --- identity and migrations ---------------------------------------------------------------

    def _open_schema(self) -> None:
        """Check that the database is Tollgate's (or empty) and not newer, then migrate it
        forward; all in one transaction, so a refusal writes nothing."""
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
                version = self._check_identity(cur)
                if version < SCHEMA_VERSION:
                    _migrate(cur, version)
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot read or create the Tollgate schema in {self.name}: {self._scrub(exc)}; "
                "check that the URL's user may create tables in this database"
            ) from exc

    def _check_identity(self, cur: Any) -> int:
        """The database's schema version (0: empty); refuses a foreign or newer database."""
        cur.execute("SELECT to_regclass('tollgate_meta') IS NOT NULL")
        if not cur.fetchone()[0]:
            cur.execute(_USER_RELATIONS)
            if cur.fetchone()[0]:
                raise NotATollgateDatabaseError(
                    f"{self.name} has tables but no tollgate_meta table: it is not a Tollgate "
                    "database, and nothing was written to it. Point the URL at an empty "
                    "database (CREATE DATABASE ...) or at one Tollgate created"
                )
            return 0
        cur.execute("SELECT key, value FROM tollgate_meta")
        meta = {str(k): str(v) for k, v in cur.fetchall()}
        if meta.get("application") != APPLICATION or not meta.get("schema_version", "").isdigit():
            raise NotATollgateDatabaseError(
                f"{self.name} has a tollgate_meta table that Tollgate did not write "
                f"(application {meta.get('application')!r}, schema_version "
                f"{meta.get('schema_version')!r}); nothing was written to it"
            )
        version = int(meta["schema_version"])
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"{self.name} was written by a newer Tollgate (schema {version}, this one reads "
                f"up to {SCHEMA_VERSION}); upgrade Tollgate to open it. Nothing was written to it"
            )
        return version


@contextlib.contextmanager
def _autocommit(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """`conn` in autocommit for the block (each statement a transaction of its own), then back
    to transactions, unless the block left it closed."""
    conn.autocommit = True
    try:
        yield
    finally:
        if not conn.closed:
            conn.autocommit = False


@dataclass(eq=False)
class _HeldLock:
    """A lock `hold_lock` holds, the connection holding it and that connection's session on
    the server (its pid and start time): both replaced when the lock is taken again."""

    name: str
    shared: bool
    conn: psycopg.Connection[Any]
    session: tuple[int, datetime]


def _lock_key(name: str) -> int:
    """The advisory lock's bigint key for a lock name."""
    return int.from_bytes(hashlib.sha256(f"tollgate:{name}".encode()).digest()[:8], "big") - 2**63


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """False once the connection is cut. Asked without a round trip when nothing arrived: an
    idle connection receives something only when the server ends it (or sends a notice), so
    only then is it pinged."""
    if conn.closed or conn.broken:
        return False
    try:
        arrived, _, _ = select.select([conn.fileno()], [], [], 0)
        if arrived:
            conn.execute("SELECT 1")
    except (psycopg.Error, OSError, ValueError):
        return False
    return True


def _bigint_array(values: Iterable[int]) -> str:
    """A bigint[] literal (the text form is several times faster to send than a list)."""
    return "{" + ",".join(map(str, values)) + "}"


def _insert(
    cur: Any, target: str, types: Sequence[str], rows: Iterable[Sequence[Any]], count: int
) -> None:
    """INSERT the rows into `target` (a table and its columns): with COPY, or in a pipeline
    (`_persist`), which COPY cannot join, with one INSERT sent per row."""
    if not count:
        return
    if cur.connection.pgconn.pipeline_status:
        values = ", ".join(["%s"] * len(types))
        cur.executemany(f"INSERT INTO {target} VALUES ({values})", list(rows))
        return
    with cur.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _migrate(cur: Any, version: int) -> None:
    """Take the database from `version` (0: empty) to SCHEMA_VERSION, inside the caller's
    transaction: a failing step leaves the database as it was."""
    if version == 0:
        cur.execute(_META)
        cur.execute(
            "INSERT INTO tollgate_meta (key, value) VALUES ('application', %s), "
            "('schema_version', '0') ON CONFLICT (key) DO NOTHING",
            (APPLICATION,),
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[step].split(";"):
            if statement.strip():
                cur.execute(statement)
    cur.execute(
        "UPDATE tollgate_meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
    )


def describe(conninfo: str) -> tuple[str, str]:
    """(password, "PostgreSQL database 'db' on host:port as user 'u'") for a URL or key=value
    string, with libpq's defaults; the description never contains the password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise StoreUnavailableError(
            f"cannot read the PostgreSQL URL ({_url_without_password(conninfo)}): "
            f"{' '.join(str(exc).split())}; write postgresql://user:password@host:port/dbname"
        ) from exc
    user = params.get("user") or os.environ.get("PGUSER") or _os_user()
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user
    password = str(params.get("password") or "")
    name = f"PostgreSQL database {dbname!r} on {host}:{port} as user {user!r}"
    return password, name.replace(password, "***") if password else name


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "(unknown user)"


def _url_without_password(conninfo: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(conninfo)
        if parts.password is None:
            return conninfo if "password" not in conninfo else "the URL given"
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    except ValueError:
        return "the URL given"
