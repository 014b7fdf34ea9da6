"""Durable store figures (bench/RESULTS.md records them).

Prints one JSON object per figure on stdout (shared BENCH conventions):
  store.sqlite.batch          durable transfers/s: batches of 8,190 single-phase transfers
                              between random accounts of 10,000, synchronous=FULL, WAL, hash
                              chain on; peer: a naive SQLite ledger (insert the transfers,
                              update the two balances, no checks, no chain) on the same file
                              settings, timed alternately with it
  store.sqlite.single_p50_ms  median latency of `apply` with a one-transfer batch (same peer)
  store.postgres.*            from bench/store_pg.py, when it can run (else a note on stderr)

Each run uses a new database file in a temporary folder. Each figure is the median of --runs
timed runs after one warm-up run; the store and its peer alternate run by run.

    python bench/store.py [--batches 20] [--singles 400] [--runs 3] [--accounts 10000]
                          [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sqlite3
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

from workload import BATCH, transfers  # noqa: E402

from ledger import Account, Result, Transfer  # noqa: E402
from ledger.store import SqliteStore  # noqa: E402

WARM_UP_SINGLES = 50
PEER = "naive SQLite ledger: insert the transfers, add to two balances; no checks, no chain"


# --- the store -------------------------------------------------------------------------------


class StoreTarget:
    """Tollgate's SqliteStore (synchronous=FULL, WAL, hash chain)."""

    def __init__(self, path: Path, accounts: int) -> None:
        self.store = SqliteStore(path, synchronous="FULL")
        opening = [Account(id=i, ledger=1, code=1) for i in range(1, accounts + 1)]
        for start in range(0, accounts, BATCH):
            self.store.apply(opening[start : start + BATCH], 1)
        self.now = 10

    def apply(self, batch: list[Transfer]) -> None:
        self.now += 1
        results = self.store.apply(batch, self.now)
        if any(r is not Result.OK for r in results):
            sys.exit(f"benchmark batch was not fully accepted: {set(results)}")

    def close(self) -> None:
        self.store.close()


class NaiveTarget:
    """The peer: a naive SQLite ledger on the same settings (WAL, synchronous=FULL, one
    transaction per batch): insert the transfers, add to the two balances. No validation, no
    result codes, no idempotency, no limits, no hash chain."""

    def __init__(self, path: Path, accounts: int) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, debits INTEGER NOT NULL, "
            "credits INTEGER NOT NULL)"
        )
        self.db.execute(
            "CREATE TABLE transfers (id INTEGER PRIMARY KEY, debit_account_id INTEGER NOT NULL, "
            "credit_account_id INTEGER NOT NULL, amount INTEGER NOT NULL, "
            "timestamp INTEGER NOT NULL)"
        )
        self.db.executemany(
            "INSERT INTO accounts VALUES (?, 0, 0)", [(i,) for i in range(1, accounts + 1)]
        )
        self.now = 10

    def apply(self, batch: list[Transfer]) -> None:
        self.now += 1
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO transfers VALUES (?, ?, ?, ?, ?)",
            [(t.id, t.debit_account_id, t.credit_account_id, t.amount, self.now) for t in batch],
        )
        db.executemany(
            "UPDATE accounts SET debits = debits + ? WHERE id = ?",
            [(t.amount, t.debit_account_id) for t in batch],
        )
        db.executemany(
            "UPDATE accounts SET credits = credits + ? WHERE id = ?",
            [(t.amount, t.credit_account_id) for t in batch],
        )
        db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


Target = StoreTarget | NaiveTarget


def batch_rate(
    make: Callable[[Path, int], Target], batches: int, accounts: int, seed: int
) -> float:
    """Transfers/s over `batches` batches of BATCH transfers on a new database (after one
    untimed batch)."""
    rng = random.Random(seed)
    work = [transfers(BATCH, accounts, 1 + n * BATCH, rng) for n in range(batches + 1)]
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as folder:
        target = make(Path(folder) / "ledger.db", accounts)
        try:
            target.apply(work[0])
            started = time.perf_counter()
            for batch in work[1:]:
                target.apply(batch)
            elapsed = time.perf_counter() - started
        finally:
            target.close()
    return batches * BATCH / elapsed


