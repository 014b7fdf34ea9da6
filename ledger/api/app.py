"""The HTTP API: `create_app(meter)` returns a FastAPI app over one `Meter`.

Threading: every endpoint is `async def` and calls the meter directly on the event loop's
thread, and the settlement worker is an asyncio task on the same loop, so the store and the
window store are only ever used from that one thread (SQLite connections and the Meter's
registry need no more). The Meter serialises its work under a lock anyway, so a thread pool
would add hand-offs, not parallelism; the price is that a slow call (an audit) holds the loop.
For more throughput, run more server processes on PostgreSQL and Redis.

Time: the server stamps `now` from its clock (`time.time_ns()` unless `clock` is given); only a
usage report's `occurred_at` comes from the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from ledger.api import errors
from ledger.api.auth import Keyring
from ledger.api.deps import Service
from ledger.api.direct import LeanApp
from ledger.api.errors import ApiError
from ledger.api.metrics import Metrics
from ledger.api.routes import router
from ledger.api.worker import run_worker
from ledger.core.errors import LedgerError
from ledger.metering import Meter
from ledger.store.memory import MemoryStore


def create_app(
    meter: Meter,
    *,
    keyring: Keyring | None = None,
    clock: Callable[[], int] = time.time_ns,
    settle_interval_s: float | None = None,
    expire_every_s: float = 30.0,
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> LeanApp:
    """The API over `meter` (a FastAPI app; `POST /v1/decisions` is served directly, see
    ledger.api.direct). With `settle_interval_s`, the app's lifespan runs the settlement
    worker (see ledger.api.worker) every that many seconds; without, settle through
    `POST /v1/settlement/run`. `on_shutdown` runs when the server shuts down (after the
    worker stopped), e.g. to close the store."""
    svc = Service(
        meter, keyring or Keyring(meter), Metrics(), clock, not isinstance(meter.store, MemoryStore)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None
        if settle_interval_s is not None:
            task = asyncio.create_task(
                run_worker(
                    meter,
                    svc.metrics,
                    clock,
                    interval_s=settle_interval_s,
                    expire_every_s=expire_every_s,
                )
            )
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for callback in on_shutdown:
                callback()

    app = LeanApp(
        title="Tollgate",
        version="0.1.0",
        summary="Access decisions and credits on a formally checked double-entry ledger.",
        lifespan=lifespan,
    )
    app.state.tollgate = svc
    app.include_router(router)
    app.add_exception_handler(ApiError, errors.api_error)
    app.add_exception_handler(RequestValidationError, errors.validation_error)
    app.add_exception_handler(HTTPException, errors.http_error)
    app.add_exception_handler(LedgerError, errors.engine_error)
    app.add_exception_handler(Exception, errors.unexpected_error)
    app.serve_lean_routes_directly(router)
    return app
