"""`Store.hold_lock`: a named lock on a database, exclusive or shared, held until released or
until the holding process ends, however it ends. On SQLite (an flock beside the file) and on
PostgreSQL (a session advisory lock); the memory store, which no other process reaches, grants
every lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger.store import MemoryStore, SqliteStore, Store

ROOT = Path(__file__).resolve().parents[2]
OpenStore = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, OpenStore]]:
    """(URL, a factory of stores all on that one database); the stores are closed afterwards."""
    opened: list[Store] = []
    if request.param == "sqlite":
        path = tmp_path / "locks.db"
        url = f"sqlite:///{path}"

        def make() -> Store:
            return SqliteStore(path)

    else:
        from ledger.store.postgres import PostgresStore

        url = request.getfixturevalue("postgres_database")()

        def make() -> Store:
            return PostgresStore(url)

    def opening() -> Store:
        store = make()
        opened.append(store)
        return store

    yield url, opening
    for store in opened:
        store.close()


def test_an_exclusive_lock_excludes_every_other_holder(database: tuple[str, OpenStore]) -> None:
    _, open_store = database
    one, two = open_store(), open_store()
    release = one.hold_lock("serve", shared=False)
    assert release is not None
    assert two.hold_lock("serve", shared=False) is None
    assert two.hold_lock("serve", shared=True) is None
    assert two.hold_lock("other", shared=False) is not None  # another name, another lock
    release()
    release()  # twice: nothing more
    again = two.hold_lock("serve", shared=False)
    assert again is not None
    again()


def test_shared_locks_go_together_and_keep_an_exclusive_one_out(
    database: tuple[str, OpenStore],
) -> None:
    _, open_store = database
    one, two, three = open_store(), open_store(), open_store()
    first, second = one.hold_lock("serve", shared=True), two.hold_lock("serve", shared=True)
    assert first is not None and second is not None
    assert three.hold_lock("serve", shared=False) is None
    first()
    assert three.hold_lock("serve", shared=False) is None  # the second still holds it
    second()
    assert three.hold_lock("serve", shared=False) is not None


def test_a_killed_holder_holds_nothing(database: tuple[str, OpenStore]) -> None:
    url, open_store = database
    code = (
        "import sys, time\n"
        "from ledger.store import store_from_url\n"
        "store = store_from_url(sys.argv[1])\n"
        "assert store.hold_lock('serve', shared=False) is not None\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        store = open_store()
        assert store.hold_lock("serve", shared=True) is None
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        release = _eventually(lambda: store.hold_lock("serve", shared=False))
        assert release is not None
        release()
    finally:
        child.kill()
        child.wait()


def _eventually(take: Callable[[], Callable[[], None] | None]) -> Callable[[], None] | None:
    """PostgreSQL notices a dead client's connection a moment after the process is gone."""
    import time

    deadline = time.monotonic() + 10
    while (got := take()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_the_memory_store_grants_every_lock() -> None:
    store = MemoryStore()
    assert store.hold_lock("serve", shared=False) is not None
    assert store.hold_lock("serve", shared=False) is not None


@pytest.mark.parametrize("name", ["", "../x", "a b", "x" * 33, "é"])
def test_a_lock_name_outside_letters_digits_and_dashes_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="lock's name"):
        MemoryStore().hold_lock(name, shared=False)


def test_a_lock_is_held_until_released_or_the_store_closed_even_if_its_release_is_dropped(
    database: tuple[str, OpenStore],
) -> None:
    import gc

    _, open_store = database
    one, two = open_store(), open_store()
    assert one.hold_lock("serve", shared=False) is not None  # its release not kept
    gc.collect()
    assert two.hold_lock("serve", shared=True) is None
    one.close()
    release = _eventually(lambda: two.hold_lock("serve", shared=False))
    assert release is not None
    release()


@pytest.fixture
def cut_holder(postgres_database: Callable[[], str]) -> Iterator[tuple[Store, Store]]:
    """Two stores on one PostgreSQL database, the first holding "serve" exclusively until its
    lock's session was ended, as a server restart ends every session (and drops its locks)."""
    import psycopg

    from ledger.store.postgres import PostgresStore

    url = postgres_database()
    holders = (
        "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with PostgresStore(url) as one, PostgresStore(url) as two:
        assert one.hold_lock("serve", shared=False) is not None
        with psycopg.connect(url, autocommit=True) as admin:
            pids = [row[0] for row in admin.execute(holders)]
            assert len(pids) == 1, pids
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pids[0],))
        yield one, two


def test_a_lock_cut_with_its_connection_is_taken_again_before_the_next_transaction(
    cut_holder: tuple[Store, Store],
) -> None:
    one, two = cut_holder
    assert one.read(lambda cur: cur.execute("SELECT 1").fetchone()) == (1,)
    assert two.hold_lock("serve", shared=True) is None  # one holds it again
    one.close()
    assert _eventually(lambda: two.hold_lock("serve", shared=False)) is not None


