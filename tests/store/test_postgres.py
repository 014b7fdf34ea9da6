"""What only the PostgreSQL store has: its identity and version checks, its errors, the
constraints the database enforces by itself, and the batch retried when the server rolled it
back or the connection was cut before it started.

The conformance suite (test_conformance.py) runs every store behaviour against PostgreSQL
through `make_store`; these tests use the session's throwaway cluster directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ledger import Account, AccountFlags, Result, Transfer, TransferFlags
from ledger.store import (
    NotATollgateDatabaseError,
    SchemaTooNewError,
    StoreError,
    StoreUnavailableError,
    store_from_url,
)
from ledger.store.base import PendingStatus
from ledger.store.sql import SCHEMA_VERSION, SqlStore

from . import postgres_cluster
from .plans import generic_plan
from .postgres_cluster import (
    Cluster,
    ClusterUnavailable,
    free_port,
    require_psycopg,
    skip_or_fail,
    start_cluster,
)

psycopg = require_psycopg()  # skips this module where psycopg is missing (fails under CI=true)

from ledger.store import postgres  # noqa: E402  (imports psycopg)
from ledger.store.postgres import PostgresStore  # noqa: E402

NS = 1_000_000_000
NewDatabase = Callable[[], str]


def opening(*ids: int, flags: int = 0) -> list[Account]:
    return [Account(id=i, ledger=1, code=1, flags=flags) for i in ids]


def move(transfer_id: int, debit: int, credit: int, amount: int, **more: int) -> Transfer:
    return Transfer(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=1,
        code=1,
        **more,
    )


@contextmanager
def raw(url: str) -> Iterator[Any]:
    """A plain psycopg connection in autocommit mode (each statement commits alone)."""
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def snapshot(url: str) -> dict[str, Any]:
    """Every relation of the database (all schemas but the system's) with the rows of each
    table, and the number of transactions that wrote: what "nothing was written" compares."""
    with raw(url) as conn:
        relations = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2"
        ).fetchall()
        rows = {
            f"{schema}.{name}": sorted(
                map(repr, conn.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall())
            )
            for schema, name, kind in relations
            if kind == "r"
        }
    return {"relations": relations, "rows": rows}


def tollgate_tables(url: str) -> set[str]:
    with raw(url) as conn:
        found = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {name for (name,) in found}


# --- a new database: the schema, its identity and its version ---------------------------------


def test_a_new_database_gets_the_schema_identity_and_version(
    postgres_database: NewDatabase,
) -> None:
    url = postgres_database()
    PostgresStore(url).close()
    assert tollgate_tables(url) == {
        "tollgate_meta",
        "clock",
        "accounts",
        "transfers",
        "expiries",
        "failed",
        "history",
    }
    with raw(url) as conn:
        meta = dict(conn.execute("SELECT key, value FROM tollgate_meta").fetchall())
        clock = conn.execute("SELECT id, timestamp, head FROM clock").fetchall()
        due = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'transfers_due'"
        ).fetchone()
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'transfers'"
            ).fetchall()
        )
    assert meta == {"application": "tollgate", "schema_version": str(SCHEMA_VERSION)}
    assert clock == [(1, 0, bytes(32))]
    assert due is not None and "(expires_at)" in due[0] and "WHERE (status = 1)" in due[0]
    assert types["amount"] == "bigint" and types["hash"] == "bytea"


def test_reopening_keeps_the_data_and_writes_no_schema_again(
    postgres_database: NewDatabase,
) -> None:
    url = postgres_database()
    with PostgresStore(url) as store:
        assert store.apply([*opening(1, 2), move(10, 1, 2, 5)], NS) == [Result.OK] * 3
    before = snapshot(url)
    with PostgresStore(url) as store:
        assert [t.id for t in store.lookup_transfers([10])] == [10]
    assert snapshot(url) == before


def test_store_from_url_opens_postgresql(postgres_database: NewDatabase) -> None:
    url = postgres_database()
    store = store_from_url(url)
    try:
        assert isinstance(store, PostgresStore)
        assert store.apply(opening(1), NS) == [Result.OK]
    finally:
        store.close()
    store = store_from_url(url.replace("postgresql://", "postgres://", 1))
    try:
        assert [a.id for a in store.lookup_accounts([1])] == [1]
    finally:
        store.close()


def test_many_processes_opening_a_new_database_at_once_create_it_once(
    postgres_database: NewDatabase,
) -> None:
    url = postgres_database()
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_it() -> None:
        try:
            start.wait()
            PostgresStore(url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with raw(url) as conn:
        assert conn.execute("SELECT count(*) FROM clock").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM tollgate_meta").fetchone() == (2,)


# --- refusals: a foreign database, a newer schema; nothing written -----------------------------


@pytest.mark.parametrize(
    "setup",
    [
        "CREATE TABLE customers (id INT PRIMARY KEY, name TEXT); "
        "INSERT INTO customers VALUES (1, 'ada')",
        "CREATE SCHEMA app; CREATE TABLE app.orders (id INT); INSERT INTO app.orders VALUES (7)",
        "CREATE SEQUENCE invoice_numbers",
    ],
    ids=["public-table", "table-in-another-schema", "sequence"],
)
def test_a_database_of_another_application_is_refused_and_left_untouched(
    postgres_database: NewDatabase, postgres_cluster: Cluster, setup: str
) -> None:
    url = postgres_database()
    with raw(url) as conn:
        for statement in setup.split(";"):
            conn.execute(statement)
    before = snapshot(url)
    dbname = url.rsplit("/", 1)[1]
    for opener in (PostgresStore, store_from_url):
        with pytest.raises(NotATollgateDatabaseError) as caught:
            opener(url)
        message = str(caught.value)
        assert dbname in message
        assert f"127.0.0.1:{postgres_cluster.port}" in message
        assert "nothing was written" in message
        assert postgres_cluster.password not in message
    assert snapshot(url) == before


def test_a_tollgate_meta_of_another_application_is_refused(postgres_database: NewDatabase) -> None:
    url = postgres_database()
    with raw(url) as conn:
        conn.execute("CREATE TABLE tollgate_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO tollgate_meta VALUES ('application', 'tollbooth')")
    before = snapshot(url)
    with pytest.raises(NotATollgateDatabaseError, match="tollbooth"):
        PostgresStore(url)
    assert snapshot(url) == before


def test_a_database_written_by_a_newer_tollgate_is_refused_and_left_untouched(
    postgres_database: NewDatabase, postgres_cluster: Cluster
) -> None:
    url = postgres_database()
    with PostgresStore(url) as store:
        store.apply([*opening(1, 2), move(10, 1, 2, 5)], NS)
    newer = SCHEMA_VERSION + 1
    with raw(url) as conn:
        conn.execute(
            "UPDATE tollgate_meta SET value = %s WHERE key = 'schema_version'", (str(newer),)
        )
    before = snapshot(url)
    with pytest.raises(SchemaTooNewError) as caught:
        PostgresStore(url)
    message = str(caught.value)
    assert url.rsplit("/", 1)[1] in message and str(postgres_cluster.port) in message
    assert f"schema {newer}" in message and "upgrade Tollgate" in message
    assert snapshot(url) == before


# --- forward migrations ------------------------------------------------------------------------


def test_an_older_schema_is_migrated_forward_in_one_transaction(
    postgres_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_database()
    with PostgresStore(url) as store:
        store.apply([*opening(1, 2), move(10, 1, 2, 5)], NS)
        journal = list(store.journal())
    next_version = SCHEMA_VERSION + 1
    monkeypatch.setattr(postgres, "SCHEMA_VERSION", next_version)

    # A failing step rolls the whole migration back: still the old version, no new column.
    monkeypatch.setitem(
        postgres.MIGRATIONS, next_version, "ALTER TABLE accounts ADD COLUMN note TEXT; SELECT 1/0"
    )
    with pytest.raises(StoreUnavailableError, match="division by zero"):
        PostgresStore(url)
    with raw(url) as conn:
        assert conn.execute(
            "SELECT value FROM tollgate_meta WHERE key = 'schema_version'"
        ).fetchone() == (str(SCHEMA_VERSION),)
        assert conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"
        ).fetchone() == (0,)

    monkeypatch.setitem(postgres.MIGRATIONS, next_version, "ALTER TABLE accounts ADD note TEXT")
    with PostgresStore(url) as store:
        assert list(store.journal()) == journal
        assert store.verify_chain().ok
        assert store.apply([move(11, 1, 2, 1)], 2 * NS) == [Result.OK]
    with raw(url) as conn:
        assert conn.execute(
            "SELECT value FROM tollgate_meta WHERE key = 'schema_version'"
        ).fetchone() == (str(next_version),)
        assert conn.execute("SELECT count(note) FROM accounts").fetchone() == (0,)

    monkeypatch.undo()  # this Tollgate again: the migrated database is now too new for it
    with pytest.raises(SchemaTooNewError):
        PostgresStore(url)


# --- unreachable databases: clear errors that never show the password -------------------------


def assert_names_the_database(message: str, host: str, port: int, dbname: str) -> None:
    assert f"{host}:{port}" in message
    assert repr(dbname) in message


def test_a_refused_connection_names_the_server_and_hides_the_password() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://alice:Sesame-Opens-42@127.0.0.1:{port}/ledgerdb?connect_timeout=5"
    with pytest.raises(StoreUnavailableError) as caught:
        store_from_url(url)
    message = str(caught.value)
    assert_names_the_database(message, "127.0.0.1", port, "ledgerdb")
    assert "Sesame-Opens-42" not in message
    assert "running" in message  # says what to check


def test_a_wrong_password_names_the_database_and_hides_both_passwords(
    postgres_database: NewDatabase, postgres_cluster: Cluster
) -> None:
    dbname = postgres_database().rsplit("/", 1)[1]
    url = postgres_cluster.url(dbname, password="Not-The-Password-99")
    with pytest.raises(StoreUnavailableError) as caught:
        PostgresStore(url)
    message = str(caught.value)
    assert_names_the_database(message, "127.0.0.1", postgres_cluster.port, dbname)
    assert "password authentication failed" in message
    assert "Not-The-Password-99" not in message
    assert postgres_cluster.password not in message


def test_a_missing_database_is_named(postgres_cluster: Cluster) -> None:
    with pytest.raises(StoreUnavailableError) as caught:
        PostgresStore(postgres_cluster.url("no_such_ledger"))
    message = str(caught.value)
    assert_names_the_database(message, "127.0.0.1", postgres_cluster.port, "no_such_ledger")
    assert "does not exist" in message and "create the database" in message
    assert postgres_cluster.password not in message


def test_a_malformed_url_hides_the_password() -> None:
    with pytest.raises(StoreUnavailableError) as caught:
        PostgresStore("postgresql://bob:Hunter-2-Secret@127.0.0.1:notaport/db")
    assert "Hunter-2-Secret" not in str(caught.value)
    assert "notaport" in str(caught.value)


# --- what the database enforces by itself ------------------------------------------------------

ACCOUNT = (
    "INSERT INTO accounts (id, ledger, code, flags, user_data, debits_pending, debits_posted, "
    "credits_pending, credits_posted, timestamp, hash) VALUES "
)
TRANSFER = (
    "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, pending_id, "
    "timeout, ledger, code, user_data, flags, timestamp, status, expires_at, hash) VALUES "
)
H = "'\\x00'"


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        (ACCOUNT + f"(5, 1, 1, 0, 0, 0, -1, 0, 0, 100, {H})", "CheckViolation"),
        (ACCOUNT + f"(5, 1, 1, 0, 0, -3, 0, 0, 0, 100, {H})", "CheckViolation"),
        (ACCOUNT + f"(5, 1, 1, 0, 0, 0, 0, 0, -7, 100, {H})", "CheckViolation"),
        (ACCOUNT + f"(5, 1, 1, 0, 0, 0, 0, -2, 0, 100, {H})", "CheckViolation"),
        (  # a guarded account whose debits exceed its credits (L1)
            ACCOUNT + f"(5, 1, 1, {int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)}, 0, "
            f"1, 10, 0, 10, 100, {H})",
            "CheckViolation",
        ),
        (  # pending plus posted past 2**63 - 1 (L7)
            ACCOUNT + f"(5, 1, 1, 0, 0, 2, {2**63 - 2}, 0, 0, 100, {H})",
            "CheckViolation",
        ),
        (ACCOUNT + f"(1, 1, 1, 0, 0, 0, 0, 0, 0, 100, {H})", "UniqueViolation"),  # same id
        (ACCOUNT + f"(5, 1, 1, 0, 0, 0, 0, 0, 0, {NS}, {H})", "UniqueViolation"),  # timestamp
        (TRANSFER + f"(20, 1, 2, -5, 0, 0, 1, 1, 0, 0, 100, 0, NULL, {H})", "CheckViolation"),
        (TRANSFER + f"(10, 1, 2, 5, 0, 0, 1, 1, 0, 0, 100, 0, NULL, {H})", "UniqueViolation"),
        (TRANSFER + f"(20, 1, 1, 5, 0, 0, 1, 1, 0, 0, 100, 0, NULL, {H})", "CheckViolation"),
        (TRANSFER + f"(20, 1, 2, 5, 0, 0, 1, 1, 0, 0, 100, 9, NULL, {H})", "CheckViolation"),
        (f"INSERT INTO clock (id, timestamp, head) VALUES (2, 0, {H})", "CheckViolation"),
        ("UPDATE clock SET timestamp = -1", "CheckViolation"),
        ("INSERT INTO expiries VALUES (10, 0, 100, '\\x00')", "CheckViolation"),
    ],
)
def test_the_database_rejects_rows_that_break_the_invariants(
    postgres_database: NewDatabase, statement: str, error: str
) -> None:
    url = postgres_database()
    with PostgresStore(url) as store:
        store.apply([*opening(1, 2), move(10, 1, 2, 5)], NS)
    before = snapshot(url)
    with raw(url) as conn, pytest.raises(getattr(psycopg.errors, error)):
        conn.execute(statement)
    assert snapshot(url) == before


def test_a_batch_the_database_refuses_writes_nothing_and_says_so(
    postgres_database: NewDatabase,
) -> None:
    """A transfer written by hand takes the timestamp the next batch's transfer will get; the
    UNIQUE constraint refuses that batch whole and the store reports it as a StoreError."""
    url = postgres_database()
    with PostgresStore(url) as store:
        store.apply(opening(1, 2), NS)  # timestamps NS, NS + 1
        with raw(url) as conn:
            conn.execute(TRANSFER + f"(77, 1, 2, 5, 0, 0, 1, 1, 0, 0, {NS + 2}, 0, NULL, {H})")
        before = snapshot(url)
        with pytest.raises(StoreError, match="nothing of the transaction was written") as caught:
            store.apply([move(10, 1, 2, 5)], NS)
        assert isinstance(caught.value.__cause__, psycopg.errors.UniqueViolation)
        assert snapshot(url) == before
        assert store.lookup_transfers([10]) == []  # the store is still usable


# --- retries: the batch runs again, whole, without the caller seeing it -----------------------


def hold_clock_lock(url: str, seconds: float) -> threading.Thread:
    """Lock the clock row from another session for `seconds` (returns once it is held)."""
    held = threading.Event()

    def hold() -> None:
        with psycopg.connect(url) as conn:
            conn.execute("SELECT 1 FROM clock WHERE id = 1 FOR UPDATE")
            held.set()
            time.sleep(seconds)
            conn.rollback()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    return thread


def with_lock_timeout(url: str, milliseconds: int) -> str:
    return f"{url}?options=-c%20lock_timeout%3D{milliseconds}"


def test_a_batch_that_timed_out_on_the_lock_is_retried_until_it_applies(
    postgres_database: NewDatabase,
) -> None:
    url = postgres_database()
    with PostgresStore(with_lock_timeout(url, 100), retries=30) as store:
        store.apply(opening(1, 2), NS)
        holder = hold_clock_lock(url, 0.6)
        started = time.monotonic()
        results = store.apply([move(10, 1, 2, 5)], 2 * NS)
        waited = time.monotonic() - started
        holder.join()
        assert results == [Result.OK]
        assert waited >= 0.4  # it did wait for the other session, through several time-outs
        assert [a.debits_posted for a in store.lookup_accounts([1])] == [5]


def test_a_batch_still_refused_after_every_retry_raises_and_writes_nothing(
    postgres_database: NewDatabase,
) -> None:
    url = postgres_database()
    with PostgresStore(with_lock_timeout(url, 50), retries=3) as store:
        store.apply(opening(1, 2), NS)
        holder = hold_clock_lock(url, 2.0)
        try:
            with pytest.raises(StoreUnavailableError, match="rolled the batch back 3 times"):
                store.apply([move(10, 1, 2, 5)], 2 * NS)
        finally:
            holder.join()
        assert store.lookup_transfers([10]) == []
        assert store.apply([move(10, 1, 2, 5)], 2 * NS) == [Result.OK]


@pytest.mark.parametrize("error", ["SerializationFailure", "DeadlockDetected"])
def test_a_serialization_failure_or_deadlock_reruns_the_whole_batch(
    postgres_database: NewDatabase, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    """The server rolls back a transaction it reports as a serialization failure or deadlock;
    the first attempt's failure is injected where the batch reads its rows."""
    url = postgres_database()
    store = PostgresStore(url)
    try:
        store.apply(opening(1, 2), NS)
        load = SqlStore._load
        attempts = []

        def failing_once(self: SqlStore, cur: Any, *args: Any) -> Any:
            attempts.append(1)
            if len(attempts) == 1:
                cur.execute("UPDATE accounts SET user_data = 99 WHERE id = 1")  # rolled back
                raise getattr(psycopg.errors, error)("injected")
            return load(self, cur, *args)

        monkeypatch.setattr(SqlStore, "_load", failing_once)
        assert store.apply([move(10, 1, 2, 5)], 2 * NS) == [Result.OK]
        assert len(attempts) == 2
        monkeypatch.undo()
        account = store.lookup_accounts([1])[0]
        assert (account.user_data, account.debits_posted) == (0, 5)
        assert len(store.lookup_transfers([10])) == 1
    finally:
        store.close()


def test_a_connection_cut_while_idle_is_replaced(
    postgres_database: NewDatabase, postgres_cluster: Cluster
) -> None:
    url = postgres_database()
    dbname = url.rsplit("/", 1)[1]

    def cut() -> None:
        with raw(postgres_cluster.url()) as conn:
            (killed,) = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s",
                (dbname,),
            ).fetchone()
        assert killed == 1

    with PostgresStore(url) as store:
        store.apply(opening(1, 2), NS)
        cut()
        assert store.apply([move(10, 1, 2, 5)], 2 * NS) == [Result.OK]
        cut()
        assert [t.id for t in store.lookup_transfers([10])] == [10]
        cut()
        assert store.verify_chain().ok


