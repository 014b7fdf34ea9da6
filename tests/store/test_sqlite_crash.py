"""Crash safety: a child process applying batches is SIGKILLed at random moments, hundreds of
times, and restarted; it resumes from what the database says is committed.

After every kill the parent opens the database and requires:
- the committed batches are a prefix 1..k (a batch is all there or not at all),
- nothing is lost: k is at least every batch whose `apply` had returned in the child, and at
  least what was committed before,
- the state equals a fresh in-memory `Ledger` that applied exactly batches 1..k once
  (accounts, transfers, statuses, failed ids, expiries, histories: the journal entry by entry),
- the invariants of specs/ledger.py hold on the stored journal and the hash chain verifies.

The harness takes a store URL, so the same campaign runs against PostgreSQL.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.store import store_from_url
from tests.store import crash_child as workload

ROOT = Path(__file__).resolve().parents[2]
KILLS_MIN = 200
FULL_CHECK_EVERY = 10  # every restart compares the journal; every 10th also every transfer id
SEED = 20_251_125


@dataclass
class Campaign:
    """What happened, for the report and the assertions."""

    kills: int = 0
    restarts: int = 0
    kills_before_start: int = 0  # during interpreter start, imports or opening the store
    kills_inside_apply: int = 0  # after "begin k", before "end k"
    kills_after_commit: int = 0  # inside apply, yet batch k was committed: killed in the return
    committed: int = 0
    full_checks: int = 0
    per_restart: list[int] = field(default_factory=list)  # batches committed by each run


class Reference:
    """A fresh `Ledger` that applies each committed batch exactly once."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.ledger = Ledger()
        self.batches = 0

    def advance(self, k: int) -> None:
        for j in range(self.batches + 1, k + 1):
            self.ledger.apply(workload.batch(self.seed, j), workload.now_of(j))
        self.batches = max(self.batches, k)

    def transfer_ids(self, since: int) -> list[int]:
        """Ids of the transfers of batches `since`.. (and the failed ids): what a restart checks
        one by one; the journal comparison covers the rest."""
        low = since * workload.IDS_PER_BATCH
        ids = [t.id for t in self.ledger.transfers() if t.id >= low]
        return ids + sorted(i for i in self.ledger.failed_ids() if i >= low)


def check(url: str, reference: Reference, reported: int, full: bool) -> int:
    """Open the store after a kill, check everything, return the last committed batch."""
    previous = reference.batches
    with store_from_url(url) as store:
        k = workload.last_committed(store)
        assert workload.committed(store, k + 10) == list(range(1, k + 1)), "not a prefix"
        assert k >= reported, f"batch {reported} was acknowledged, only {k} survived"
        assert k >= previous, f"{previous} batches were committed, now only {k}"
        reference.advance(k)
        accounts = [*workload.ACCOUNT_IDS, workload.MISSING]
        # Statuses change only within 4 batches (posts and voids reach 4 back, timeouts 3 s).
        transfers = reference.transfer_ids(0 if full else max(0, previous - 4))
        journal = list(store.journal())
        problems = workload.differences(store, reference.ledger, accounts, transfers, journal)
        problems += workload.violations(store, journal, None if full else transfers)
    assert problems == [], f"after {k} committed batches: {problems[:5]}"
    return k


def child(url: str, seed: int, last: int, stderr: Path) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.crash_child", url, str(seed), str(last)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr.open("w"),
        text=True,
    )


def read_progress(lines: list[str]) -> tuple[int, int | None]:
    """(last batch acknowledged with "end k", batch begun but not ended or None)."""
    ended, begun = 0, None
    for line in lines:
        word, _, number = line.partition(" ")
        if word == "end":
            ended, begun = int(number), None
        elif word == "begin":
            begun = int(number)
    return ended, begun


def run_campaign(
    url: str,
    workdir: Path,
    *,
    exists: Callable[[], bool] = lambda: True,
    settle: Callable[[], None] = lambda: None,
    kills: int = KILLS_MIN,
    seed: int = SEED,
    kill_window_seconds: float = 0.008,
) -> Campaign:
    rng = random.Random(seed)
    reference = Reference(seed)
    campaign = Campaign()
    stderr = workdir / "child.stderr"
    while campaign.kills < kills:
        proc = child(url, seed, 10**6, stderr)
        assert proc.stdout is not None
        if rng.random() < 0.15:
            time.sleep(rng.uniform(0.0, 0.15))  # at start-up: imports, opening, maybe migrating
            lines: list[str] = []
        else:
            first = proc.stdout.readline()
            assert first.startswith("start"), f"the child failed: {stderr.read_text()[-2000:]}"
            time.sleep(rng.uniform(0.0, kill_window_seconds))
            lines = [first]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lines += proc.stdout.read().splitlines()
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL, (
            f"the child ended early: {stderr.read_text()[-2000:]}"
        )
        campaign.kills += 1
        campaign.restarts += 1
        ended, begun = read_progress(lines)
        campaign.kills_before_start += not lines
        campaign.kills_inside_apply += begun is not None
        if not exists():
            continue  # killed before it created the database
        settle()
        before = reference.batches
        full = campaign.restarts % FULL_CHECK_EVERY == 0
        k = check(url, reference, ended, full)
        campaign.full_checks += full
        campaign.kills_after_commit += begun is not None and k == begun
        campaign.per_restart.append(k - before)
    # Finally a run that is not killed: it must finish the next few batches and end cleanly.
    last = reference.batches + 10
    proc = child(url, seed, last, stderr)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.splitlines()[-1] == "done", stderr.read_text()[-2000:]
    campaign.committed = check(url, reference, last, full=True)
    campaign.full_checks += 1
    assert campaign.committed == last
    return campaign


@pytest.mark.slow
def test_sqlite_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    started = time.perf_counter()
    campaign = run_campaign(f"sqlite:///{path}", tmp_path, exists=path.exists)
    elapsed = time.perf_counter() - started
    print(f"\nSQLite crash campaign: {campaign} in {elapsed:.1f} s")
    assert campaign.kills >= KILLS_MIN
    assert campaign.committed >= 300, "too little progress to mean anything"
    assert campaign.kills_inside_apply >= 50, "too few kills landed inside apply"
    assert campaign.kills_before_start >= 10
    assert sum(1 for n in campaign.per_restart if n == 0) >= 10, "some runs must commit nothing"


def sessions_ended(url: str) -> Callable[[], None]:
    """A server may still finish a killed client's transaction (its COMMIT was sent): wait
    until no other session is connected to the database before checking it."""

    def settle() -> None:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(500):
                others = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
                if others is not None and others[0] == 0:
                    return
                time.sleep(0.01)
        raise AssertionError("the killed child's session did not end within 5 s")

    return settle


@pytest.mark.slow
def test_the_same_campaign_runs_on_postgres_by_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The harness needs only the store's URL: a shorter campaign on PostgreSQL (its own
    200-kill campaign, with forked children, is tests/store/test_postgres_crash.py)."""
    url = request.getfixturevalue("postgres_database")()
    campaign = run_campaign(
        url, tmp_path, settle=sessions_ended(url), kills=40, kill_window_seconds=0.06
    )
    print(f"\nPostgreSQL crash campaign: {campaign}")
    assert campaign.kills == 40 and campaign.committed >= 50
    assert campaign.kills_inside_apply >= 5
