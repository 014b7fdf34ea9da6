"""The access engine's decision path, `Meter.decide` (bench/RESULTS.md records the figures).

Prints one JSON object per figure on stdout (shared BENCH conventions):
  decide.memory              decisions/s: Meter(MemoryStore()) with MemoryWindows, one plan whose
                             feature has a windows layer (5h limit 1000, 7d limit 5000; 1 unit per
                             request) then credits, over 100,000 customers; default GC settings
  decide.vs_limits           the same runs against the `limits` library doing the same checks
                             (MovingWindowRateLimiter + MemoryStorage: test both windows, hit both
                             when both fit), alternating run by run
  decide.memory.p50_us       per-decision latency (time.perf_counter_ns around each call), on a
  decide.memory.p99_us       separate run with default GC settings
  decide.memory.tuned_gc     decide.memory after gc.freeze() and gc.set_threshold(100000, 50, 100),
  decide.vs_limits.tuned_gc  as a long-running server would; limits runs under the same settings
  decide.redis               decisions/s with RedisWindows on a redis-server that this script
                             starts on a free 127.0.0.1 port (skipped, with a note on stderr, when
                             redis-server is not installed)

The request stream: request i is customer i % customers, idempotency key "req-<i>", at
T0 + i * step ns, the step chosen so each customer comes back every 100,000 s (27.8 h): every
visit evicts the customer's 5h entry and, once warm, one 7d entry (about 6 stay counted). Every
request fits, so every decision takes the windows-only path (checked after each run).

Tollgate and limits each run in their own spawned process, set up once (untimed) and then fed
consecutive slices of the same stream, so neither heap is in the other's garbage collections; the
parent alternates them run by run (A B A B). Requests are built before each run; only the decide
loop is timed, after gc.collect(). limits reads its clock through `time.time()`: its worker points
`limits.storage.memory.time` at the current request's timestamp, so both evict on the same clock.

    python bench/decide.py [--customers 100000] [--decisions 200000] [--warm-up 100000]
                           [--runs 3] [--redis-customers 10000] [--redis-decisions 30000]
                           [--no-redis] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from operator import getitem
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger.metering import Meter, plan_from_data, price_book_from_data  # noqa: E402
from ledger.metering.windows import MemoryWindows, WindowStore  # noqa: E402
from ledger.store.memory import MemoryStore  # noqa: E402

NS = 10**9
T0 = 1_704_283_200 * NS  # 2024-01-03 12:00 UTC
VISIT_EVERY_S = 100_000
"""Seconds between two visits of one customer (the step is this over the customer count)."""
FEATURE = "chat"
WINDOWS = (("5h", 5, "hours", 1000), ("7d", 7, "days", 5000))
"""(name, length, unit, limit): the plan says "5h"; limits parses "1000 per 5 hours"."""
PRICE = 1000
DEFAULT_GC = (700, 10, 10)
TUNED_GC = (100_000, 50, 100)
GC_DEFAULT = "default (gc.set_threshold(700, 10, 10), nothing frozen)"
GC_TUNED = (
    "gc.collect(); gc.freeze(); gc.set_threshold(100000, 50, 100) before each timed run "
    "(everything set up and decided before it is frozen), defaults restored after it"
)
PEER_CHECKS = (
    "per request: test() the 5h and the 7d window, and only when both pass hit() both, so both "
    "windows count the request only when both fit, as Meter.decide takes both in one all-or-"
    "nothing step (limits' test-then-hit is not atomic between concurrent callers; one thread "
    "here). limits keeps no idempotency record and builds no decision; MemoryStorage's expiry "
    "timer thread runs during the timed loop, as it would in use: every 10 ms it sweeps every "
    "key (2 per customer), which takes a large share of limits' time at this many customers"
)
STATE = (
    "one meter (and one limits storage) per process, set up once untimed; every run continues "
    "the same request stream with new idempotency keys and later timestamps (decisions made "
    "earlier stay recorded)"
)

Request = tuple[str, str, int, str, int]


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Workload:
    customers: int

    @property
    def step_ns(self) -> int:
        return VISIT_EVERY_S * NS // self.customers

    def name(self, i: int) -> str:
        return f"customer-{i % self.customers:06d}"

    def requests(self, start: int, count: int) -> list[Request]:
        """Requests start .. start + count - 1: (customer, feature, units, key, now ns)."""
        step, names = self.step_ns, [self.name(c) for c in range(self.customers)]
        n = self.customers
        return [
            (names[i % n], FEATURE, 1, f"req-{i}", T0 + i * step)
            for i in range(start, start + count)
        ]

    def params(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "plan": "one feature: windows (5h limit 1000, 7d limit 5000), then credits",
            "windows": [f"{name} limit {limit}" for name, _, _, limit in WINDOWS],
            "units_per_request": 1,
            "step_ns": self.step_ns,
            "customer_visit_every_s": VISIT_EVERY_S,
        }


def make_meter(w: Workload, windows: WindowStore | None = None) -> Meter:
    meter = Meter(MemoryStore(), windows if windows is not None else MemoryWindows())
    layer = {
        "kind": "windows",
        "windows": [{"name": n, "length": n, "limit": limit} for n, _, _, limit in WINDOWS],
    }
    plan = {
        "plan": "pro",
        "version": 1,
        "features": {FEATURE: {"layers": [layer, {"kind": "credits"}]}},
    }
    meter.publish_plan(plan_from_data(plan))
    meter.publish_prices(
        price_book_from_data({"version": 1, "effective_from": 0, "prices": {FEATURE: PRICE}})
    )
    for c in range(w.customers):
        meter.add_customer(w.name(c), "pro", 0)
    return meter


# --- the two sides ----------------------------------------------------------------------------


class TollgateSide:
    """Meter.decide on a MemoryStore with MemoryWindows (or the windows given)."""

    def __init__(self, w: Workload, windows: WindowStore | None = None) -> None:
        self.w = w
        self.meter = make_meter(w, windows)

    def prepare(self, start: int, count: int) -> list[Request]:
        return self.w.requests(start, count)

    def loop(self, requests: list[Request]) -> int:
        decide, refused = self.meter.decide, 0
        for customer, feature, units, key, now in requests:
            if not decide(customer, feature, units, key, now).allowed:
                refused += 1
        return refused

    def latencies(self, requests: list[Request]) -> list[int]:
        decide, clock = self.meter.decide, time.perf_counter_ns
        out: list[int] = []
        append = out.append
        for customer, feature, units, key, now in requests:
            started = clock()
            decide(customer, feature, units, key, now)
            append(clock() - started)
        return out

    def check(self, requests: list[Request]) -> None:
        """The last request's decision took the windows-only path (nothing held)."""
        customer, _, units, key, _ = requests[-1]
        d = self.meter.tables.decision_by_key(None, customer, key)
        if (
            d is None
            or not d.allowed
            or [(p.layer, p.units, p.transfer_id) for p in d.parts] != [("windows", units, 0)]
        ):
            sys.exit(f"decide.py: expected a windows-only decision, got {d}")

    def done(self) -> None:
        pass


