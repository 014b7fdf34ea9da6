"""Crash safety on PostgreSQL: a child process applying batches is SIGKILLed at random moments,
at least 200 times, and restarted each time.

The workload is tests/store/crash_child.py's, shared with the other stores: batch k is a pure
function of (seed, k) (accounts, transfers, pending/post/void with timeouts, balancing, linked
chains, replayed ids) with a marker account `MARKER_BASE + k`. The child is forked from the test
process (a restart costs milliseconds, not an interpreter start); it finds the last committed
batch through the store, never from what it wrote before, applies the following ones, and logs
"begin k" before and "end k" once `apply` has returned. It is killed after a random few
milliseconds of work; once the server has seen its session end, the database must hold exactly
the batches 1..n for some n:

- the markers are the prefix 1..n and nothing after it (a batch is all or nothing);
- every batch the child saw committed is among them, at most one more (killed between its
  commit and its log line), and the child had resumed right after the previous n;
- the state equals an in-memory `Ledger` that applied batches 1..n once: every account field,
  the clock, and the number of transfers, expiries, failed ids and history rows;
- every 25 kills and at the end, every read of the store agrees with that ledger, the hash
  chain verifies and the invariants hold (crash_child's `differences` and `violations`).
"""

from __future__ import annotations

import multiprocessing
import random
import signal
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger

from . import crash_child
from .postgres_cluster import Cluster, require_psycopg

psycopg = require_psycopg()

from ledger.store.postgres import PostgresStore  # noqa: E402

KILLS = 200
SEED = 7
LAST = 100_000  # the child never gets this far: it is killed first
FULL_CHECK_EVERY = 25
WORK_SECONDS_MAX = 0.025  # how long the child may work before it is killed


def child(url: str, log_path: str) -> None:
    """The forked child: resume after the last batch the database holds, then apply batch
    after batch, writing "begin k" before and "end k" once `apply` has returned."""
    with open(log_path, "w", buffering=1) as log:
        store = PostgresStore(url)
        start = crash_child.last_committed(store)
        log.write(f"start {start}\n")
        for k in range(start + 1, LAST + 1):
            events = crash_child.batch(SEED, k)
            log.write(f"begin {k}\n")
            store.apply(events, crash_child.now_of(k))
            log.write(f"end {k}\n")


@dataclass
class Tally:
    kills: int = 0
    batches: int = 0
    logged: int = 0
    committed_unlogged: int = 0  # killed between the commit and the "end" line
    inside_batch: int = 0  # killed after "begin k", batch k not committed: rolled back
    idle_kills: int = 0  # killed before it committed anything in that life


def read_log(path: Path) -> tuple[int | None, list[int], int | None]:
    """(the batch the child started after, the batches it saw `apply` return for, the batch
    it had begun last); a line cut by the kill is ignored."""
    start, ended, begun = None, [], None
    text = path.read_text() if path.exists() else ""
    for line in text.split("\n")[:-1]:
        word, number = line.split()
        if word == "start":
            start = int(number)
        elif word == "begin":
            begun = int(number)
        elif word == "end":
            ended.append(int(number))
    return start, ended, begun


def child_started(log: Path, process: Any) -> bool:
    return read_log(log)[0] is not None or not process.is_alive()


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def sessions_on(cluster: Cluster, dbname: str) -> int:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)
        ).fetchone()
    return int(row[0])


def counts(url: str) -> dict[str, int]:
    """The clock and the size of each journal table, in one snapshot."""
    with psycopg.connect(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        (clock,) = conn.execute("SELECT timestamp FROM clock").fetchone()
        sizes = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("accounts", "transfers", "expiries", "failed", "history")
        }
    return {"clock": clock, **sizes}


def expected_counts(ledger: Ledger) -> dict[str, int]:
    accounts = list(ledger.accounts())
    return {
        "clock": ledger.timestamp,
        "accounts": len(accounts),
        "transfers": sum(1 for _ in ledger.transfers()),
        "expiries": len(ledger.expiries()),
        "failed": len(ledger.failed_ids()),
        "history": sum(len(ledger.history(a.id)) for a in accounts),
    }


