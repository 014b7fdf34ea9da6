"""PostgreSQL store figures (bench/store.py imports `postgres_figures`; also runs alone).

Prints one JSON object per figure on stdout (shared BENCH conventions):
  store.postgres.batch          durable transfers/s, batches of 8,190 single-phase transfers
                                between random accounts, one writer, hash chain on
  store.postgres.single_p50_ms  median latency of `apply` with a one-transfer batch

The server is a throwaway cluster started by this script exactly as the tests start theirs
(tests/store/postgres_cluster.py): initdb in a temporary folder, pg_ctl on a free port on
127.0.0.1, fsync=on and synchronous_commit=on (every batch is durable when `apply` returns),
as an unprivileged user when run as root; stopped with `pg_ctl stop -m immediate` afterwards.
Each run uses a new database; each figure is the median of --runs runs, each after a warm-up.

    python bench/store_pg.py [--batches 20] [--singles 400] [--runs 3] [--accounts 10000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workload import BATCH, transfers  # noqa: E402

from ledger import Account, Result  # noqa: E402
from tests.store.postgres_cluster import Cluster, running_cluster  # noqa: E402

WARM_UP_SINGLES = 50


def _open(cluster: Cluster, name: str, accounts: int) -> Any:
    from ledger.store.postgres import PostgresStore

    store = PostgresStore(cluster.create_database(name))
    opening = [Account(id=i, ledger=1, code=1) for i in range(1, accounts + 1)]
    for start in range(0, accounts, BATCH):
        store.apply(opening[start : start + BATCH], 1)
    return store


def _accepted(results: list[Result]) -> None:
    if any(r is not Result.OK for r in results):
        sys.exit(f"benchmark batch was not fully accepted: {set(results)}")


def batch_rate(cluster: Cluster, run: int, batches: int, accounts: int) -> float:
    """Transfers/s over `batches` batches of 8,190, after one warm-up batch."""
    rng = random.Random(run)
    store = _open(cluster, f"bench_batch_{run}", accounts)
    try:
        work = [transfers(BATCH, accounts, 1 + b * BATCH, rng) for b in range(batches + 1)]
        _accepted(store.apply(work[0], 10))  # warm-up: caches, prepared statements
        started = time.perf_counter()
        for b, batch in enumerate(work[1:]):
            _accepted(store.apply(batch, 20 + b))
        return batches * BATCH / (time.perf_counter() - started)
    finally:
        store.close()


def single_p50_ms(cluster: Cluster, run: int, calls: int, accounts: int) -> float:
    """Median milliseconds of `apply` with one transfer, after WARM_UP_SINGLES calls."""
    rng = random.Random(1000 + run)
    store = _open(cluster, f"bench_single_{run}", accounts)
    try:
        work = transfers(WARM_UP_SINGLES + calls, accounts, 1, rng)
        latencies = []
        for i, transfer in enumerate(work):
            started = time.perf_counter()
            _accepted(store.apply([transfer], 10 + i))
            if i >= WARM_UP_SINGLES:
                latencies.append(time.perf_counter() - started)
        return statistics.median(latencies) * 1000
    finally:
        store.close()


def postgres_figures(
    *, batches: int = 20, singles: int = 400, runs: int = 3, accounts: int = 10_000
) -> list[dict[str, Any]]:
    """Start a throwaway cluster, measure, stop it; print and return the two figures."""
    with running_cluster(fsync=True) as cluster:
        server = {k: v for k, v in cluster.describe().items() if k != "folder"}
        rates = [batch_rate(cluster, run, batches, accounts) for run in range(runs)]
        p50s = [single_p50_ms(cluster, run, singles, accounts) for run in range(runs)]
    common = {"accounts": accounts, "runs": runs, "writers": 1, "hash_chain": True}
    figures = [
        {
            "name": "store.postgres.batch",
            "value": round(statistics.median(rates)),
            "unit": "transfers/s",
            "params": {
                **common,
                "batch": BATCH,
                "batches": batches,
                "transfers": batches * BATCH,
                "runs_values": [round(r) for r in rates],
                "server": server,
            },
        },
        {
            "name": "store.postgres.single_p50_ms",
            "value": round(statistics.median(p50s), 3),
            "unit": "ms",
            "params": {
                **common,
                "batch": 1,
                "calls": singles,
                "runs_values": [round(p, 3) for p in p50s],
                "server": server,
            },
        },
    ]
    for figure in figures:
        print(json.dumps(figure), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--singles", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args()
    postgres_figures(
        batches=args.batches, singles=args.singles, runs=args.runs, accounts=args.accounts
    )


if __name__ == "__main__":
    main()