class LimitsSide:
    """limits' MovingWindowRateLimiter on MemoryStorage, its clock following the stream."""

    def __init__(self, w: Workload) -> None:
        import limits.storage.memory
        from limits import parse
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.w = w
        self.clock = [T0 / NS]
        # Entry() and MemoryStorage read `time.time()` of their module: make it the stream's time.
        limits.storage.memory.time = SimpleNamespace(time=partial(getitem, self.clock, 0))  # type: ignore[attr-defined,assignment]
        self.storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.items = [parse(f"{limit} per {n} {unit}") for _, n, unit, limit in WINDOWS]
        lengths = [it.get_expiry() for it in self.items]
        if lengths != [18_000, 604_800]:
            sys.exit(f"decide.py: limits parsed window lengths {lengths}, expected 5h and 7d")

    def prepare(self, start: int, count: int) -> list[Request]:
        # limits keeps time in float seconds: converted here, before the timed loop.
        return [(c, f, u, k, now / NS) for c, f, u, k, now in self.w.requests(start, count)]  # type: ignore[misc]

    def loop(self, requests: list[Request]) -> int:
        clock, test, hit = self.clock, self.limiter.test, self.limiter.hit
        short, long = self.items
        refused = 0
        for customer, feature, units, _key, now in requests:
            clock[0] = now
            if test(short, customer, feature, cost=units) and test(
                long, customer, feature, cost=units
            ):
                hit(short, customer, feature, cost=units)
                hit(long, customer, feature, cost=units)
            else:
                refused += 1
        return refused

    def check(self, requests: list[Request]) -> None:
        pass

    def done(self) -> None:
        """Let the expiry timer thread finish, so it does not run into the other side's run."""
        self.storage.timer.cancel()
        self.storage.timer.join()


Side = TollgateSide | LimitsSide


@contextmanager
def gc_mode(tuned: bool) -> Iterator[None]:
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_GC)
    gc.collect()
    if tuned:
        gc.freeze()
        gc.set_threshold(*TUNED_GC)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*DEFAULT_GC)


class Job(NamedTuple):
    start: int
    size: int
    tuned: bool = False
    latency: bool = False


