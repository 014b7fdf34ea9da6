"""PostgreSQL reads whose plans were cached while the tables were empty, run once they have grown.

PostgreSQL caches a plan for a statement a connection has prepared (Tollgate's connections
prepare a statement on its second run) and keeps it until the tables are analysed again. A read
planned while its tables were nearly empty keeps that plan as they grow; what it then costs is
what this script measures.

Prints one JSON object per figure on stdout (shared BENCH conventions):
  grown.postgres.known_usage_ms   ms per read of the usage events already received under a
                                  batch of --keys (customer, key) pairs, as reporting does
  grown.postgres.backlog_ms       ms per `Meter.backlog()` (count and oldest of the queue), as
                                  each worker pass and metrics scrape does, with --queued events
                                  waiting

Both reads run a dozen times on the meter's own connection while the tables are empty, so that
the server caches their plans by its own rules; then --events usage events (and --queued outbox
entries) are inserted directly by SQL, with autovacuum off for those two tables (the time
between two automatic ANALYZEs), and each read is timed --repeat times on the same connection.
Median of --runs, each on a new database of a throwaway cluster this script starts (skipped,
with a note on stderr, where the PostgreSQL server binaries are missing).

    python bench/grown_tables.py [--events 200000] [--keys 10] [--queued 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger.metering import Meter  # noqa: E402
from ledger.store.postgres import PostgresStore  # noqa: E402
from tests.store.postgres_cluster import (  # noqa: E402
    Cluster,
    ClusterUnavailable,
    running_cluster,
)

CACHING_RUNS = 12
CUSTOMERS = 1_000


def no_autovacuum(url: str) -> None:
    """Autovacuum off for the two tables. Before the plans are cached: a change to a table's
    definition makes the server plan its statements again."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("usage_events", "outbox"):
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")


def grow(url: str, events: int, queued: int) -> None:
    """`events` usage events (ids 1..events, customer c<id mod 1000>, key k<id>) and the last
    `queued` of them in the outbox, written by SQL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO usage_events SELECT i, 'c' || (i %% 1000), 'k' || i, 'f', 1, i, i, i "
            "FROM generate_series(1, %s::bigint) i",
            (events,),
        )
        conn.execute(
            "INSERT INTO outbox SELECT i, NULL, 0, 0, 0 "
            "FROM generate_series(%s::bigint, %s::bigint) i",
            (events - queued + 1, events),
        )


def run_once(cluster: Cluster, name: str, args: argparse.Namespace) -> dict[str, float]:
    url = cluster.create_database(name)
    first = args.events - args.keys + 1
    keys = [(f"c{i % CUSTOMERS}", f"k{i}") for i in range(first, args.events + 1)]
    with PostgresStore(url) as store:
        meter = Meter(store)
        no_autovacuum(url)
        reads: dict[str, Callable[[], Any]] = {
            "known_usage": lambda: meter.tables.read(
                store, lambda cur: meter.tables.known_usage(cur, keys, [])
            ),
            "backlog": meter.backlog,
        }
        for read in reads.values():
            for _ in range(CACHING_RUNS):
                read()
        grow(url, args.events, args.queued)
        assert len(reads["known_usage"]()) == args.keys
        assert reads["backlog"]() == (args.queued, args.events - args.queued + 1)
        timed = {}
        for label, read in reads.items():
            started = time.perf_counter()
            for _ in range(args.repeat):
                read()
            timed[label] = (time.perf_counter() - started) / args.repeat * 1000
    cluster.drop_database(name)
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--queued", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not 0 < args.keys <= args.events or not 0 < args.queued <= args.events:
        parser.error("--keys and --queued must be between 1 and --events")
    try:
        with running_cluster(fsync=False) as cluster:
            runs = [run_once(cluster, f"grown_{i}", args) for i in range(args.runs)]
            server = cluster.describe()
    except ClusterUnavailable as exc:
        print(f"grown_tables: skipped, no PostgreSQL cluster: {exc}", file=sys.stderr)
        return
    params = {
        "events": args.events,
        "keys": args.keys,
        "queued": args.queued,
        "repeat": args.repeat,
        "runs": args.runs,
        "caching_runs": CACHING_RUNS,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        **{f"server_{k}": v for k, v in server.items() if k != "folder"},
    }
    for label in ("known_usage", "backlog"):
        values = [round(r[label], 3) for r in runs]
        print(
            json.dumps(
                {
                    "name": f"grown.postgres.{label}_ms",
                    "value": round(statistics.median(values), 3),
                    "unit": "ms",
                    "params": {**params, "runs_values": values},
                }
            )
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