def test_a_read_one_statement_answers_sends_no_begin_or_commit(
    postgres_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lookups and `query` run their one statement in autocommit: one round trip, not three."""
    import psycopg

    sent: list[str] = []
    command, execute = psycopg.Connection._exec_command, psycopg.Cursor.execute

    def counted_command(self: Any, text: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(bytes(text).decode() if isinstance(text, bytes | bytearray) else str(text))
        return command(self, text, *args, **kwargs)

    def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append("statement")
        return execute(self, query, *args, **kwargs)

    with PostgresStore(postgres_database()) as store:
        store.apply(opening(1, 2), NS)
        assert store.apply([move(10, 1, 2, 5)], 2 * NS) == [Result.OK]
        monkeypatch.setattr(psycopg.Connection, "_exec_command", counted_command)
        monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
        assert [a.id for a in store.lookup_accounts([2, 1])] == [2, 1]
        assert [t.id for t in store.lookup_transfers([10, 11])] == [10]
        assert store.pending_status(10) is PendingStatus.NONE
        assert store.query("SELECT id FROM accounts WHERE id > %s", [1]) == [(2,)]
        assert sent == ["statement"] * 4
        monkeypatch.undo()
        assert store.apply([move(11, 1, 2, 5)], 3 * NS) == [Result.OK]  # writes as before


def _modes(cur: Any) -> tuple[str, str]:
    cur.execute("SELECT current_setting('transaction_isolation'), "
                "current_setting('transaction_read_only')")  # fmt: skip
    isolation, read_only = cur.fetchone()
    return str(isolation), str(read_only)


def test_reads_are_repeatable_read_only_and_batches_read_committed(
    postgres_database: NewDatabase,
) -> None:
    """The audit's snapshot relies on a read seeing one snapshot; a batch must be writable
    whatever read ran on the connection before it."""
    seen: list[tuple[str, str]] = []

    def build(view: Any) -> tuple[list[Any], None]:
        seen.append(_modes(view.cursor))
        return [], None

    with PostgresStore(postgres_database()) as store:
        store.apply(opening(1, 2), NS)
        assert store.read(_modes) == ("repeatable read", "on")
        store.transact(2 * NS, build)
        assert seen == [("read committed", "off")]
        assert store.read(_modes) == ("repeatable read", "on")
        assert len(store.lookup_accounts([1, 2])) == 2  # a statement of its own, in autocommit
        store.transact(3 * NS, build)
        assert seen == [("read committed", "off")] * 2
        assert store.read(_modes) == ("repeatable read", "on")
        assert store.apply([move(10, 1, 2, 5)], 4 * NS) == [Result.OK]


def test_a_connection_lost_inside_a_batch_raises_store_unavailable(
    postgres_database: NewDatabase, postgres_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut while the batch runs: the caller is told the connection was lost (and that
    resubmitting is safe); nothing was written; the next call reconnects."""
    url = postgres_database()
    dbname = url.rsplit("/", 1)[1]
    with PostgresStore(url) as store:
        store.apply(opening(1, 2), NS)
        load = SqlStore._load

        def cut_then_load(self: SqlStore, cur: Any, *args: Any) -> Any:
            with raw(postgres_cluster.url()) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (dbname,),
                )
            return load(self, cur, *args)

        monkeypatch.setattr(SqlStore, "_load", cut_then_load)
        with pytest.raises(StoreUnavailableError) as caught:
            store.apply([move(10, 1, 2, 5)], 2 * NS)
        monkeypatch.undo()
        message = str(caught.value)
        assert "lost the connection" in message and dbname in message
        assert "submitting it again is safe" in message
        assert store.lookup_transfers([10]) == []
        assert store.apply([move(10, 1, 2, 5)], 2 * NS) == [Result.OK]