def check_committed_prefix(
    store: PostgresStore,
    url: str,
    ledger: Ledger,
    applied: int,
    life: tuple[int | None, list[int], int | None],
) -> int:
    """The checks after one kill (see the module docstring); returns n, the last committed
    batch. `ledger` holds batches 1..applied and is brought up to n."""
    last = crash_child.last_committed(store)
    assert crash_child.committed(store, last + 3) == list(range(1, last + 1))
    start, ended, _ = life
    assert start == applied, f"the child resumed after {start}, the database had {applied}"
    assert ended == list(range(applied + 1, applied + 1 + len(ended)))
    assert last - (ended[-1] if ended else applied) in (0, 1)
    for k in range(applied + 1, last + 1):
        ledger.apply(crash_child.batch(SEED, k), crash_child.now_of(k))
    ids = [a.id for a in ledger.accounts()]
    assert store.lookup_accounts(ids) == [ledger.lookup_account(i) for i in ids]
    assert counts(url) == expected_counts(ledger)
    return last


@pytest.mark.slow
def test_sigkilled_writer_loses_nothing_and_applies_nothing_twice(
    postgres_database: Any, postgres_cluster: Cluster, tmp_path: Path
) -> None:
    url = postgres_database()
    dbname = url.rsplit("/", 1)[1]
    PostgresStore(url).close()  # the schema exists before the first kill
    fork = multiprocessing.get_context("fork")
    rng = random.Random(SEED)
    ledger, applied, tally = Ledger(), 0, Tally()
    log = tmp_path / "child.log"
    started = time.monotonic()
    while tally.kills < KILLS or (tally.batches < KILLS and tally.kills < 3 * KILLS):
        log.unlink(missing_ok=True)
        process = fork.Process(target=child, args=(url, str(log)))
        process.start()
        wait_for(partial(child_started, log, process), "the child to start")
        time.sleep(rng.uniform(0, WORK_SECONDS_MAX))
        process.kill()
        process.join()
        assert process.exitcode == -signal.SIGKILL, "the child stopped by itself"
        tally.kills += 1
        wait_for(lambda: sessions_on(postgres_cluster, dbname) == 0, "the session to end")

        life = read_log(log)
        with PostgresStore(url) as store:
            last = check_committed_prefix(store, url, ledger, applied, life)
            if tally.kills % FULL_CHECK_EVERY == 0:
                accounts = [a.id for a in ledger.accounts()]
                transfers = [t.id for t in ledger.transfers()]
                assert crash_child.differences(store, ledger, accounts, transfers) == []
                assert crash_child.violations(store) == []
        ended, begun = life[1], life[2]
        tally.inside_batch += begun is not None and begun > last
        tally.batches += last - applied
        tally.logged += len(ended)
        tally.committed_unlogged += last - (ended[-1] if ended else applied)
        tally.idle_kills += last == applied
        applied = last
    print(
        f"\nPostgreSQL crash test: {tally.kills} SIGKILLs and restarts, {tally.batches} batches "
        f"committed ({tally.logged} logged by the child, {tally.committed_unlogged} committed "
        f"but killed before the log line), {tally.inside_batch} kills inside a batch, rolled "
        f"back, {tally.idle_kills} lives with no commit; "
        f"{sum(1 for _ in ledger.transfers())} transfers, {len(ledger.expiries())} expiries, "
        f"{len(ledger.failed_ids())} failed ids; {time.monotonic() - started:.1f}s"
    )
    # Not vacuous: at least as many batches committed as kills (on a slow machine, by killing
    # more often than KILLS times), and the kills landed both inside batches and after commits.
    assert tally.kills >= KILLS
    assert tally.batches >= KILLS, "the child hardly got any work done between kills"
    assert tally.inside_batch >= KILLS // 10, "too few kills landed inside a batch"
    assert tally.kills - tally.idle_kills >= KILLS // 4, "too few lives committed anything"
    assert ledger.expiries() and ledger.failed_ids()
