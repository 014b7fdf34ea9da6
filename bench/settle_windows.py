"""Settlement of decisions served by rate windows: what the window store costs it.

Prints one JSON object per figure on stdout (shared BENCH conventions):
  settle.windows.memory   usage events/s settled (`run_worker`, claims of 1,000) on one SQLite
                          file (synchronous=FULL) when the decisions were served by MemoryWindows
  settle.windows.redis    the same with RedisWindows on a redis-server this script starts on a
                          free 127.0.0.1 port (skipped, with a note on stderr, without one)

The plan: a 5-hour and a 7-day window (limits too high to refuse), then credits; 100 customers;
every decision estimates 10 units and is served whole by the windows. The usage reports use 4,
7, 10 and 13 units in turn: half give window units back (`Meter.keep_free`), a quarter charge
an excess (`forget_excess`, a window read, a take, then credits). Decisions and reports are
made before timing starts; only settling is timed. Median of runs, each on a fresh file (and a
fresh key prefix on Redis).

    python bench/settle_windows.py [--events 5000] [--runs 3] [--no-redis]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger.metering import Meter, plan_from_data, price_book_from_data  # noqa: E402
from ledger.metering.settlement import run_worker  # noqa: E402
from ledger.metering.windows import MemoryWindows, WindowStore  # noqa: E402
from ledger.store.sqlite import SqliteStore  # noqa: E402

CUSTOMERS = 100
ESTIMATE = 10
USED = (4, 7, 10, 13)
CLAIM = 1_000
WINDOWS = [{"name": n, "length": n, "limit": 10**12} for n in ("5h", "7d")]
LAYERS = [{"kind": "windows", "windows": WINDOWS}, {"kind": "credits"}]
PLAN = {"plan": "bench", "version": 1, "features": {"f": {"layers": LAYERS}}}


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def settle_rate(path: Path, windows: WindowStore, events: int) -> float:
    """Decide and report `events` on a fresh file, then settle them: settled events/s."""
    with SqliteStore(path, synchronous="NORMAL") as setup:
        meter = Meter(setup, windows)
        meter.publish_plan(plan_from_data(PLAN))
        book = {"version": 1, "effective_from": 0, "prices": {"f": 10}}
        meter.publish_prices(price_book_from_data(book))
        for c in range(CUSTOMERS):
            meter.add_customer(f"c{c}", "bench", time.time_ns())
            meter.purchase(f"c{c}", 10**12, "opening", time.time_ns())
        reports = []
        for i in range(events):
            customer = f"c{i % CUSTOMERS}"
            d = meter.decide(customer, "f", ESTIMATE, f"d{i}", time.time_ns())
            assert d.allowed and [p.layer for p in d.parts] == ["windows"], d.explain()
            reports.append(
                {"customer": customer, "feature": "f", "units": USED[i % len(USED)],
                 "key": f"u{i}", "decision_id": d.decision_id, "occurred_at": time.time_ns()}
            )  # fmt: skip
        for start in range(0, events, CLAIM):
            outcomes = meter.report_usage_batch(reports[start : start + CLAIM], time.time_ns())
            assert not [o for o in outcomes if isinstance(o, Exception)], outcomes[:3]
    with SqliteStore(path) as store:
        meter = Meter(store, windows)
        started = time.perf_counter()
        stats = run_worker(meter, "bench", time.time_ns, limit=CLAIM)
        seconds = time.perf_counter() - started
    assert stats.settled == events, stats
    return events / seconds


def figure(name: str, rates: list[float], events: int, windows: str) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(statistics.median(rates)),
        "unit": "events/s",
        "params": {
            "events": events,
            "runs": [round(r) for r in rates],
            "customers": CUSTOMERS,
            "plan": "windows (5h, 7d; never refusing) then credits; estimate 10 units",
            "used": list(USED),
            "claim": CLAIM,
            "store": "SQLite, one file per run, synchronous=FULL while settling",
            "windows": windows,
            "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        },
    }


def measure(make: Callable[[], WindowStore], events: int, runs: int, label: str) -> list[float]:
    rates = []
    with tempfile.TemporaryDirectory(prefix="tollgate-settle-windows-") as folder:
        settle_rate(Path(folder) / "warm-up.db", make(), events // 5)
        for run in range(runs):
            rates.append(settle_rate(Path(folder) / f"run-{run}.db", make(), events))
            note(f"{label} run {run + 1}: {rates[-1]:,.0f} events/s")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    rates = measure(MemoryWindows, args.events, args.runs, "memory")
    print(json.dumps(figure("settle.windows.memory", rates, args.events, "MemoryWindows")))
    if args.no_redis:
        return
    rates = redis_rates(args.events, args.runs)
    if rates:
        windows = "RedisWindows on a redis-server started by the script on loopback"
        print(json.dumps(figure("settle.windows.redis", rates, args.events, windows)))


def redis_rates(events: int, runs: int) -> list[float]:
    """The Redis runs (none, with a note, when Redis cannot be started)."""
    try:
        from ledger.metering.redis_windows import RedisWindows
        from tests.metering.redis_server import ServerError, ServerUnavailable, running_server
    except ImportError as exc:
        note(f"settle.windows.redis skipped: cannot import the Redis window store ({exc})")
        return []
    made: list[RedisWindows] = []

    def make() -> WindowStore:
        made.append(RedisWindows.from_url(url, prefix=f"bench-{time.time_ns()}:"))
        return made[-1]

    try:
        with running_server() as url:
            try:
                return measure(make, events, runs, "redis")
            finally:
                for windows in made:
                    windows.close()
    except (ServerUnavailable, ServerError) as exc:
        note(f"settle.windows.redis skipped: {exc}")
        return []


if __name__ == "__main__":
    main()
