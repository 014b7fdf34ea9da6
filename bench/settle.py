"""Settlement and audit figures: usage reported and settled end to end, and the audit's speed.

Prints one JSON object per figure on stdout (shared BENCH conventions):
  settle.sqlite             usage events/s: reported (batches of 1,000, one transaction each)
                            and settled (claims of 1,000) on one SQLite file, synchronous=FULL
  settle.postgres.workers1  the same on PostgreSQL, settled by 1 worker process
  settle.postgres.workers4  ... by 4 worker processes sharing the outbox
  audit.rows                rows/s the audit reads and checks on the settled SQLite database
                            (the ledger's checks in a forked child where the machine has a
                            second core, as `tollgate audit` runs them)
  audit.rows.one_process    the same audit with everything in one process (fork=False)
  decide.holds.sqlite       decisions/s of the preparation below on SQLite (synchronous=NORMAL):
                            each decision holds credits, in its own write transaction
  decide.holds.postgres     the same on PostgreSQL (every preparation of both worker counts)

Every usage event belongs to a decision that holds credits (plan: credits only, price 10
micro-credits per unit); half the events use less than the estimate, a quarter exactly the
estimate, a quarter more (the excess is charged). Decisions are made before timing starts (on a
store opened with synchronous=NORMAL to save time; the measured phase reopens it with FULL).
The PostgreSQL server is a throwaway cluster started by this script as the tests start theirs
(initdb/pg_ctl on a free loopback port, fsync and synchronous_commit on).

    python bench/settle.py [--events 50000] [--pg-events 10000] [--runs 3] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger.beside import can_fork  # noqa: E402
from ledger.metering import Meter, plan_from_data, price_book_from_data  # noqa: E402
from ledger.metering.audit import audit  # noqa: E402
from ledger.metering.settlement import run_worker  # noqa: E402
from ledger.store import Store  # noqa: E402

CUSTOMERS = 1_000
PRICE = 10
ESTIMATE = 10
REPORT_BATCH = 1_000
CLAIM = 1_000


def _emit(name: str, value: float, unit: str, params: dict[str, Any]) -> None:
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit, "params": params}))
    sys.stdout.flush()


def _clock() -> int:
    return time.time_ns()


def prepare(store: Store, events: int) -> tuple[list[dict[str, Any]], float]:
    """Customers, funds and one decision per usage event; returns the usage reports and the
    decisions' rate (decisions/s)."""
    meter = Meter(store)
    plan = {"plan": "bench", "version": 1, "features": {"f": {"layers": [{"kind": "credits"}]}}}
    meter.publish_plan(plan_from_data(plan))
    meter.publish_prices(
        price_book_from_data({"version": 1, "effective_from": 0, "prices": {"f": PRICE}})
    )
    for c in range(CUSTOMERS):
        meter.add_customer(f"c{c}", "bench", _clock())
        meter.purchase(f"c{c}", 10**12, "opening", _clock())
    reports = []
    started = time.perf_counter()
    for i in range(events):
        customer = f"c{i % CUSTOMERS}"
        d = meter.decide(customer, "f", ESTIMATE, f"d{i}", _clock())
        assert d.allowed, d.explain()
        actual = (4, 7, 10, 13)[i % 4]
        reports.append(
            {
                "customer": customer,
                "feature": "f",
                "units": actual,
                "key": f"u{i}",
                "decision_id": d.decision_id,
                "occurred_at": _clock(),
            }
        )
    return reports, events / (time.perf_counter() - started)


def report_all(meter: Meter, reports: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(reports), REPORT_BATCH):
        outcomes = meter.report_usage_batch(reports[start : start + REPORT_BATCH], _clock())
        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes[:3]
    return time.perf_counter() - started


def sqlite_run(events: int, directory: Path, run: int) -> tuple[float, float, dict[str, Any]]:
    """(settled events/s, decisions/s of the preparation, the phases' seconds)"""
    from ledger.store.sqlite import SqliteStore

    path = directory / f"settle-{run}.db"
    with SqliteStore(path, synchronous="NORMAL") as setup:
        reports, deciding = prepare(setup, events)
    meter = Meter(SqliteStore(path))
    reporting = report_all(meter, reports)
    started = time.perf_counter()
    stats = run_worker(meter, "bench", _clock, limit=CLAIM)
    settling = time.perf_counter() - started
    assert stats.settled == events, stats
    rate = events / (reporting + settling)
    return rate, deciding, {"report_s": round(reporting, 3), "settle_s": round(settling, 3)}


