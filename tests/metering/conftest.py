"""Fixtures of the metering tests. `store`: a ledger store, once in memory and once on a
SQLite file. The window tests' `make_windows`: one parameter per window store, so tests/metering/
test_windows.py runs unchanged against `MemoryWindows` and `RedisWindows` (on a throwaway
redis-server, see redis_server.py; skipped without one, failed under CI=true)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.metering.windows import MemoryWindows, WindowStore
from ledger.store.base import Store
from ledger.store.memory import MemoryStore
from ledger.store.sqlite import SqliteStore

from .redis_server import ServerUnavailable, running_server, skip_or_fail

WINDOW_KINDS = ("memory", "redis")


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A ledger store in memory, then on a SQLite file (closed after the test)."""
    made: Store = (
        MemoryStore()
        if request.param == "memory"
        else SqliteStore(tmp_path / "ledger.db", synchronous="NORMAL")
    )
    try:
        yield made
    finally:
        made.close()


MakeWindows = Callable[[], WindowStore]


def require_redis_py() -> Any:
    """The redis module, or a skip (a failure under CI=true) saying how to install it."""
    try:
        import redis
    except ImportError:
        skip_or_fail("redis-py is not installed: pip install 'redis>=5'")
    return redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a redis-server started for this session on a free 127.0.0.1 port; stopped and
    its folder removed at the end of the session, even after failures."""
    require_redis_py()
    try:
        with running_server() as url:
            yield url
    except ServerUnavailable as exc:
        skip_or_fail(str(exc))


def fresh_prefix() -> str:
    """A key prefix no other test uses: tests share the session's server, never its keys."""
    return f"test-{secrets.token_hex(6)}:"


@pytest.fixture(params=WINDOW_KINDS)
def make_windows(request: pytest.FixtureRequest) -> Iterator[MakeWindows]:
    """A factory of fresh, empty window stores of one kind; each call gives independent windows
    (for Redis: a new key prefix on the session's server). Redis clients are closed afterwards."""
    opened: list[Any] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""

    def make() -> WindowStore:
        if request.param == "memory":
            return MemoryWindows()
        from ledger.metering.redis_windows import RedisWindows

        store = RedisWindows.from_url(url, prefix=fresh_prefix())
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def windows(make_windows: MakeWindows) -> WindowStore:
    """One fresh, empty window store of each kind."""
    return make_windows()


def kind_of(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["make_windows"])
