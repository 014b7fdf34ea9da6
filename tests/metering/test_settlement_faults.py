"""Fault injection on the settlement pipeline: usage reported out of order and with duplicates,
settled by 4 worker processes that are SIGKILLed at random moments (and the reporter with
them) and restarted; once drained, the audit finds nothing wrong and the money is exactly what
an independent computation from the workload says.

The workload (`make_workload`, a pure function of the seed and the sizes):

- one plan whose feature `task` has the layers [grants, credits] (no windows, no allowance:
  nothing depends on time) at a price of 7 micro-credits per unit, holds timing out after 2 h
  (none lapses during a campaign);
- customers of two kinds, each with its decisions (estimate e units, actual a units):
  "ample" customers mix a = 0, 0 < a < e, a = e and a > e, and are funded with
  sum(max(a, e)) units plus a random slack (sometimes none: funds exactly suffice);
  "short" customers have only a >= e, and are funded with sum(e) + r units, r < sum(a - e),
  so their excess cannot all be charged and some is written off;
- about a third of the customers hold part of their funds as a promotional grant (burnt
  first), and funds are topped with "dust" below one unit's price that can never be spent.

Why the expected totals do not depend on the order of settlement (which the workers and the
kills scramble) -- everything below is in units, since every amount posted or
held is a multiple of the price, so an account's room (available // price) moves by whole units
and the dust never counts:

- Every decision is allowed (each customer's funds cover the sum of its estimates) and is made
  before any usage is reported, so while settling, a customer's room across grant and credits is
  U - (units still held) - (units posted), where U is its funded units.
- An ample customer: when any decision i is settled, the room after posting its hold is at
  least U - sum over the others of max(a_j, e_j) - e_i >= max(a_i, e_i) - e_i = the excess of i,
  whatever was settled before (settled decisions took a_j, unsettled ones hold e_j, both at most
  max(a_j, e_j)). So every excess is charged in full, nothing is written off, and the customer
  is charged exactly sum(a) units.
- A short customer: a >= e for every decision, so a settlement posts its whole hold and
  releases nothing; the room is therefore U - sum(e) - (excess charged so far) = r - charged,
  in any order. Each settlement charges min(its excess, room), so the charged excess is
  min(sum of excesses, r) in total however the settlements interleave, and the rest,
  sum of excesses - that, is written off. Charged: sum(e) + min(X, r); written off: X - min(X, r).
  (Which decision got charged and which written off does depend on the order: only the
  per-customer totals are compared.)

The campaign (`Campaign.run`): the reports (one per decision, plus 10% duplicates of the same
key and body, all shuffled) go to a reporter process (usage_child.py: runs of 1 to 40 reports, 1
to 4 in the fast campaign, a single one through `report_usage`, longer ones through
`report_usage_batch`); 4 settlement workers (settle_child.py: `run_worker`, batches of 100
events) stream the outbox; a killer loop SIGKILLs a random live process (a worker, or the
reporter) at random moments, paced from the progress so far so that the kills spread over the
whole run, and restarts it -- the reporter a little before the last report it acknowledged, so
some reports are delivered again and must come back as duplicates -- until the workers alone
were killed at least 100 times (the slow campaigns; 10 in the fast one). Once the reporter is
done and the outbox is empty, the workers exit by themselves and one last worker runs until the
outbox is empty. Then the audit, and the comparison with the expectations: audit totals and
counts, every usage event's units, per customer the charged and written-off micro-credits from
the monetization events and from the ledger's accounts, and the revenue and write-off accounts.

Reporting one event per transaction (`report_usage` only) works too but on 2 cores made the
PostgreSQL campaign take six minutes: each report is a write transaction queueing on the
ledger's clock row with the workers' settlements.

Only the worker and reporter processes are killed, never the test process or the server, so
durability across a power cut is not under test here (tests/store/test_sqlite_crash.py and
test_postgres_crash.py are about that): on SQLite the test process's own connection (set-up,
progress, audit) commits with synchronous=NORMAL, halving the set-up's 50,000 decisions on a
busy disk (the children keep the default FULL), and the PostgreSQL cluster runs with fsync off.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.metering import accounts as acc
from ledger.metering.accounts import Code
from ledger.metering.audit import AuditReport, audit
from ledger.store import SqliteStore, Store, store_from_url

from .pg import PgDatabases, pg_cluster, pg_databases

__all__ = ["pg_cluster", "pg_databases"]  # fixtures used by this module

ROOT = Path(__file__).resolve().parents[2]
FEATURE = "task"
PRICE = 7  # micro-credits per unit
PLAN_NAME = "faults"
PLAN = {
    "plan": PLAN_NAME,
    "version": 1,
    "features": {
        FEATURE: {
            "layers": [{"kind": "grants"}, {"kind": "credits"}],
            "reservation_timeout": "2h",  # no hold lapses during a campaign
        }
    },
}
GRANT_LIFETIME_NS = 30 * 86_400 * 10**9
WORKERS = 4
DUPLICATES = 0.10
WORKER_LIMIT = 100  # events picked per batch


# --- the workload and what it must cost ---------------------------------------------------------


@dataclass
class Customer:
    name: str
    short: bool  # funds cannot cover every excess: write-offs
    decisions: list[tuple[int, int, int]] = field(default_factory=list)  # (index, e, a)
    grant: int = 0  # micro-credits
    credits: int = 0  # micro-credits

    def expected(self) -> tuple[int, int]:
        """(charged units, written-off units): see the module docstring for why these do not
        depend on the order in which the decisions are settled."""
        used = sum(a for _, _, a in self.decisions)
        if not self.short:
            return used, 0
        held = sum(e for _, e, _ in self.decisions)
        excess = used - held
        room = (self.grant // PRICE + self.credits // PRICE) - held
        charged = min(excess, room)
        return held + charged, excess - charged


@dataclass
class Workload:
    customers: list[Customer]
    decisions: list[tuple[int, int, int]]  # (customer index, estimate, actual) by decision index

    @property
    def size(self) -> int:
        return len(self.decisions)


def make_workload(seed: int, events: int, customers: int) -> Workload:
    rng = random.Random(seed)
    people = [Customer(f"cust-{i:04d}", short=i % 5 == 4) for i in range(customers)]
    decisions: list[tuple[int, int, int]] = []
    for j in range(events):
        c = rng.randrange(customers)
        e = rng.randint(1, 20)
        roll = rng.random()
        if people[c].short:
            a = e if roll < 0.4 else e + rng.randint(1, 15)
        elif roll < 0.15:
            a = 0
        elif roll < 0.40:
            a = rng.randint(1, e - 1) if e > 1 else 0
        elif roll < 0.70:
            a = e
        else:
            a = e + rng.randint(1, 15)
        decisions.append((c, e, a))
        people[c].decisions.append((j, e, a))
    for person in people:
        held = sum(e for _, e, _ in person.decisions)
        if person.short:
            excess = sum(a - e for _, e, a in person.decisions)
            units = held + (rng.randrange(excess) if excess else 0)
        else:
            need = sum(max(a, e) for _, e, a in person.decisions)
            units = need + rng.choice([0, 0, rng.randint(1, 50)])
        in_grant = rng.randint(0, units) if rng.random() < 0.35 else 0
        dust = [rng.randrange(PRICE) if rng.random() < 0.5 else 0 for _ in range(2)]
        person.grant = in_grant * PRICE + (dust[0] if in_grant else 0)
        person.credits = (units - in_grant) * PRICE + dust[1]
    return Workload(people, decisions)


def usage_key(j: int) -> str:
    return f"use-{j}"


def set_up(
    store: Store, workload: Workload, seed: int, *, url: str = "", processes: int = 1
) -> list[list[Any]]:
    """Publish the plan and prices, fund the customers and make every decision on `store`;
    returns the usage reports to deliver: one per decision, 10% duplicated, shuffled. With
    `processes` > 1 the decisions are made by that many processes on `url` (the same
    database), each for its own customers (a customer's decisions stay in order)."""
    clock = time.time_ns
    meter = Meter(store)
    meter.publish_plan(plan_from_data(PLAN))
    meter.publish_prices(
        price_book_from_data({"version": 1, "effective_from": 0, "prices": {FEATURE: PRICE}})
    )
    for person in workload.customers:
        meter.add_customer(person.name, PLAN_NAME, clock())
        if person.grant:
            now = clock()
            meter.grant(person.name, "welcome", person.grant, now + GRANT_LIFETIME_NS, now)
        if person.credits:
            meter.purchase(person.name, person.credits, "initial", clock())
    wanted = [(j, workload.customers[c].name, e) for j, (c, e, _) in enumerate(workload.decisions)]
    if processes > 1:
        parts = [[d for d in wanted if d[0] % processes == k] for k in range(processes)]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            made = [m for part in pool.map(partial(decide_all, url), parts) for m in part]
    else:
        made = decide_all(meter, wanted)
    decided = {j: (decision_id, now) for j, decision_id, now in made}
    reports: list[list[Any]] = []
    for j, (c, _, a) in enumerate(workload.decisions):
        decision_id, now = decided[j]
        reports.append([workload.customers[c].name, FEATURE, a, usage_key(j), decision_id, now + 1])
    rng = random.Random(seed + 1)
    reports += [
        list(reports[k]) for k in rng.sample(range(len(reports)), int(len(reports) * DUPLICATES))
    ]
    rng.shuffle(reports)
    return reports


def decide_all(on: Meter | str, wanted: list[tuple[int, str, int]]) -> list[tuple[int, int, int]]:
    """Make each wanted decision (index, customer, estimate) with `on` (a meter, or the URL of
    a database to open one on); returns (index, decision id, its time) of each."""
    meter = on if isinstance(on, Meter) else Meter(store_from_url(on))
    made = []
    for j, name, e in wanted:
        decision = meter.decide(name, FEATURE, e, f"decide-{j}", time.time_ns())
        assert decision.allowed, f"decision {j} of {name} was refused: {decision.reasons}"
        made.append((j, decision.decision_id, decision.now))
    if not isinstance(on, Meter):
        meter.store.close()
    return made


# --- the processes -------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path)


@dataclass
class Child:
    kind: str  # "worker" or "reporter"
    slot: int
    life: int
    log: Path
    stderr: Path
    proc: subprocess.Popen[bytes]
    start: int = 0  # reporter: first report index of this life

    def lines(self) -> list[str]:
        text = self.log.read_text() if self.log.exists() else ""
        return text.split("\n")[:-1]  # a line cut by the kill is dropped

    def failure(self) -> str:
        tail = self.stderr.read_text()[-3000:] if self.stderr.exists() else ""
        return f"{self.kind} {self.slot} (life {self.life}) exited {self.proc.returncode}:\n{tail}"


@dataclass
class Tally:
    kills: int = 0
    worker_kills: int = 0
    reporter_kills: int = 0
    kills_inside_settle: int = 0  # after "begin", before "end": the batch was in flight
    kills_before_start: int = 0  # during start-up: imports, opening the store, the meter
    kills_with_work_left: int = 0
    idle_exits: int = 0
    restarts: int = 0
    reports_new: int = 0
    reports_dup: int = 0
    redelivered: int = 0  # reports sent again after a reporter was killed
    settled_logged: int = 0  # events of batches whose "end" the workers logged
    seconds: float = 0.0


class Campaign:
    def __init__(
        self,
        url: str,
        workdir: Path,
        reports_path: Path,
        *,
        seed: int,
        kills: int,
        progress: Callable[[], tuple[int, int]],
        expected_events: int,
        first_interval: float,
        idle_exit: float,
        report_batch_max: int,
    ) -> None:
        self.url = url
        self.workdir = workdir
        self.reports_path = reports_path
        self.rng = random.Random(seed)
        self.kills_wanted = kills
        self.progress = progress  # (usage events recorded, still in the outbox)
        self.expected_events = expected_events
        self.first_interval = first_interval
        self.idle_exit = idle_exit
        self.report_batch_max = report_batch_max
        self.tally = Tally()
        self.lives = Counter[tuple[str, int]]()
        self.workers: list[Child | None] = [None] * WORKERS
        self.reporter: Child | None = None
        self.reported_up_to = 0  # reports [0, reported_up_to) were acknowledged
        self.reporter_done = False
        self.going: tuple[float, float] | None = None  # (when, fraction settled) at 2%

    # -- starting and stopping children --

    def _spawn(self, kind: str, slot: int, argv: list[str], start: int = 0) -> Child:
        life = self.lives[(kind, slot)]
        self.lives[(kind, slot)] += 1
        log = self.workdir / f"{kind}-{slot}-{life}.log"
        stderr = self.workdir / f"{kind}-{slot}-{life}.stderr"
        with stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", *argv],
                cwd=ROOT,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        return Child(kind, slot, life, log, stderr, proc, start)

    def _worker_argv(self, name: str, log: Path, *extra: str) -> list[str]:
        return [
            "tests.metering.settle_child",
            self.url,
            name,
            str(log),
            "--limit",
            str(WORKER_LIMIT),
            "--idle-exit",
            str(self.idle_exit),
            *extra,
        ]

    def start_worker(self, slot: int) -> None:
        life = self.lives[("worker", slot)]
        log = self.workdir / f"worker-{slot}-{life}.log"
        self.workers[slot] = self._spawn("worker", slot, self._worker_argv(f"w{slot}.{life}", log))

    def start_reporter(self) -> None:
        # Start a little before the last acknowledged report: those are delivered again.
        back = self.rng.randint(0, 25) if self.reported_up_to else 0
        start = max(0, self.reported_up_to - back)
        self.tally.redelivered += self.reported_up_to - start
        life = self.lives[("reporter", 0)]
        log = self.workdir / f"reporter-0-{life}.log"
        argv = [
            "tests.metering.usage_child",
            self.url,
            str(self.reports_path),
            str(log),
            str(start),
            str(self.report_batch_max),
        ]
        self.reporter = self._spawn("reporter", 0, argv, start)

    def _read_reporter(self, child: Child) -> None:
        for line in child.lines():
            word, _, rest = line.partition(" ")
            if word == "done":
                self.reporter_done = True
            elif word != "start":
                index = int(word)
                self.reported_up_to = max(self.reported_up_to, index + 1)
                if rest == "new":
                    self.tally.reports_new += 1
                else:
                    self.tally.reports_dup += 1

    def _read_worker(self, child: Child, killed: bool) -> None:
        lines = child.lines()
        self.tally.settled_logged += sum(
            int(line.split()[1]) for line in lines if line.startswith("end ")
        )
        if killed:
            self.tally.kills_before_start += not lines
            self.tally.kills_inside_settle += bool(lines) and lines[-1].startswith("begin")

    def kill(self, child: Child) -> bool:
        """SIGKILL a live child and restart it; False if it had just exited by itself (it is
        then left to `reap`)."""
        if child.proc.poll() is not None:
            return False
        child.proc.send_signal(signal.SIGKILL)
        child.proc.wait()
        if child.proc.returncode != -signal.SIGKILL:
            return False  # it exited by itself just before the signal
        self.tally.kills += 1
        if child.kind == "worker":
            self.tally.worker_kills += 1
            self._read_worker(child, killed=True)
            self.start_worker(child.slot)
        else:
            self.tally.reporter_kills += 1
            self._read_reporter(child)
            if self.reporter_done:
                self.reporter = None  # killed after its last line: nothing left to send
            else:
                self.start_reporter()
        self.tally.restarts += 1
        return True

    def reap(self, finishing: bool) -> None:
        """Children that exited by themselves: the reporter when done, idle workers (restarted
        unless finishing). Anything else is a failure."""
        if self.reporter is not None and self.reporter.proc.poll() is not None:
            assert self.reporter.proc.returncode == 0, self.reporter.failure()
            self._read_reporter(self.reporter)
            assert self.reporter_done, "the reporter exited without finishing"
            self.reporter = None
        for slot, child in enumerate(self.workers):
            if child is not None and child.proc.poll() is not None:
                assert child.proc.returncode == 0, child.failure()
                self._read_worker(child, killed=False)
                self.tally.idle_exits += 1
                self.workers[slot] = None
                if not finishing:
                    self.start_worker(slot)

    # -- the campaign --

    def _next_interval(self) -> float:
        """A random wait before the next kill, paced so that the kills still wanted spread over
        the work still to do, projected from the rate of settlement since it got going (the
        first seconds are start-up)."""
        recorded, queued = self.progress()
        done = (recorded - queued) / self.expected_events
        now = time.monotonic()
        if self.going is None and done >= 0.02:
            self.going = (now, done)
        left = self.kills_wanted - self.tally.worker_kills
        if self.reporter is not None:
            left = left * (WORKERS + 1) // WORKERS  # the reporter takes its share of the kills
        if self.going is None or done - self.going[1] < 0.02 or left <= 0:
            mean = self.first_interval
        else:
            since, at = self.going
            remaining = (now - since) * (1 - done) / (done - at)
            mean = remaining / (1.5 * left)
        # A projection made while start-up still slows the work overestimates what is left:
        # never wait on average more than twice the first interval, or the kills can outlast
        # the work.
        mean = min(max(mean, 0.02), 3.0, 2 * self.first_interval)
        return self.rng.uniform(0, 2 * mean)

    def run(self) -> Tally:
        started = time.monotonic()
        self.start_reporter()
        for slot in range(WORKERS):
            self.start_worker(slot)
        next_kill = time.monotonic() + self.rng.uniform(0, 2 * self.first_interval)
        next_look = 0.0
        drained = False
        try:
            while True:
                self.reap(finishing=False)
                now = time.monotonic()
                if now >= next_look:
                    recorded, queued = self.progress()
                    drained = self.reporter_done and recorded == self.expected_events
                    drained = drained and queued == 0
                    next_look = now + 0.2
                if drained and self.tally.worker_kills >= self.kills_wanted:
                    break
                if now >= next_kill and self.tally.worker_kills < self.kills_wanted:
                    # Mostly a child past its start-up (its log exists); now and then a
                    # worker still starting (imports, opening the store, building the meter).
                    starting = self.rng.random() < 0.2
                    live = [
                        c
                        for c in [*self.workers, self.reporter]
                        if c is not None and (c.log.exists() or (starting and c.kind == "worker"))
                    ]
                    if live and self.kill(self.rng.choice(live)):
                        self.tally.kills_with_work_left += not drained
                    next_kill = time.monotonic() + self._next_interval()
                time.sleep(0.005)
            # The workers stop by themselves once they find nothing to do.
            deadline = time.monotonic() + 60
            while any(w is not None for w in self.workers):
                assert time.monotonic() < deadline, "the workers did not stop when idle"
                self.reap(finishing=True)
                time.sleep(0.02)
            # One last worker, to completion: it returns once the outbox is empty.
            log = self.workdir / "worker-final.log"
            final = self._spawn("worker", WORKERS, self._worker_argv("final", log, "--until-idle"))
            final.proc.wait(timeout=120)
            assert final.proc.returncode == 0, final.failure()
            self._read_worker(final, killed=False)
        finally:
            for child in [*self.workers, self.reporter]:
                if child is not None and child.proc.poll() is None:
                    child.proc.kill()
                    child.proc.wait()
        self.tally.seconds = time.monotonic() - started
        return self.tally


# --- checking the outcome ------------------------------------------------------------------------


def progress_of(store: Store) -> Callable[[], tuple[int, int]]:
    meter_tables = Meter(store).tables

    def read(cur: Any) -> tuple[int, int]:
        cur.execute("SELECT COUNT(*) FROM usage_events")
        (recorded,) = cur.fetchone()
        cur.execute("SELECT COUNT(*) FROM outbox")
        (queued,) = cur.fetchone()
        return int(recorded), int(queued)

    return lambda: meter_tables.read(store, read)


def check_outcome(store: Store, workload: Workload, report: AuditReport) -> None:
    assert report.ok, "the audit found discrepancies:\n" + "\n".join(report.discrepancies[:30])
    n = workload.size
    used = sum(a for _, _, a in workload.decisions)
    per_customer = {p.name: p.expected() for p in workload.customers}
    charged_units = sum(c for c, _ in per_customer.values())
    written_off_units = sum(w for _, w in per_customer.values())
    assert written_off_units > 0, "the workload must write something off"
    assert report.backlog == 0 and report.oldest_unsettled is None
    assert report.counts["usage_events"] == n, "duplicates must not add usage events"
    assert report.counts["completions"] == n
    assert report.counts["usage_rejections"] == 0
    grants = report.totals["units_grants"]  # the split with credits depends on the order
    wanted_totals = {
        "usage_units": used,
        "monetized_units": used,
        "charged": charged_units * PRICE,
        "written_off": written_off_units * PRICE,
        "units_free": 0,
        "units_grants": grants,
        "units_credits": charged_units - grants,
        "units_pool": 0,
    }
    assert {k: report.totals.get(k) for k in wanted_totals} == wanted_totals

    meter = Meter(store)
    tables = meter.tables
    usage, monetization = tables.read(
        store, lambda cur: (list(tables.all_usage(cur)), list(tables.all_monetization(cur)))
    )
    # Each decision's usage event is the one reported, with its units (keys are distinct).
    by_key = {(u.customer, u.key): u.units for u in usage}
    wanted = {
        (workload.customers[c].name, usage_key(j)): a
        for j, (c, _, a) in enumerate(workload.decisions)
    }
    assert by_key == wanted
    # Per customer: charged and written off, from the monetization events and from the ledger.
    got: dict[str, list[int]] = {p.name: [0, 0] for p in workload.customers}
    for m in monetization:
        got[m.customer][m.layer == "write_off"] += m.amount
    want = {name: [c * PRICE, w * PRICE] for name, (c, w) in per_customer.items()}
    assert got == want
    for person in workload.customers:
        ids = [acc.customer_account(person.name)]
        if person.grant:
            ids.append(acc.grant_account(person.name, "welcome"))
        accounts = store.lookup_accounts(ids)
        assert [a.debits_pending for a in accounts] == [0] * len(ids), person.name
        posted = sum(a.debits_posted for a in accounts)
        assert posted == per_customer[person.name][0] * PRICE, person.name
    [revenue, write_off] = store.lookup_accounts(
        [acc.platform_account(Code.REVENUE), acc.platform_account(Code.WRITE_OFF)]
    )
    assert revenue.credits_pending == 0
    assert revenue.credits_posted == (charged_units + written_off_units) * PRICE
    assert write_off.debits_posted == written_off_units * PRICE


def campaign(
    url: str,
    store: Store,
    tmp_path: Path,
    *,
    seed: int,
    events: int,
    customers: int,
    kills: int,
    first_interval: float,
    idle_exit: float = 4.0,
    report_batch_max: int = 40,
    inside_min: int = 5,
    set_up_processes: int = 1,
    work_left_min: float = 0.9,
    label: str,
) -> None:
    """Set up `workload` on the store, run the campaign with `kills` worker kills (plus the
    reporter's share), audit, and compare with the expectations."""
    t0 = time.monotonic()
    workload = make_workload(seed, events, customers)
    reports = set_up(store, workload, seed, url=url, processes=set_up_processes)
    reports_path = tmp_path / "reports.json"
    reports_path.write_text(json.dumps(reports))
    setup_seconds = time.monotonic() - t0
    run = Campaign(
        url,
        tmp_path,
        reports_path,
        seed=seed,
        kills=kills,
        progress=progress_of(store),
        expected_events=events,
        first_interval=first_interval,
        idle_exit=idle_exit,
        report_batch_max=report_batch_max,
    )
    tally = run.run()
    t1 = time.monotonic()
    report = audit(store)
    audit_seconds = time.monotonic() - t1
    print(
        f"\n{label}: {events} decisions and {len(reports)} reports "
        f"({len(reports) - events} duplicates) set up in {setup_seconds:.1f}s; campaign "
        f"{tally.seconds:.1f}s ({events / tally.seconds:.0f} events/s end to end), audit "
        f"{audit_seconds:.1f}s; {tally}; audit totals {report.totals}, counts {report.counts}"
    )
    check_outcome(store, workload, report)
    assert tally.worker_kills >= kills
    assert tally.kills_inside_settle >= inside_min, "too few kills landed inside a settlement"
    assert tally.kills_with_work_left >= tally.kills * work_left_min, "kills must find work left"
    assert tally.reports_new <= events
    # A kill between a commit and its log lines eats the lines of one run of reports.
    assert tally.reports_new >= events - tally.reporter_kills * report_batch_max
    assert tally.reports_new + tally.reports_dup >= len(reports)


# --- the tests -----------------------------------------------------------------------------------


def test_settlement_survives_kills_small_sqlite(tmp_path: Path) -> None:
    """The fast variant, on every run: 4,000 events, 10 kills, on SQLite (fewer events drain
    before the kills are done)."""
    path = tmp_path / "ledger.db"
    with SqliteStore(path, synchronous="NORMAL") as store:
        campaign(
            f"sqlite:///{path}",
            store,
            tmp_path,
            seed=11,
            events=4_000,
            customers=60,
            kills=10,
            first_interval=0.1,
            idle_exit=1.0,
            report_batch_max=4,
            inside_min=0,
            work_left_min=0.5,  # the work is short: the pacing has little to go on
            label="SQLite, small",
        )


@pytest.mark.slow
def test_settlement_survives_100_kills_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with SqliteStore(path, synchronous="NORMAL") as store:
        campaign(
            f"sqlite:///{path}",
            store,
            tmp_path,
            seed=2024,
            events=50_000,
            customers=500,
            kills=105,
            first_interval=0.3,
            label="SQLite",
        )


@pytest.mark.slow
def test_settlement_survives_100_kills_postgres(pg_databases: PgDatabases, tmp_path: Path) -> None:
    _, postgres_url = pg_databases.create()
    with store_from_url(postgres_url) as store:
        campaign(
            postgres_url,
            store,
            tmp_path,
            seed=4048,
            events=50_000,
            customers=500,
            kills=105,
            first_interval=0.3,
            set_up_processes=2,  # decisions on two connections: the set-up is not under test
            label="PostgreSQL",
        )