def audit_rate(path: Path, fork: bool | None = None) -> tuple[float, int]:
    from ledger.store.sqlite import SqliteStore

    store = SqliteStore(path)
    report = audit(store, fork=fork)
    assert report.ok, report.discrepancies[:5]
    return report.rows / report.seconds, report.rows


def postgres_runs(events: int, runs: int) -> None:
    from ledger.store.postgres import PostgresStore
    from tests.store.postgres_cluster import running_cluster

    holds: list[float] = []
    with running_cluster() as cluster:
        for workers in (1, 4):
            rates, splits = [], []
            for run in range(runs):
                url = cluster.create_database(f"settle_w{workers}_{run}")
                reports, deciding = prepare(PostgresStore(url), events)
                holds.append(deciding)
                meter = Meter(PostgresStore(url))
                reporting = report_all(meter, reports)
                settling = _settle_with_processes(url, workers, events)
                rates.append(events / (reporting + settling))
                splits.append({"report_s": round(reporting, 3), "settle_s": round(settling, 3)})
            _emit(
                f"settle.postgres.workers{workers}",
                statistics.median(rates),
                "events/s",
                {
                    "events": events,
                    "workers": workers,
                    "runs": [round(r) for r in rates],
                    "phases": splits,
                    "report_batch": REPORT_BATCH,
                    "claim": CLAIM,
                    "server": "throwaway PostgreSQL cluster started by the script on loopback",
                },
            )
    _emit_holds("postgres", holds, {"decisions": events, "synchronous_commit": "on"})


def _emit_holds(kind: str, rates: list[float], params: dict[str, Any]) -> None:
    what = "decisions that each hold credits (plan: credits only), one write transaction each"
    _emit(
        f"decide.holds.{kind}",
        statistics.median(rates),
        "decisions/s",
        {**params, "customers": CUSTOMERS, "runs": [round(r) for r in rates], "what": what},
    )


def _settle_with_processes(url: str, workers: int, events: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, __file__, "--worker", url, f"w{n}"], env=env)
        for n in range(workers)
    ]
    for proc in procs:
        if proc.wait() != 0:
            sys.exit(f"settlement worker exited with {proc.returncode}")
    return time.perf_counter() - started


def worker(url: str, name: str) -> None:
    from ledger.store.postgres import PostgresStore

    meter = Meter(PostgresStore(url))
    stats = run_worker(meter, name, _clock, limit=CLAIM // 4, idle=lambda: time.sleep(0.01))
    print(f"{name}: settled {stats.settled} in {stats.seconds:.2f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--pg-events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("URL", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = [sqlite_run(args.events, Path(tmp), run) for run in range(args.runs)]
        rates = [r for r, _, _ in results]
        _emit(
            "settle.sqlite",
            statistics.median(rates),
            "events/s",
            {
                "events": args.events,
                "customers": CUSTOMERS,
                "runs": [round(r) for r in rates],
                "phases": [p for _, _, p in results],
                "report_batch": REPORT_BATCH,
                "claim": CLAIM,
                "synchronous": "FULL",
                "cores": os.cpu_count(),
                "python": sys.version.split()[0],
            },
        )
        holds = [h for _, h, _ in results]
        _emit_holds("sqlite", holds, {"decisions": args.events, "synchronous": "NORMAL"})
        for name, fork in (("audit.rows", None), ("audit.rows.one_process", False)):
            audits = [audit_rate(Path(tmp) / f"settle-{run}.db", fork) for run in range(args.runs)]
            _emit(
                name,
                statistics.median(a for a, _ in audits),
                "rows/s",
                {
                    "rows": audits[0][1],
                    "runs": [round(a) for a, _ in audits],
                    "database": "the settled SQLite files of settle.sqlite",
                    "ledger_checks": (
                        "in a forked child" if fork is None and can_fork() else "in this process"
                    ),
                    "cores": len(os.sched_getaffinity(0)),
                },
            )
    if not args.no_postgres:
        postgres_runs(args.pg_events, args.runs)


if __name__ == "__main__":
    main()