def measure(side: Side, job: Job) -> dict[str, Any]:
    """One run: its rate (decisions/s), its latency percentiles (ns) when job.latency, and the
    garbage collections (by generation) that ran inside the timed loop."""
    requests = side.prepare(job.start, job.size)
    latencies: list[int] = []
    refused = 0
    with gc_mode(job.tuned):
        before = gc.get_stats()
        started = time.perf_counter()
        if job.latency:
            assert isinstance(side, TollgateSide)
            latencies = side.latencies(requests)
        else:
            refused = side.loop(requests)
        elapsed = time.perf_counter() - started
        after = gc.get_stats()
    side.done()
    if refused:
        sys.exit(f"decide.py: {refused} of {job.size} requests were refused; expected none")
    side.check(requests)
    latencies.sort()
    return {
        "rate": job.size / elapsed,
        "percentiles_ns": {p: percentile(latencies, p) for p in (50, 99)} if latencies else {},
        "gc_collections": [
            a["collections"] - b["collections"] for a, b in zip(after, before, strict=True)
        ],
    }


def serve(kind: str, conn: Connection, w: Workload) -> None:
    """A worker process: set up one side, then run the jobs the parent sends (None stops)."""
    side: Side = TollgateSide(w) if kind == "tollgate" else LimitsSide(w)
    conn.send("ready")
    while (job := conn.recv()) is not None:
        conn.send(measure(side, job))
    conn.close()


class Worker:
    def __init__(self, kind: str, w: Workload) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(kind, child, w), daemon=True)
        self.process.start()
        child.close()

    def wait_ready(self) -> None:
        self._receive()

    def run(self, job: Job) -> dict[str, Any]:
        self.conn.send(job)
        result: dict[str, Any] = self._receive()
        collections = result["gc_collections"]
        extra = f", latency percentiles (ns) {result['percentiles_ns']}" if job.latency else ""
        note(
            f"  {self.kind:8} requests {job.start}..{job.start + job.size - 1}"
            f"{' tuned GC' if job.tuned else ''}: {result['rate']:,.0f}/s{extra}"
            f" (GC collections by generation: {collections})"
        )
        return result

    def _receive(self) -> Any:
        try:
            return self.conn.recv()
        except EOFError:
            sys.exit(
                f"decide.py: the {self.kind} worker stopped (exit code {self.process.exitcode})"
            )

    def stop(self) -> None:
        with suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


# --- figures ----------------------------------------------------------------------------------


def common_params(runs: int) -> dict[str, Any]:
    return {
        "runs": runs,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
    }


def peer_name() -> str:
    from importlib.metadata import version

    return f"limits {version('limits')} MovingWindowRateLimiter + MemoryStorage"