# --- where PostgreSQL is missing ---------------------------------------------------------------


def test_without_postgresql_the_tests_skip_saying_how_to_install_it_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres_cluster, "find_binaries", lambda: None)
    with pytest.raises(ClusterUnavailable) as caught:
        start_cluster()
    reason = str(caught.value)
    assert "initdb" in reason and "apt-get install postgresql" in reason
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        skip_or_fail(reason)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        skip_or_fail(reason)


def test_the_store_never_shows_its_password(postgres_database: NewDatabase) -> None:
    url = postgres_database()
    password = url.split(":")[2].split("@")[0]
    with PostgresStore(url) as store:
        assert password not in repr(store) and password not in store.name
        assert "127.0.0.1" in store.name


# --- small batches pipelined, large ones copied: the same rows either way ---------------------

PENDING = int(TransferFlags.PENDING)


def _written_by(url: str, pipelined: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Accounts with history, moves, holds and their expiry, written with every batch
    pipelined (INSERTs) or with every batch copied (COPY); the tables' rows."""
    copies: list[str] = []
    real_copy = psycopg.Cursor.copy

    def copy(cur: Any, statement: Any, *args: Any, **kwargs: Any) -> Any:
        assert not pipelined, f"COPY in a pipelined write: {statement}"
        copies.append(str(statement))
        return real_copy(cur, statement, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(psycopg.Cursor, "copy", copy)
        patch.setattr(postgres, "PIPELINED_ROWS_MAX", 10**6 if pipelined else 0)
        with PostgresStore(url) as store:
            store.apply(opening(*range(1, 31), flags=int(AccountFlags.HISTORY)), NS)
            moves = [move(100 + i, 1 + i % 30, 1 + (i * 7 + 3) % 30, 5 + i) for i in range(40)]
            holds = [move(200 + i, 1 + i, 2 + i, 3, flags=PENDING, timeout=1) for i in range(5)]
            assert store.apply([*moves, *holds], 2 * NS) == [Result.OK] * 45
            store.expire_due(5 * NS)
    assert pipelined or len(copies) >= 3  # accounts, transfers and history were copied
    tables = ("accounts", "transfers", "history", "expiries", "failed", "clock")
    with raw(url) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}


def test_a_batch_written_pipelined_stores_what_a_copied_one_stores(
    postgres_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipelined = _written_by(postgres_database(), True, monkeypatch)
    copied = _written_by(postgres_database(), False, monkeypatch)
    assert len(pipelined["transfers"]) == 45 and len(pipelined["expiries"]) == 5
    assert len(pipelined["history"]) > 64  # more rows than a pipelined write would take
    assert pipelined == copied


@pytest.mark.parametrize(
    ("statement", "table", "types"),
    [
        (postgres._UPDATE_ACCOUNTS, "accounts", ["bigint[]"] * 6),
        (postgres._UPDATE_STATUSES, "transfers", ["bigint[]", "smallint[]", "bigint[]"]),
    ],
    ids=["accounts", "statuses"],
)
def test_a_batch_update_probes_the_primary_key_even_as_planned_on_an_empty_table(
    postgres_database: NewDatabase, statement: str, table: str, types: list[str]
) -> None:
    """The server keeps a generic plan once it has one: planned while the table was nearly
    empty, a join on the ids alone would scan the whole table in every batch later."""
    url = postgres_database()
    PostgresStore(url).close()
    plan = generic_plan(url, statement, types)
    assert f"Seq Scan on {table}" not in plan, plan
    assert f"Index Scan on {table}_pkey" in plan, plan