def test_a_store_whose_cut_lock_another_process_took_refuses_every_later_transaction(
    cut_holder: tuple[Store, Store],
) -> None:
    from ledger.store.base import StoreUnavailableError

    one, two = cut_holder
    release = two.hold_lock("serve", shared=False)
    assert release is not None
    with pytest.raises(StoreUnavailableError, match="another process took the lock"):
        one.read(lambda cur: None)
    release()
    with pytest.raises(StoreUnavailableError, match="'serve'"):  # for good, not only while
        one.expire_due(0)  # the other holds it: what one kept misses the other's work
    assert two.hold_lock("serve", shared=False) is not None  # one took nothing back


def test_a_lock_lost_in_a_server_restart_is_held_again_before_the_next_transaction() -> None:
    from ledger.store.postgres import PostgresStore
    from tests.store.postgres_cluster import cluster_for_tests

    with cluster_for_tests() as cluster:  # its own: the session's cluster is shared
        url = cluster.create_database("restarted")
        with PostgresStore(url) as one, PostgresStore(url) as two:
            assert one.hold_lock("serve", shared=False) is not None
            cluster.restart()
            assert one.read(lambda cur: cur.execute("SELECT 1").fetchone()) == (1,)
            assert two.hold_lock("serve", shared=True) is None


def test_postgres_stores_taking_turns_wait_for_each_other_and_keep_nothing_after(
    postgres_database: Callable[[], str],
) -> None:
    import threading

    from ledger.store.postgres import PostgresStore

    url = postgres_database()
    order: list[str] = []
    with PostgresStore(url) as one, PostgresStore(url) as two:

        def second() -> None:
            with two.taking_turns("build"):
                order.append("two")

        with one.taking_turns("build"):
            thread = threading.Thread(target=second)
            thread.start()
            thread.join(0.5)
            assert thread.is_alive()  # polling while one holds it
            order.append("one")
        thread.join(10)
        assert order == ["one", "two"]
        assert one.hold_lock("build", shared=False) is not None  # two let it go
        assert one.read(lambda cur: cur.execute("SELECT 1").fetchone()) == (1,)


def test_a_lock_whose_connection_only_this_side_saw_cut_is_taken_back_from_its_old_session(
    postgres_database: Callable[[], str],
) -> None:
    """The server still runs the session that holds the lock (it has heard nothing of the cut):
    the store ends that session of its own and takes the lock again."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from ledger.store.postgres import PostgresStore
    from tests.store.cutting_proxy import cutting_proxy

    url = postgres_database()
    server = conninfo_to_dict(url)
    with cutting_proxy(str(server["host"]), int(server["port"])) as proxy:
        proxied = make_conninfo(url, host="127.0.0.1", port=proxy.port)
        with PostgresStore(proxied) as one, PostgresStore(url) as two:
            opened = len(proxy.carried)
            assert one.hold_lock("serve", shared=False) is not None
            proxy.cut(first=opened)  # the lock's connection only
            assert two.hold_lock("serve", shared=True) is None  # the old session holds it
            assert one.read(lambda cur: cur.execute("SELECT 1").fetchone()) == (1,)
            assert len(_advisory_holders(url)) == 1  # one's new session, not two
            assert two.hold_lock("serve", shared=True) is None
            one.close()
            assert _eventually(lambda: two.hold_lock("serve", shared=False)) is not None


def _advisory_holders(url: str) -> list[int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
    return [pid for (pid,) in rows]


def test_a_lock_connection_gives_up_on_a_silent_server_before_the_server_drops_the_lock(
    postgres_database: Callable[[], str],
) -> None:
    """TCP keepalives on the lock's connection, tighter on this side than on the server's side
    of the session: a process stops counting on its lock before the server can let another
    process take it."""
    import socket

    from ledger.store.postgres import PostgresStore

    with PostgresStore(postgres_database()) as store:
        assert store.hold_lock("serve", shared=False) is not None
        conn = store._locks[0].conn  # white-box: the settings live on that connection only
        end = socket.socket(fileno=conn.fileno())
        try:
            assert end.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            idle, interval, count = (
                end.getsockopt(socket.IPPROTO_TCP, option)
                for option in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)
            )
        finally:
            end.detach()  # the socket stays psycopg's
        shown = [
            int(conn.execute(f"SHOW tcp_keepalives_{name}").fetchone()[0])
            for name in ("idle", "interval", "count")
        ]
        client_gives_up = idle + interval * count
        server_gives_up = shown[0] + shown[1] * shown[2]
        assert 0 < client_gives_up < server_gives_up, (idle, interval, count, shown)