def comparison(
    ours: Worker, peer: Worker, jobs: Iterator[Job], runs: int, tuned: bool
) -> tuple[list[float], list[float]]:
    """`runs` timed runs of each, alternating ours and the peer on the same slices."""
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        job = next(jobs)._replace(tuned=tuned)
        mine.append(ours.run(job)["rate"])
        theirs.append(peer.run(job)["rate"])
    return mine, theirs


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def memory_figures(w: Workload, decisions: int, warm_up: int, runs: int) -> list[dict[str, Any]]:
    note(f"decide: setting up {w.customers:,} customers in each worker (untimed)")
    started = time.perf_counter()
    ours, peer = Worker("tollgate", w), Worker("limits", w)
    try:
        ours.wait_ready()
        peer.wait_ready()
        note(f"  set up in {time.perf_counter() - started:.1f} s")

        def slices() -> Iterator[Job]:
            start = warm_up
            while True:
                yield Job(start, decisions)
                start += decisions

        jobs = slices()
        note(f"decide: warm-up ({warm_up:,} requests each), then default GC runs")
        ours.run(Job(0, warm_up))
        peer.run(Job(0, warm_up))
        default_ours, default_peer = comparison(ours, peer, jobs, runs, tuned=False)
        note("decide: tuned GC runs")
        tuned_ours, tuned_peer = comparison(ours, peer, jobs, runs, tuned=True)
        note("decide: latency run (Tollgate, default GC)")
        latency_job = next(jobs)._replace(latency=True)
        percentiles = ours.run(latency_job)["percentiles_ns"]
    finally:
        ours.stop()
        peer.stop()

    base = {
        **w.params(),
        "decisions": decisions,
        "warm_up_decisions": warm_up,
        **common_params(runs),
        "store": "MemoryStore",
        "windows_store": "MemoryWindows",
        "state": STATE,
    }
    peer_label = peer_name()
    figures = []
    for suffix, gc_label, mine, theirs in (
        ("", GC_DEFAULT, default_ours, default_peer),
        (".tuned_gc", GC_TUNED, tuned_ours, tuned_peer),
    ):
        value, peer_value = statistics.median(mine), statistics.median(theirs)
        params = {
            **base,
            "gc": gc_label,
            "processes": "Tollgate and limits each in their own process, alternating A B A B",
            "runs_values": [round(v) for v in mine],
        }
        figures.append(
            {
                "name": f"decide.memory{suffix}",
                "value": round(value),
                "unit": "decisions/s",
                "params": {
                    **params,
                    "measured_in": f"the Tollgate runs of decide.vs_limits{suffix}",
                },
            }
        )
        figures.append(
            {
                "name": f"decide.vs_limits{suffix}",
                "value": round(value),
                "unit": "decisions/s",
                "params": {
                    **params,
                    "peer_runs_values": [round(v) for v in theirs],
                    "peer_checks": PEER_CHECKS,
                    "peer_clock": "limits.storage.memory.time.time() returns the request's "
                    "timestamp in seconds (same stream clock as Meter.decide's `now`)",
                },
                "peer": peer_label,
                "peer_value": round(peer_value),
                "ratio": round(value / peer_value, 3),
            }
        )
    latency_params = {
        **base,
        "decisions": latency_job.size,
        "runs": 1,
        "gc": GC_DEFAULT,
        "timer": "time.perf_counter_ns() around each decide call",
        "when": "a separate run after the throughput runs (same meter, new requests)",
        "decisions_before": latency_job.start,
    }
    for name, p in (("decide.memory.p50_us", 50), ("decide.memory.p99_us", 99)):
        figures.append(
            {
                "name": name,
                "value": round(percentiles[p] / 1000, 2),
                "unit": "µs",
                "params": latency_params,
            }
        )
    # Keep the order of the BENCH table: memory, p50, p99, vs_limits, then the tuned pair.
    order = [
        "decide.memory",
        "decide.memory.p50_us",
        "decide.memory.p99_us",
        "decide.vs_limits",
        "decide.memory.tuned_gc",
        "decide.vs_limits.tuned_gc",
    ]
    return sorted(figures, key=lambda f: order.index(f["name"]))


def redis_figure(w: Workload, decisions: int, warm_up: int, runs: int) -> dict[str, Any] | None:
    try:
        from ledger.metering.redis_windows import RedisWindows
        from tests.metering.redis_server import ServerError, ServerUnavailable, running_server
    except ImportError as exc:
        note(f"decide.redis skipped: cannot import the Redis window store ({exc})")
        return None
    try:
        with running_server() as url:
            note(f"decide: Redis at {url}, {w.customers:,} customers")
            windows = RedisWindows.from_url(url)
            try:
                side = TollgateSide(w, windows)
                measure(side, Job(0, warm_up))
                rates = []
                for run in range(runs):
                    rates.append(measure(side, Job(warm_up + run * decisions, decisions))["rate"])
                    note(f"  redis    run {run + 1}: {rates[-1]:,.0f}/s")
            finally:
                windows.close()
    except (ServerUnavailable, ServerError) as exc:
        note(f"decide.redis skipped: {exc}")
        return None
    return {
        "name": "decide.redis",
        "value": round(statistics.median(rates)),
        "unit": "decisions/s",
        "params": {
            **w.params(),
            "decisions": decisions,
            "warm_up_decisions": warm_up,
            **common_params(runs),
            "runs_values": [round(r) for r in rates],
            "store": "MemoryStore",
            "windows_store": "RedisWindows.from_url (one Lua script call per decision)",
            "server": "redis-server started by the script on loopback",
            "client": "redis-py, one connection, in the script's process, default GC",
            "state": "one meter, set up once untimed; every run continues the same request "
            "stream with new idempotency keys and later timestamps",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=200_000, help="per timed run")
    parser.add_argument("--warm-up", type=int, default=100_000, help="untimed requests first")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis-customers", type=int, default=10_000)
    parser.add_argument("--redis-decisions", type=int, default=30_000, help="per timed run")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.decisions, args.warm_up = 1_000, 3_000, 1_000
        args.redis_customers, args.redis_decisions = 200, 600
    started = time.perf_counter()
    for line in memory_figures(Workload(args.customers), args.decisions, args.warm_up, args.runs):
        print(json.dumps(line), flush=True)
    if not args.no_redis:
        rw = Workload(args.redis_customers)
        figure = redis_figure(rw, args.redis_decisions, args.redis_customers, args.runs)
        if figure is not None:
            print(json.dumps(figure), flush=True)
    note(f"decide: done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
