"""A settlement worker process for the fault-injection test (test_settlement_faults.py).

    python -m tests.metering.settle_child URL WORKER LOG [--limit N]
        [--idle-exit SECONDS] [--until-idle]

It opens the store the URL names (`sqlite:///path` or `postgresql://...`), builds `Meter(store)`
(plans, prices and customers come from the database), and streams the outbox with
`ledger.metering.settlement.run_worker` on the wall clock (`time.time_ns`, as the workload's
decisions and reports were stamped) until it is SIGKILLed, until no work could be picked for
`--idle-exit` seconds (exit 0), or, with `--until-idle`, until the outbox is empty.

LOG gets one line per step, flushed at once, so the parent can tell where a kill landed:
"start" once the meter is built, "begin" before a batch is picked and settled (one
transaction), "end N" after that transaction returned (N: the events it settled), and "done S"
with the events settled when it stops by itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ledger.metering import Meter, settlement
from ledger.store import store_from_url

IDLE_SLEEP_SECONDS = 0.01


def _logged_settle(log: TextIO) -> Callable[..., Any]:
    """The settlement of a batch that `settle_pending` picks, writing "begin" / "end N" around
    it (run_worker reaches it through `settle_pending`)."""
    settle = settlement._settle_chosen

    def logged(meter: Meter, choose: Callable[..., Sequence[int]], now: int) -> Any:
        log.write("begin\n")
        done = settle(meter, choose, now)
        log.write(f"end {len(done)}\n")
        return done

    return logged


def run(
    url: str,
    worker: str,
    log: TextIO,
    *,
    limit: int,
    idle_exit: float,
    until_idle: bool,
) -> settlement.WorkerStats:
    store = store_from_url(url)
    meter = Meter(store)
    settlement._settle_chosen = _logged_settle(log)
    log.write("start\n")
    idle_since: list[float] = []
    idled = [False]

    def idle() -> None:
        time.sleep(IDLE_SLEEP_SECONDS)
        if not idle_since:
            idle_since.append(time.monotonic())
        idled[0] = True

    def stop() -> bool:
        if not idled[0]:
            idle_since.clear()  # a batch was settled since the last look: not idle
        idled[0] = False
        return bool(idle_since) and time.monotonic() - idle_since[0] >= idle_exit

    stats = settlement.run_worker(
        meter,
        worker,
        time.time_ns,
        limit=limit,
        until_idle=until_idle,
        stop=(lambda: False) if until_idle else stop,
        idle=idle,
    )
    log.write(f"done {stats.settled}\n")
    store.close()
    return stats


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="settle_child")
    parser.add_argument("url")
    parser.add_argument("worker")
    parser.add_argument("log")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--idle-exit", type=float, default=3.0)
    parser.add_argument("--until-idle", action="store_true")
    args = parser.parse_args(argv)
    with open(args.log, "a", buffering=1) as log:
        stats = run(
            args.url,
            args.worker,
            log,
            limit=args.limit,
            idle_exit=args.idle_exit,
            until_idle=args.until_idle,
        )
    print(f"settled {stats.settled} in {stats.batches} batches, {stats.seconds:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
