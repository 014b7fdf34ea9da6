"""The SQLite store on its own: identity and versioning of the file, bad paths, permissions and
URLs, persistence across reopening, the durability pragmas, and forward migrations.

Every refusal must raise the right `StoreError` subclass, name the file, and leave the file's
bytes (and the folder's listing) exactly as they were.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import pwd
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Account, Ledger, Transfer
from ledger.store import (
    MemoryStore,
    NotATollgateDatabaseError,
    SchemaTooNewError,
    SqliteStore,
    StoreError,
    StoreUnavailableError,
    store_from_url,
)
from ledger.store import sqlite as sqlite_module
from ledger.store.chain import GENESIS
from ledger.store.sql import SCHEMA_VERSION
from tests.store import crash_child as workload
from tests.store.crash_child import differences, violations

TABLES = {"clock", "accounts", "transfers", "expiries", "failed", "history"}


def fingerprint(path: Path) -> tuple[str, list[str]]:
    """The file's sha256 and its folder's listing: what a refusal must leave unchanged."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(os.listdir(path.parent))


def refuses(path: Path, error: type[StoreError], *words: str) -> StoreError:
    """Opening `path` raises `error` naming the file; the file and its folder are unchanged."""
    before = fingerprint(path)
    with pytest.raises(error) as raised:
        SqliteStore(path)
    message = str(raised.value)
    assert str(path) in message
    for word in words:
        assert word in message
    assert fingerprint(path) == before
    return raised.value


def run_workload(store: SqliteStore | MemoryStore, ledger: Ledger, first: int, last: int) -> None:
    for k in range(first, last + 1):
        assert store.apply(workload.batch(3, k), workload.now_of(k)) == ledger.apply(
            workload.batch(3, k), workload.now_of(k)
        )


def all_ids(ledger: Ledger) -> tuple[list[int], list[int]]:
    accounts = [a.id for a in ledger.accounts()] + [workload.MISSING]
    return accounts, [t.id for t in ledger.transfers()] + sorted(ledger.failed_ids())


# --- not a Tollgate database ----------------------------------------------------------------------

NOISE = random.Random(7).randbytes  # deterministic "random" bytes
NOT_DATABASES = {
    "random 4 KiB": NOISE(4096),
    "random 100 bytes": NOISE(100),
    "random 37 bytes": NOISE(37),
    "two bytes": b"{}",
    "text": b"customer,amount\nalice,10\nbob,20\n" * 40,
    "gzip": bytes.fromhex("1f8b0800000000000003") + NOISE(200),
}


@pytest.mark.parametrize("content", NOT_DATABASES.values(), ids=NOT_DATABASES.keys())
def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    refuses(path, NotATollgateDatabaseError, "not a Tollgate database")


def test_a_one_byte_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\n")
    refuses(path, NotATollgateDatabaseError)


def test_a_sqlite_database_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO customers VALUES (1, 'alice')")
    db.commit()
    db.close()
    refuses(path, NotATollgateDatabaseError, "another application")


def test_an_empty_database_with_another_application_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA application_id = 1234")
    db.close()
    refuses(path, NotATollgateDatabaseError, "another application")


def test_an_empty_database_claiming_the_current_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.close()
    refuses(path, StoreError)


def test_a_database_written_by_a_newer_tollgate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with SqliteStore(path) as store:
        store.apply([Account(id=1, ledger=1, code=1)], 1)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    error = refuses(path, SchemaTooNewError, "newer", "upgrade")
    assert f"schema {SCHEMA_VERSION + 1}" in str(error)


def test_a_truncated_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with SqliteStore(path) as store:
        run_workload(store, Ledger(), 1, 30)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refuses(path, StoreError)


def test_a_database_with_a_corrupted_page_gives_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with SqliteStore(path) as store:
        run_workload(store, Ledger(), 1, 30)
    data = path.read_bytes()
    path.write_bytes(data[:4096] + NOISE(len(data) - 4096))  # the header page is intact
    with pytest.raises(StoreError, match=r"ledger\.db"), SqliteStore(path) as store:
        store.apply(
            [Transfer(id=1, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1)],
            10**12,
        )
        list(store.journal())


# --- paths and permissions ------------------------------------------------------------------------


def test_a_file_in_a_missing_folder_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "ledger.db"
    with pytest.raises(StoreUnavailableError) as raised:
        SqliteStore(path)
    assert str(path) in str(raised.value) and "folder exists" in str(raised.value)
    assert not path.parent.exists()


def test_a_folder_is_not_a_database_file(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match=str(tmp_path)):
        SqliteStore(tmp_path)


NOBODY = "nobody"


def as_unprivileged(action: Callable[[], object]) -> tuple[str, str]:
    """Run `action` as an unprivileged user and return (outcome, message): "ok" or the
    qualified name of the exception it raised. Root ignores file permissions, so as root the
    action runs in a forked child that drops to `nobody` first; otherwise it runs here."""
    if os.geteuid() != 0:
        return _outcome(action)
    try:
        user = pwd.getpwnam(NOBODY)
    except KeyError:
        pytest.skip(f"running as root and there is no {NOBODY!r} user to drop privileges to")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, act, report, and leave without cleanup
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
            os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
            os.write(write, pickle.dumps(_outcome(action)))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return pickle.loads(data) if data else ("no report", "the unprivileged child died")