def single_p50_ms(
    make: Callable[[Path, int], Target], calls: int, accounts: int, seed: int
) -> float:
    """Median milliseconds of one call with a one-transfer batch (after WARM_UP_SINGLES)."""
    rng = random.Random(seed)
    work = transfers(WARM_UP_SINGLES + calls, accounts, 1, rng)
    latencies = []
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as folder:
        target = make(Path(folder) / "ledger.db", accounts)
        try:
            for n, t in enumerate(work):
                started = time.perf_counter()
                target.apply([t])
                if n >= WARM_UP_SINGLES:
                    latencies.append(time.perf_counter() - started)
        finally:
            target.close()
    return statistics.median(latencies) * 1000


def alternate(
    measure: Callable[[Callable[[Path, int], Target], int], float], runs: int
) -> tuple[list[float], list[float]]:
    """One warm-up of each, then `runs` timed runs alternating store and peer."""
    measure(StoreTarget, -1)
    measure(NaiveTarget, -1)
    ours, peers = [], []
    for run in range(runs):
        ours.append(measure(StoreTarget, run))
        peers.append(measure(NaiveTarget, run))
    return ours, peers


def figure(
    name: str, unit: str, ours: list[float], peers: list[float], digits: int, params: dict[str, Any]
) -> dict[str, Any]:
    value, peer = statistics.median(ours), statistics.median(peers)
    return {
        "name": name,
        "value": round(value, digits),
        "unit": unit,
        "params": {**params, "runs_values": [round(v, digits) for v in ours]},
        "peer": PEER,
        "peer_value": round(peer, digits),
        "ratio": round(value / peer, 3),
    }


def sqlite_figures(batches: int, singles: int, runs: int, accounts: int) -> list[dict[str, Any]]:
    common = {
        "accounts": accounts,
        "runs": runs,
        "synchronous": "FULL",
        "journal_mode": "wal",
        "hash_chain": True,
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
    }
    rates, peer_rates = alternate(lambda make, run: batch_rate(make, batches, accounts, run), runs)
    p50s, peer_p50s = alternate(lambda make, run: single_p50_ms(make, singles, accounts, run), runs)
    return [
        figure(
            "store.sqlite.batch",
            "transfers/s",
            rates,
            peer_rates,
            0,
            {**common, "batch": BATCH, "batches": batches, "transfers": batches * BATCH},
        ),
        figure(
            "store.sqlite.single_p50_ms",
            "ms",
            p50s,
            peer_p50s,
            3,
            {**common, "batch": 1, "calls": singles},
        ),
    ]


def run_postgres(batches: int, singles: int, runs: int, accounts: int) -> None:
    """bench/store_pg.py prints its own figures; a missing module or server is a note only."""
    try:
        from store_pg import postgres_figures  # type: ignore[import-not-found]
    except ImportError as exc:
        print(
            f"PostgreSQL figures skipped: bench/store_pg.py cannot be imported ({exc})",
            file=sys.stderr,
        )
        return
    try:
        postgres_figures(batches=batches, singles=singles, runs=runs, accounts=accounts)
    except Exception as exc:  # no server binaries, no psycopg, a cluster that will not start
        print(f"PostgreSQL figures skipped: {type(exc).__name__}: {exc}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=20, help="timed batches of 8,190 per run")
    parser.add_argument("--singles", type=int, default=400, help="timed one-transfer calls per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite figures only")
    args = parser.parse_args()
    for line in sqlite_figures(args.batches, args.singles, args.runs, args.accounts):
        print(json.dumps(line), flush=True)
    if not args.no_postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        run_postgres(args.batches, args.singles, args.runs, args.accounts)


if __name__ == "__main__":
    main()
