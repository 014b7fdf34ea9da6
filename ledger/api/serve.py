"""`tollgate serve`: open the store, build the Meter (MemoryWindows, or RedisWindows shared by
every server on the same Redis), create the app and run it on uvicorn, one process, with the
settlement worker as an asyncio task on the server's event loop. A server with windows in its
own memory serves its database alone; servers sharing Redis windows may be many
(`hold_servers_lock`).

Also `create_key`, what `tollgate keys create` runs, and `main`, run by `python -m ledger.api`:
the same server without the CLI (the end-to-end tests and bench/http.py start it that way).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from ledger.api.app import create_app
from ledger.api.auth import (
    KEY_PREFIX,
    KeyRecord,
    Keyring,
    Principal,
    Role,
    create_api_key,
    key_hash,
    list_api_keys,
    revoke_api_key,
)
from ledger.metering import Meter
from ledger.metering.windows import MemoryWindows, WindowStore
from ledger.store import Store, store_from_url

ADMIN_KEY_ENV = "TOLLGATE_ADMIN_KEY"
"""Optional: a key (`tg_` and at least 32 more characters) that `serve` accepts as an admin key
without storing it, e.g. to bootstrap a `memory://` store, which no other process can reach."""
BOOTSTRAP_KEY_LENGTH_MIN = 35
SERVERS_LOCK = "serve"
"""The lock every `tollgate serve` holds on its database: exclusive with windows in its own
memory, shared with windows in Redis (`Store.hold_lock`)."""
log = logging.getLogger("tollgate.serve")


class ServerConflictError(Exception):
    """Another `tollgate serve` on the same database makes this one unsafe; nothing was served."""


def hold_servers_lock(store: Store, db_url: str, *, shared_windows: bool) -> None:
    """Hold the servers' lock until `store` closes, or refuse to serve beside a server whose
    rate windows the other cannot see: windows kept in a process's own memory count only that
    process's decisions, so two servers with them (or one with them beside servers sharing
    Redis) would each let a customer use the full limits. Servers sharing Redis windows may be
    many."""
    if store.hold_lock(SERVERS_LOCK, shared=shared_windows) is not None:
        return
    where = _describe(db_url)
    if shared_windows:
        raise ServerConflictError(
            f"a `tollgate serve` keeping its rate windows in its own memory is serving {where}; "
            "servers that share a database must all keep their windows in Redis: stop that "
            "server and start it again with --redis URL"
        )
    raise ServerConflictError(
        f"another `tollgate serve` is serving {where}; a server keeping its rate windows in its "
        "own memory must be the only one (two would each count only their own decisions and "
        "let customers past their limits): stop the other, or run every server with --redis URL"
    )


def open_meter(
    db_url: str,
    redis_url: str | None = None,
    *,
    redis_prefix: str = "tollgate:",
    decides: bool = True,
    serves: bool = False,
) -> Meter:
    """The store at `db_url` (created on first use for SQLite) with its Meter; windows in Redis
    when `redis_url` is given, else in this process's memory, rebuilt from the database. A
    meter that `decides` nothing (the key commands) gets empty windows: nothing is rebuilt.
    A meter that `serves` holds the servers' lock (`hold_servers_lock`) until its store closes,
    taken once the store is open: refused, it has not set up its tables nor rebuilt windows."""
    store = store_from_url(db_url)
    try:
        if serves:
            hold_servers_lock(store, db_url, shared_windows=bool(redis_url))
        windows: WindowStore | None = None if decides else MemoryWindows()
        if redis_url:
            from ledger.metering.redis_windows import RedisWindows

            windows = RedisWindows.from_url(redis_url, prefix=redis_prefix)
        return Meter(store, windows)
    except BaseException:
        store.close()
        raise


def close_meter(meter: Meter) -> None:
    """Close the window store's connections (Redis) and the store; safe to call twice."""
    if getattr(meter, "_api_closed", False):
        return
    meter._api_closed = True  # type: ignore[attr-defined]
    close = getattr(meter.windows, "close", None)
    if callable(close):
        close()
    meter.store.close()


def create_key(db_url: str, role: str, customer: str | None = None) -> str:
    """Make an API key in the database at `db_url` and return it (shown once)."""
    meter = open_meter(db_url, decides=False)
    try:
        return create_api_key(meter, role, time.time_ns(), customer)
    finally:
        close_meter(meter)


def list_keys(db_url: str) -> list[KeyRecord]:
    """The keys stored in the database at `db_url` (what `tollgate keys list` shows)."""
    meter = open_meter(db_url, decides=False)
    try:
        return list_api_keys(meter)
    finally:
        close_meter(meter)


def revoke_key(db_url: str, key_id: str) -> KeyRecord:
    """Revoke a key in the database at `db_url` (what `tollgate keys revoke` does)."""
    meter = open_meter(db_url, decides=False)
    try:
        return revoke_api_key(meter, key_id, time.time_ns())
    finally:
        close_meter(meter)


def _describe(url: str) -> str:
    """The URL without its user, password and query (for logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def serve(
    db_url: str,
    redis_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    settle_interval_s: float = 0.5,
    expire_every_s: float = 30.0,
    admin_key: str | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve the API until SIGINT or SIGTERM: requests in flight finish, the worker stops, the
    store and Redis are closed (uvicorn then re-raises the signal, so the exit status says
    which one stopped it).
    `admin_key` (default: $TOLLGATE_ADMIN_KEY) is accepted as an admin key, not stored."""
    import uvicorn

    admin_key = admin_key if admin_key is not None else os.environ.get(ADMIN_KEY_ENV)
    if admin_key is not None and (
        not admin_key.startswith(KEY_PREFIX) or len(admin_key) < BOOTSTRAP_KEY_LENGTH_MIN
    ):
        raise ValueError(f"{ADMIN_KEY_ENV} must be `tg_` and at least 32 more characters")
    meter = open_meter(db_url, redis_url, serves=True)
    try:
        keyring = Keyring(meter)
        if admin_key is not None:
            keyring.add(admin_key, Principal(key_hash(admin_key)[:12], Role.ADMIN))

        def shut_down() -> None:
            close_meter(meter)
            print("tollgate: stopped; the store is closed", file=sys.stderr, flush=True)

        app = create_app(
            meter,
            keyring=keyring,
            settle_interval_s=settle_interval_s,
            expire_every_s=expire_every_s,
            on_shutdown=[shut_down],
        )
        windows = (
            "redis " + _describe(redis_url)
            if redis_url
            else f"in this process (rebuilt from {meter.restored:,} recorded decision(s))"
        )
        print(
            f"tollgate: serving http://{host}:{port} on {_describe(db_url)}, windows {windows}",
            file=sys.stderr,
            flush=True,
        )
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, access_log=access_log
        )
        uvicorn.Server(config).run()
    finally:
        close_meter(meter)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m ledger.api --db URL [--redis URL] [--host H] [--port P]`."""
    parser = argparse.ArgumentParser(prog="python -m ledger.api", description=serve.__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--settle-interval", type=float, default=0.5)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        serve(
            args.db,
            args.redis,
            args.host,
            args.port,
            settle_interval_s=args.settle_interval,
            log_level=args.log_level,
        )
    except ServerConflictError as exc:
        sys.exit(f"tollgate: {exc}")