def _outcome(action: Callable[[], object]) -> tuple[str, str]:
    try:
        action()
    except Exception as exc:
        return f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc)
    return "ok", ""


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="tollgate-perm-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for inner in folder.rglob("*"):
            if inner.is_dir():
                inner.chmod(0o755)
        shutil.rmtree(folder)


UNAVAILABLE = "ledger.store.base.StoreUnavailableError"


def closed_store(path: Path) -> None:
    with SqliteStore(path) as store:
        store.apply([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)], 1)


def open_and_apply(path: Path) -> Callable[[], object]:
    def action() -> object:
        with SqliteStore(path) as store:
            return store.apply([Account(id=3, ledger=1, code=1)], 10)

    return action


def test_a_new_file_in_a_read_only_folder_is_unavailable(shared_folder: Path) -> None:
    folder = shared_folder / "read-only"
    folder.mkdir(mode=0o555)
    folder.chmod(0o555)
    outcome, message = as_unprivileged(open_and_apply(folder / "ledger.db"))
    assert (outcome, str(folder / "ledger.db") in message) == (UNAVAILABLE, True), message
    assert os.listdir(folder) == []


def test_a_read_only_database_in_a_read_only_folder_is_unavailable(shared_folder: Path) -> None:
    folder = shared_folder / "read-only"
    folder.mkdir()
    path = folder / "ledger.db"
    closed_store(path)
    path.chmod(0o444)
    folder.chmod(0o555)
    before = fingerprint(path)
    outcome, message = as_unprivileged(open_and_apply(path))
    assert fingerprint(path) == before
    assert (outcome, str(path) in message) == (UNAVAILABLE, True), message


def test_a_read_only_database_file_is_unavailable(shared_folder: Path) -> None:
    folder = shared_folder / "writable"
    folder.mkdir()
    folder.chmod(0o777)
    path = folder / "ledger.db"
    closed_store(path)
    path.chmod(0o444)
    before = fingerprint(path)[0]
    outcome, message = as_unprivileged(open_and_apply(path))
    assert fingerprint(path)[0] == before
    assert outcome.startswith("ledger.store.base.Store"), (outcome, message)
    assert str(path) in message


def test_a_database_locked_by_another_writer_gives_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with SqliteStore(path) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process in the middle of a batch
        try:
            with pytest.raises(StoreError, match=r"ledger\.db"):
                store.apply([Account(id=1, ledger=1, code=1)], 1)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.lookup_accounts([1]) == []


