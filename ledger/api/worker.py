"""The settlement worker inside `tollgate serve`: an asyncio task on the server's event loop.

Every `interval_s` it claims up to `limit` reported usage events (a lease) and settles them with
`settlement.settle`, here rather than through `Meter.settle_pending` so that the completions, and
so the write-offs, reach the metrics; it repeats while a full batch came back, and every
`expire_every_s` sweeps expired grants to breakage. It runs on the same thread as the request
handlers, so the store is only ever used from one thread; a batch holds the loop for as long as
it takes (a few ms for the default limit on SQLite). Settlement is idempotent (M2), so several
servers sharing a PostgreSQL database may all run it: leases keep them off each other's events.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ledger.api.metrics import Metrics
from ledger.core.errors import LedgerError
from ledger.metering import Meter
from ledger.metering import settlement as settling

log = logging.getLogger("tollgate.worker")
LEASE_NS = 30 * 10**9


@dataclass(frozen=True, slots=True)
class Pass:
    settled: int
    grants_expired: int
    backlog: int
    oldest_unsettled_at: int | None


def worker_name() -> str:
    return f"api:{socket.gethostname()}:{id(object())}"


def settle_batch(meter: Meter, metrics: Metrics, worker: str, now: int, limit: int) -> int:
    """Claim and settle up to `limit` usage events; returns how many were claimed."""
    claimed: list[int] = []
    tables = meter.tables
    tables.write(
        meter.store,
        now,
        lambda cur: claimed.extend(tables.claim(cur, worker, now, LEASE_NS, limit)),
    )
    if claimed:
        for completion in settling.settle(meter, claimed, now):
            metrics.completion(completion)
        metrics.settled.inc(len(claimed))
    return len(claimed)


def run_pass(
    meter: Meter,
    metrics: Metrics,
    worker: str,
    clock: Callable[[], int],
    *,
    limit: int = 500,
    batches: int = 20,
    expire: bool = True,
) -> Pass:
    """Settle what is waiting (up to `batches` batches), optionally expire grants, and update
    the backlog gauges."""
    settled = 0
    for _ in range(batches):
        count = settle_batch(meter, metrics, worker, clock(), limit)
        settled += count
        if count < limit:
            break
    expired = len(meter.expire_grants(clock())) if expire else 0
    metrics.grants_expired.inc(expired)
    backlog, oldest = meter.backlog()
    metrics.settlement(backlog, oldest, clock())
    return Pass(settled, expired, backlog, oldest)


async def run_worker(
    meter: Meter,
    metrics: Metrics,
    clock: Callable[[], int],
    *,
    interval_s: float,
    expire_every_s: float = 30.0,
    limit: int = 500,
) -> None:
    """Until cancelled: settle every `interval_s`, expire grants every `expire_every_s`. An
    error is logged and retried on the next tick (the outbox keeps what was not settled)."""
    worker = worker_name()
    expired_at = 0.0
    while True:
        expire = time.monotonic() - expired_at >= expire_every_s
        delay = interval_s
        try:
            done = run_pass(meter, metrics, worker, clock, limit=limit, batches=1, expire=expire)
            if expire:
                expired_at = time.monotonic()
            if done.settled >= limit:
                delay = 0.0  # more is waiting: let requests in, then go on at once
        except LedgerError as exc:
            log.warning("settlement pass failed (retrying next tick): %s", exc)
        except Exception:
            log.exception("settlement pass failed (retrying next tick)")
        await asyncio.sleep(delay)