@pytest.mark.parametrize("name", ["ledger#1.db", "b%41.db", "what?.db"])
def test_a_file_name_is_taken_literally(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with SqliteStore(path) as store:
        store.apply([Account(id=1, ledger=1, code=1)], 1)
    assert sorted(os.listdir(tmp_path)) == [name]


# --- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("sqlite://x", "sqlite:///"),
        ("sqlite:///", "three slashes"),
        ("mysql://user@localhost/ledger", "sqlite:///path/to/file.db"),
        ("", "memory://"),
        ("ledger.db", "postgresql://"),
        (None, "memory://"),
    ],
    ids=["two-slashes", "no-path", "mysql", "empty", "bare-path", "none"],
)
def test_a_bad_url_says_what_to_write(
    url: Any, hint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as raised:
        store_from_url(url)
    assert hint in str(raised.value)
    assert os.listdir(tmp_path) == []


def test_a_url_that_is_not_text_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        store_from_url(123)  # type: ignore[arg-type]


def test_urls_that_name_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with store_from_url("memory://") as store:
        assert isinstance(store, MemoryStore)
    with store_from_url("sqlite:///relative.db") as store:
        assert isinstance(store, SqliteStore) and store.path == Path("relative.db")
    absolute = tmp_path / "sub" / "absolute.db"
    absolute.parent.mkdir()
    with store_from_url(f"sqlite:///{absolute}") as store:  # four slashes in all
        assert store.path == absolute
    assert (tmp_path / "relative.db").exists() and absolute.exists()


# --- persistence, durability settings and migrations ----------------------------------------------


def test_reopening_gives_the_same_state_and_continues(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger()
    with SqliteStore(path) as store:
        run_workload(store, ledger, 1, 25)
    with SqliteStore(path) as store:
        assert differences(store, ledger, *all_ids(ledger)) == []
        assert violations(store) == []
        run_workload(store, ledger, 26, 40)  # the clock, pending timeouts and failures carry on
        assert differences(store, ledger, *all_ids(ledger)) == []
    with SqliteStore(path) as store:
        assert differences(store, ledger, *all_ids(ledger)) == []
        assert violations(store) == []


def test_two_stores_on_one_file_apply_one_after_the_other(tmp_path: Path) -> None:
    """Two connections (as two processes would have) share the file through SQLite's lock:
    each batch reads what the other committed."""
    path = tmp_path / "ledger.db"
    ledger = Ledger()
    with SqliteStore(path) as first, SqliteStore(path) as second:
        for k in range(1, 31):
            store = first if k % 3 else second
            assert store.apply(workload.batch(5, k), workload.now_of(k)) == ledger.apply(
                workload.batch(5, k), workload.now_of(k)
            )
        assert differences(first, ledger, *all_ids(ledger)) == []
        assert differences(second, ledger, *all_ids(ledger)) == []


def pragma(store: SqliteStore, name: str) -> Any:
    return store._db.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.mark.parametrize(("mode", "level"), [("FULL", 2), ("full", 2), ("EXTRA", 3), ("NORMAL", 1)])
def test_durability_pragmas_are_in_effect(tmp_path: Path, mode: str, level: int) -> None:
    with SqliteStore(tmp_path / "ledger.db", synchronous=mode) as store:
        assert (pragma(store, "synchronous"), pragma(store, "journal_mode")) == (level, "wal")


def test_commits_leave_up_to_10000_wal_pages_before_copying_them_back(tmp_path: Path) -> None:
    """SQLite's default copies the WAL back into the file at the first commit past 1,000 pages
    and starts it again; a store lets it grow to CHECKPOINT_PAGES, with a cache to match."""
    with SqliteStore(tmp_path / "ledger.db") as store:
        assert pragma(store, "cache_size") == -sqlite_module.CACHE_KIB
        store._db.execute("CREATE TABLE filler (bytes BLOB)")
        for _ in range(30):  # about 3,000 pages, 100 per commit
            store._db.execute("BEGIN")
            store._db.executemany("INSERT INTO filler VALUES (randomblob(4000))", [()] * 100)
            store._db.execute("COMMIT")
        _, wal_pages, _ = store._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert 3_000 <= wal_pages < sqlite_module.CHECKPOINT_PAGES


def test_full_durability_is_the_default(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "ledger.db") as store:
        assert (pragma(store, "synchronous"), pragma(store, "journal_mode")) == (2, "wal")
    db = sqlite3.connect(tmp_path / "ledger.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # recorded in the file
    db.close()


def test_an_unknown_synchronous_mode_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    closed_store(path)
    before = fingerprint(path)
    with pytest.raises(StoreError, match="synchronous must be"):
        SqliteStore(path, synchronous="OFF")
    assert fingerprint(path) == before


def test_an_unknown_synchronous_mode_creates_no_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SqliteStore(tmp_path / "ledger.db", synchronous="OFF")
    assert os.listdir(tmp_path) == []


def schema_of(path: Path) -> tuple[int, int, set[str], tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        application = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        clock = db.execute("SELECT id, timestamp, head FROM clock").fetchone()
    finally:
        db.close()
    return version, application, tables, clock


@pytest.mark.parametrize("start", ["new path", "empty file"])
def test_migrations_from_version_zero(tmp_path: Path, start: str) -> None:
    path = tmp_path / "ledger.db"
    if start == "empty file":
        path.write_bytes(b"")
    SqliteStore(path).close()
    version, application, tables, clock = schema_of(path)
    assert version == SCHEMA_VERSION == max(sqlite_module.MIGRATIONS)
    assert application == sqlite_module.APPLICATION_ID
    assert tables >= TABLES
    assert clock == (1, 0, GENESIS)
    before = fingerprint(path)
    SqliteStore(path).close()  # at the current version: opening writes nothing
    assert fingerprint(path) == before


def test_a_forward_migration_keeps_the_data_and_records_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger()
    with SqliteStore(path) as store:
        run_workload(store, ledger, 1, 10)
    step = SCHEMA_VERSION + 1
    migrations = dict(sqlite_module.MIGRATIONS)
    migrations[step] = (
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
        "ALTER TABLE accounts ADD COLUMN note_id INTEGER"
    )
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", migrations)
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", step)
    with SqliteStore(path) as store:
        assert differences(store, ledger, *all_ids(ledger)) == []
        run_workload(store, ledger, 11, 15)
        assert violations(store) == []
    version, _, tables, _ = schema_of(path)
    assert version == step and "notes" in tables
    monkeypatch.undo()
    refuses(path, SchemaTooNewError)  # and the older Tollgate now refuses it


def test_a_failing_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger()
    with SqliteStore(path) as store:
        run_workload(store, ledger, 1, 10)
    step = SCHEMA_VERSION + 1
    migrations = dict(sqlite_module.MIGRATIONS)
    migrations[step] = (
        "CREATE TABLE notes (id INTEGER PRIMARY KEY);ALTER TABLE nowhere ADD COLUMN x INTEGER"
    )
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", migrations)
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", step)
    before = fingerprint(path)[0]
    with pytest.raises(StoreError) as raised:
        SqliteStore(path)
    assert str(path) in str(raised.value)
    assert fingerprint(path)[0] == before
    monkeypatch.undo()
    version, _, tables, _ = schema_of(path)
    assert version == SCHEMA_VERSION and "notes" not in tables
    with SqliteStore(path) as store:
        assert differences(store, ledger, *all_ids(ledger)) == []
