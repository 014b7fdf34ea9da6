"""The auditor (DESIGN.md, "Invariants" M1-M6 and L1-L7; "Three datasets and the settlement
pipeline"): on a finished run it finds nothing and its totals are the workload's; after any
row of the usage events, the monetization events or the ledger's transfers is modified, deleted
or inserted behind the engine's back, it reports a discrepancy naming that row's id.

The workload is small but touches every path: rate windows, the daily allowance, a promotional
grant (and another that expires into breakage), purchased credits, an organisation's pool and
overage, completions below, at and above the reservation, a write-off, a hold that expired before
its usage was settled, a refusal, a rejected report, and one usage event still queued. It is run
once per store kind; each tamper test works on its own copy (a copied SQLite file, a PostgreSQL
database cloned from a template).
"""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.core.types import PendingStatus, Transfer
from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.metering import accounts as acc
from ledger.metering.accounts import Code
from ledger.metering.audit import AuditReport, audit
from ledger.metering.completion import monetization_id
from ledger.metering.errors import UsageChangedError
from ledger.metering.ids import derive_id
from ledger.metering.records import UsageEvent
from ledger.metering.settlement import UsageRejectedError, run_worker
from ledger.metering.tables import tables_for
from ledger.store import chain
from ledger.store.base import Store, StoreError
from ledger.store.memory import MemoryStore
from ledger.store.sql import TRANSFER_COLUMNS
from ledger.store.sqlite import SqliteStore
from specs import ledger as ledger_spec
from specs import metering as metering_spec

from .fixtures import (
    CREDITS,
    DAY,
    GRANTS,
    HOUR,
    MINUTE,
    NS,
    POOL,
    T0,
    allowance_layer,
    book_data,
    feature,
    plan_data,
    window,
    windows_layer,
)
from .pg import PgDatabases, pg_cluster, pg_databases

__all__ = ["pg_cluster", "pg_databases"]  # fixtures used by this module

F, G = "codex.task", "sora.video"
PF, PG = 7, 13  # micro-credits per unit of F and of G
W, A = 10, 5  # F's one-hour window limit and daily allowance

# --- the workload ------------------------------------------------------------------------------


def decision_id(customer: str, key: str) -> int:
    return derive_id("decision", customer, key)


def usage_id(customer: str, key: str) -> int:
    return derive_id("usage", customer, key)


CARL = decision_id("carl", "c1")
CARL_USAGE = usage_id("carl", "c1-use")
CARL_CREDITS = monetization_id(CARL, "credits")
CARL_HOLD = derive_id("hold", CARL, "credits")
CARL_POST = derive_id("post", CARL, "credits")
CARL_CHARGE = derive_id("charge", CARL, "credits")
QUE_USAGE = usage_id("que", "q1-use")
WENDY = decision_id("wendy", "wd1")
WIN_FREE = monetization_id(decision_id("win", "w2"), "windows")

# What the workload must leave, worked out by hand from the plan below (not read back).
# Settled usage: win 8 + 3, gina 25, carl 24, olga 28, wendy 6, exa 5 (que's 2 stay queued).
EXPECTED_TOTALS = {
    "usage_units": 8 + 3 + 25 + 24 + 28 + 6 + 5,
    "monetized_units": 8 + 3 + 25 + 24 + 28 + 6 + 5,
    # gina's grant 10 units; carl 5 held + 4 excess; olga pool 10 + overage 3; wendy 2 held +
    # 1 covered; exa 5 charged afresh
    "charged": 10 * PF + 9 * PF + 13 * PF + 3 * PG + 5 * PG,
    "written_off": 3 * PG,  # wendy's 3 uncovered units
    # win 8 (w1) + 2 windows + 1 allowance (w2); gina, carl, olga each W + A
    "units_free": 8 + 3 + 3 * (W + A),
    "units_grants": 10,
    "units_credits": 9 + 3 + 5,
    "units_pool": 13,
}
EXPECTED_COUNTS = {
    "usage_events": 8,  # 7 settled + que's queued one
    "usage_rejections": 1,  # win's report of a refused decision
    # win 1 + 2, gina 3, carl 3, olga 4 (windows, allowance, pool, overage), wendy 2, exa 1
    "monetization_events": 16,
    # set-up: 4 purchases, 2 grants, 1 pool top-up, 1 overage cap; holds: gina, carl, olga 2,
    # wendy, exa, que; settlement: gina 1, carl 2, olga 2, wendy 3, exa 1; breakage 1
    "transfers": 8 + 7 + 9 + 1,
    "accounts": 6 + 7 + 2 + 2,  # platform, 7 customers' credits, 2 grants, pool and overage
    "expiries": 2,  # exa's hold before its usage settled, que's hold still unsettled
    "completions": 7,
    "decisions": 9,  # the 8 allowed (one per usage event) and win's refusal
}


def run_workload(store: Store) -> Meter:
    """The finished run (every figure asserted on the way); returns its meter."""
    meter = Meter(store)
    f_layers = (
        windows_layer(window("1h", "1h", W)),
        allowance_layer(A, "day"),
        GRANTS,
        CREDITS,
        POOL,
    )
    meter.publish_plan(
        plan_from_data(
            plan_data({F: feature(*f_layers, timeout="1h"), G: feature(CREDITS, timeout=60)})
        )
    )
    meter.publish_prices(price_book_from_data(book_data({F: PF, G: PG})))
    meter.add_org("acme", T0, overage_cap=5 * PF)
    for name in ("win", "gina", "carl", "olga", "wendy", "exa", "que"):
        meter.add_customer(name, "pro", T0, org="acme" if name == "olga" else None)
    meter.purchase("carl", 100 * PF, "p1", T0)
    meter.purchase("wendy", 3 * PG + 5, "p1", T0)
    meter.purchase("exa", 10 * PG, "p1", T0)
    meter.purchase("que", 100, "p1", T0)
    meter.grant("gina", "promo", 10 * PF, T0 + DAY, T0)
    meter.grant("carl", "tiny", 20, T0 + HOUR, T0, features=[G])  # never used: breakage
    meter.top_up_pool("acme", 10 * PF, "t1", T0)
    at = T0 + MINUTE

    def parts(customer: str, feature_: str, units: int, key: str) -> list[tuple[str, int]]:
        d = meter.decide(customer, feature_, units, key, at)
        assert d.allowed, d.explain()
        return [(p.layer, p.units) for p in d.parts]

    assert parts("win", F, 8, "w1") == [("windows", 8)]
    assert parts("win", F, 6, "w2") == [("windows", 2), ("allowance", 4)]
    assert parts("gina", F, 25, "g1") == [("windows", W), ("allowance", A), ("grant:promo", 10)]
    assert parts("carl", F, 20, "c1") == [("windows", W), ("allowance", A), ("credits", 5)]
    assert parts("olga", F, 28, "o1") == [
        ("windows", W),
        ("allowance", A),
        ("pool", 10),
        ("overage", 3),
    ]
    assert parts("wendy", G, 2, "wd1") == [("credits", 2)]
    assert parts("exa", G, 4, "x1") == [("credits", 4)]  # a 60 s hold
    refused = meter.decide("win", G, 1, "w3", at)  # win has no credits
    assert not refused.allowed
    with pytest.raises(UsageRejectedError):
        meter.report_usage("win", G, 1, "w3-use", refused.decision_id, at, at)

    # Above the reservation, within the 60 s hold: posted, 1 unit charged, 3 written off.
    wendy = meter.complete(WENDY, 6, at + 30 * NS)
    assert (wendy.charged, wendy.written_off) == (3 * PG, 3 * PG)
    assert len(wendy.transfer_ids) == 3  # post, charge, write-off
    # At the reservation, and below it (free units given back).
    win1 = meter.complete(decision_id("win", "w1"), 8, T0 + 2 * MINUTE)
    assert [(c.layer, c.units, c.amount) for c in win1.charges] == [("windows", 8, 0)]
    gina = meter.complete(decision_id("gina", "g1"), 25, T0 + 3 * MINUTE)
    assert gina.charged == 10 * PF
    olga = meter.complete(decision_id("olga", "o1"), 28, T0 + 4 * MINUTE)
    assert [(c.layer, c.amount) for c in olga.charges if c.amount] == [
        ("pool", 10 * PF),
        ("overage", 3 * PF),
    ]
    # Reported usage, settled by the worker; exa's hold has lapsed by then.
    meter.report_usage("win", F, 3, "w2-use", decision_id("win", "w2"), at, T0 + 6 * MINUTE)
    meter.report_usage("carl", F, 24, "c1-use", CARL, at, T0 + 6 * MINUTE)
    meter.report_usage("exa", G, 5, "x1-use", decision_id("exa", "x1"), at, T0 + 6 * MINUTE)
    ticks = iter(range(T0 + 10 * MINUTE, T0 + 11 * MINUTE))
    stats = run_worker(meter, "worker-1", lambda: next(ticks), until_idle=True)
    assert stats.settled == 3
    carl = meter.completion(CARL)
    assert carl is not None and carl.charged == 9 * PF
    exa = meter.completion(decision_id("exa", "x1"))
    assert exa is not None and exa.charged == 5 * PG
    assert exa.transfer_ids == (derive_id("charge", decision_id("exa", "x1"), "credits"),)
    # A usage event reported and left in the queue.
    q = meter.decide("que", G, 2, "q1", T0 + 11 * MINUTE)
    meter.report_usage("que", G, 2, "q1-use", q.decision_id, T0 + 11 * MINUTE, T0 + 12 * MINUTE)
    # The unused grant expires into breakage (que's hold lapses on the way).
    [breakage] = meter.expire_grants(T0 + 2 * HOUR)
    assert breakage.amount == 20
    assert meter.store.pending_status(q.parts[0].transfer_id) == PendingStatus.EXPIRED
    assert meter.backlog() == (1, T0 + 11 * MINUTE)
    return meter


def check(report: AuditReport) -> None:
    assert report.discrepancies == ()
    assert report.ok and report.chain_ok
    assert report.totals == EXPECTED_TOTALS
    assert report.counts == EXPECTED_COUNTS
    assert (report.backlog, report.oldest_unsettled) == (1, T0 + 11 * MINUTE)


# --- finished runs, one per store kind ----------------------------------------------------------


@dataclass
class Finished:
    """A finished run's database, closed; `copy()` gives a store on a fresh copy of it and raw
    SQL access to that copy."""

    kind: str
    copy: Callable[[], tuple[Store, Tamper]]


class Tamper:
    """Raw SQL on a store's database, behind its back, in one transaction."""

    def execute(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        raise NotImplementedError


class SqliteTamper(Tamper):
    def __init__(self, path: Path) -> None:
        self.path = path

    def execute(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            for text, params in statements:
                db.execute(text, params)
            db.execute("COMMIT")
        finally:
            db.close()


class PostgresTamper(Tamper):
    def __init__(self, url: str) -> None:
        self.url = url

    def execute(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        import psycopg

        with psycopg.connect(self.url) as conn, conn.cursor() as cur:
            for text, params in statements:
                cur.execute(text.replace("?", "%s"), params)


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    folder = tmp_path_factory.mktemp("finished")
    base = folder / "base.db"
    with SqliteStore(base, synchronous="NORMAL") as store:
        run_workload(store)
    copies = iter(range(1_000_000))

    def copy() -> tuple[Store, Tamper]:
        path = folder / f"copy-{next(copies)}.db"
        shutil.copyfile(base, path)
        return SqliteStore(path, synchronous="NORMAL"), SqliteTamper(path)

    return Finished("sqlite", copy)


@pytest.fixture(scope="module")
def postgres_run(pg_databases: PgDatabases) -> Finished:
    from ledger.store.postgres import PostgresStore

    name, url = pg_databases.create()
    store = PostgresStore(url)
    try:
        run_workload(store)
    finally:
        store.close()

    def copy() -> tuple[Store, Tamper]:
        _, copy_url = pg_databases.create(template=name)
        return PostgresStore(copy_url), PostgresTamper(copy_url)

    return Finished("postgres", copy)


@pytest.fixture(params=["sqlite", "postgres"])
def finished(request: pytest.FixtureRequest) -> Iterator[tuple[Store, Tamper]]:
    """A store on a private copy of a finished run, and raw SQL access to it."""
    run: Finished = request.getfixturevalue(f"{request.param}_run")
    store, tamper = run.copy()
    try:
        yield store, tamper
    finally:
        store.close()


# --- a finished run is clean --------------------------------------------------------------------


def test_a_finished_run_on_the_memory_store_has_no_discrepancy() -> None:
    meter = run_workload(MemoryStore())
    check(audit(meter.store, meter.tables))


def test_a_finished_run_on_sqlite_has_no_discrepancy(sqlite_run: Finished) -> None:
    store, _ = sqlite_run.copy()
    with store:
        check(audit(store))


def test_a_finished_run_on_postgres_has_no_discrepancy(postgres_run: Finished) -> None:
    store, _ = postgres_run.copy()
    with store:
        check(audit(store))


def test_the_audit_reads_the_ledger_and_the_tables_in_one_snapshot(
    finished: tuple[Store, Tamper], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker on another connection settles the queued usage event after the audit read the
    ledger and before it reads the metering tables: the audit still sees one moment (read in
    two, the completion would name charges absent from the journal)."""
    store, tamper = finished
    tables = tables_for(store)
    read_usage = tables.all_usage

    def settle_then_read(cur: Any) -> Any:
        with _second_store(tamper) as other:
            ticks = iter(range(T0 + 3 * HOUR, T0 + 4 * HOUR))
            stats = run_worker(Meter(other), "late", lambda: next(ticks), until_idle=True)
        assert stats.settled == 1
        return read_usage(cur)

    monkeypatch.setattr(tables, "all_usage", settle_then_read)
    check(audit(store, tables))
    monkeypatch.undo()
    after = audit(store)
    assert after.ok and after.backlog == 0


def _second_store(tamper: Tamper) -> Store:
    if isinstance(tamper, SqliteTamper):
        return SqliteStore(tamper.path, synchronous="NORMAL")
    from ledger.store.postgres import PostgresStore

    assert isinstance(tamper, PostgresTamper)
    return PostgresStore(tamper.url)


def test_the_collector_is_paused_while_auditing_and_left_as_it_was(
    sqlite_run: Finished, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = sqlite_run.copy()
    tables = tables_for(store)
    enabled: list[bool] = []  # the collector's state while the audit reads, then checks

    def spy(name: str, on: Any) -> None:
        real = getattr(on, name)

        def wrapped(*args: Any) -> Any:
            enabled.append(gc.isenabled())
            return real(*args)

        monkeypatch.setattr(on, name, wrapped)

    spy("all_usage", tables)
    spy("m6_reconciliation", metering_spec)
    assert audit(store, tables).ok
    assert enabled == [False, False] and gc.isenabled()
    gc.disable()
    try:
        assert audit(store, tables).ok and not gc.isenabled()
    finally:
        gc.enable()
    store.close()
    with pytest.raises(StoreError):
        audit(store, tables)
    assert gc.isenabled()


def test_the_report_reads_plainly(sqlite_run: Finished) -> None:
    store, _ = sqlite_run.copy()
    with store:
        report = audit(store)
    out = report.to_json()
    assert out["ok"] is True and out["discrepancies"] == []
    assert out["unsettled"] == {"count": 1, "oldest_occurred_at": T0 + 11 * MINUTE}
    assert out["hash_chain_ok"] is True
    assert report.rows == sum(EXPECTED_COUNTS.values())
    assert len(report.checks) >= 10


# --- tampering -----------------------------------------------------------------------------------


def named(report: AuditReport, row_id: int | str) -> list[str]:
    """The discrepancies that name `row_id`."""
    return [p for p in report.discrepancies if str(row_id) in p]


def assert_named(store: Store, row_id: int | str, *, prefix: str = "") -> list[str]:
    report = audit(store)
    assert not report.ok
    found = named(report, row_id)
    assert found, f"no discrepancy names {row_id}: {report.discrepancies}"
    if prefix:
        assert any(p.startswith(prefix) for p in found), found
    return found


Case = Callable[[Store, Tamper], int]
"""Tampers with a finished run's rows behind the store's back; returns the id that the audit
must name."""

FORGED_DECISION = decision_id("carl", "forged")
FORGED_USAGE = usage_id("carl", "forged")
CARL_FUNDS = acc.customer_account("carl")


# usage_events


def usage_modified(store: Store, tamper: Tamper) -> int:
    tamper.execute([("UPDATE usage_events SET units = units + 1 WHERE id = ?", (CARL_USAGE,))])
    return CARL_USAGE


def usage_deleted(store: Store, tamper: Tamper) -> int:
    tamper.execute([("DELETE FROM usage_events WHERE id = ?", (CARL_USAGE,))])
    return CARL_USAGE


def _insert_usage(tamper: Tamper, *, queued: bool) -> int:
    at = T0 + 20 * MINUTE
    row = (FORGED_USAGE, "carl", "forged", F, 5, at, FORGED_DECISION, at)
    statements: list[tuple[str, Sequence[Any]]] = [
        ("INSERT INTO usage_events (id, customer, key, feature, units, occurred_at, "
         "decision_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row),
    ]  # fmt: skip
    if queued:  # with the digest of the forged row, as a forger who read the code would
        digest = UsageEvent(*row).digest()
        statements.append(
            ("INSERT INTO outbox (usage_id, claimed_by, claimed_until, attempts, digest) "
             "VALUES (?, NULL, 0, 0, ?)", (FORGED_USAGE, digest))
        )  # fmt: skip
    tamper.execute(statements)
    return FORGED_USAGE


def usage_inserted(store: Store, tamper: Tamper) -> int:
    return _insert_usage(tamper, queued=False)


# monetization_events


def monetization_modified(store: Store, tamper: Tamper) -> int:
    tamper.execute(
        [("UPDATE monetization_events SET amount = amount + ? WHERE id = ?", (PF, CARL_CREDITS))]
    )
    return CARL_CREDITS


def monetization_deleted(store: Store, tamper: Tamper) -> int:
    tamper.execute([("DELETE FROM monetization_events WHERE id = ?", (CARL_CREDITS,))])
    return CARL_CREDITS


def _insert_monetization(
    tamper: Tamper, mid: int, usage: int, decision: int, layer: str, amount: int
) -> None:
    row = (mid, usage, decision, "carl", layer, 1, 1, PF, amount, CARL_FUNDS)
    tamper.execute(
        [("INSERT INTO monetization_events (id, usage_id, decision_id, customer, layer, units, "
          "price_version, price, amount, account_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)]
    )  # fmt: skip


def monetization_inserted(store: Store, tamper: Tamper) -> int:
    """A plausible row: the id derived from carl's decision and a layer it never used."""
    mid = monetization_id(CARL, "grant:forged")
    _insert_monetization(tamper, mid, CARL_USAGE, CARL, "grant:forged", PF)
    return mid


# transfers (the ledger's balance updates)


def transfer_modified(store: Store, tamper: Tamper) -> int:
    tamper.execute([("UPDATE transfers SET amount = amount + 1 WHERE id = ?", (CARL_CHARGE,))])
    return CARL_CHARGE


def transfer_deleted(store: Store, tamper: Tamper) -> int:
    tamper.execute([("DELETE FROM transfers WHERE id = ?", (CARL_CHARGE,))])
    return CARL_CHARGE


FORGED_TRANSFER = 999_999


def _forged_transfer(store: Store, *, at_end: bool) -> tuple[Transfer, bytes]:
    """A debit of carl's credits to revenue, squeezed between two batches (with a made-up hash)
    or appended after the last entry (linked to it: the best a forger can do)."""
    journal = list(store.journal())
    if at_end:
        timestamp = journal[-1].timestamp + 1
    else:
        gaps = [
            i
            for i in range(len(journal) - 1)
            if journal[i + 1].timestamp > journal[i].timestamp + 1
        ]
        timestamp = journal[gaps[len(gaps) // 2]].timestamp + 1
    forged = Transfer(
        id=FORGED_TRANSFER,
        debit_account_id=CARL_FUNDS,
        credit_account_id=acc.platform_account(Code.REVENUE),
        amount=PF,
        ledger=acc.LEDGER,
        code=2,
        timestamp=timestamp,
    )
    head = chain.GENESIS
    for entry in journal:
        head = chain.link(head, entry)
    return forged, chain.link(head, forged) if at_end else bytes(range(32))


def _insert_transfer(tamper: Tamper, t: Transfer, digest: bytes) -> None:
    columns = f"{TRANSFER_COLUMNS}, status, expires_at, hash"
    values = (
        t.id, t.debit_account_id, t.credit_account_id, t.amount, t.pending_id, t.timeout,
        t.ledger, t.code, t.user_data, t.flags, t.timestamp, 0, None, digest,
    )  # fmt: skip
    tamper.execute([(f"INSERT INTO transfers ({columns}) VALUES ({', '.join('?' * 14)})", values)])


def transfer_inserted(store: Store, tamper: Tamper) -> int:
    _insert_transfer(tamper, *_forged_transfer(store, at_end=False))
    return FORGED_TRANSFER


DATASET_CASES = [
    usage_modified,
    usage_deleted,
    usage_inserted,
    monetization_modified,
    monetization_deleted,
    monetization_inserted,
    transfer_modified,
    transfer_deleted,
    transfer_inserted,
]


@pytest.mark.parametrize("case", DATASET_CASES, ids=lambda c: c.__name__)
def test_a_tampered_row_of_each_dataset_is_named(
    finished: tuple[Store, Tamper], case: Case
) -> None:
    store, tamper = finished
    assert audit(store).ok
    row_id = case(store, tamper)
    assert_named(store, row_id)


# --- harder variants of each dataset's tampering -----------------------------------------------


def usage_feature_modified(store: Store, tamper: Tamper) -> int:
    """Settled usage now claims another feature than its decision's."""
    tamper.execute([("UPDATE usage_events SET feature = ? WHERE id = ?", (G, CARL_USAGE))])
    return CARL_USAGE


def usage_key_modified(store: Store, tamper: Tamper) -> int:
    """The id no longer derives from the customer and key."""
    tamper.execute([("UPDATE usage_events SET key = 'c1-other' WHERE id = ?", (CARL_USAGE,))])
    return CARL_USAGE


def usage_customer_modified(store: Store, tamper: Tamper) -> int:
    tamper.execute([("UPDATE usage_events SET customer = 'gina' WHERE id = ?", (CARL_USAGE,))])
    return CARL_USAGE


def usage_decision_modified(store: Store, tamper: Tamper) -> int:
    tamper.execute(
        [("UPDATE usage_events SET decision_id = ? WHERE id = ?", (FORGED_DECISION, CARL_USAGE))]
    )
    return CARL_USAGE


def queued_usage_modified(store: Store, tamper: Tamper) -> int:
    tamper.execute([("UPDATE usage_events SET units = 200 WHERE id = ?", (QUE_USAGE,))])
    return QUE_USAGE


def queued_usage_deleted(store: Store, tamper: Tamper) -> int:
    """Its outbox entry stays, naming a usage event that is gone."""
    tamper.execute([("DELETE FROM usage_events WHERE id = ?", (QUE_USAGE,))])
    return QUE_USAGE


def usage_inserted_queued_for_an_unknown_decision(store: Store, tamper: Tamper) -> int:
    return _insert_usage(tamper, queued=True)


def monetization_units_modified(store: Store, tamper: Tamper) -> int:
    tamper.execute(
        [("UPDATE monetization_events SET units = units + 1 WHERE id = ?", (CARL_CREDITS,))]
    )
    return CARL_CREDITS


def monetization_price_modified(store: Store, tamper: Tamper) -> int:
    tamper.execute(
        [("UPDATE monetization_events SET price = price + 1 WHERE id = ?", (CARL_CREDITS,))]
    )
    return CARL_CREDITS


def monetization_account_modified(store: Store, tamper: Tamper) -> int:
    other = acc.customer_account("gina")
    tamper.execute(
        [("UPDATE monetization_events SET account_id = ? WHERE id = ?", (other, CARL_CREDITS))]
    )
    return CARL_CREDITS


def free_monetization_deleted(store: Store, tamper: Tamper) -> int:
    """A windows-layer row (0 micro-credits): no transfer names it."""
    tamper.execute([("DELETE FROM monetization_events WHERE id = ?", (WIN_FREE,))])
    return WIN_FREE


def write_off_monetization_deleted(store: Store, tamper: Tamper) -> int:
    mid = monetization_id(WENDY, "write_off")
    tamper.execute([("DELETE FROM monetization_events WHERE id = ?", (mid,))])
    return mid


def free_monetization_inserted(store: Store, tamper: Tamper) -> int:
    """A 0-amount row with a derived id, for a layer carl's decision did not use."""
    mid = monetization_id(CARL, "pool")
    _insert_monetization(tamper, mid, CARL_USAGE, CARL, "pool", 0)
    return mid


def hold_status_modified(store: Store, tamper: Tamper) -> int:
    """A posted hold marked pending again (the status column is outside the hash chain): the
    next batch after its expiry time would release it a second time."""
    pending = int(PendingStatus.PENDING)
    tamper.execute([("UPDATE transfers SET status = ? WHERE id = ?", (pending, CARL_HOLD))])
    return CARL_HOLD


def hold_deleted(store: Store, tamper: Tamper) -> int:
    tamper.execute([("DELETE FROM transfers WHERE id = ?", (CARL_HOLD,))])
    return CARL_HOLD


def transfer_appended_with_a_relinked_hash(store: Store, tamper: Tamper) -> int:
    _insert_transfer(tamper, *_forged_transfer(store, at_end=True))
    return FORGED_TRANSFER


# decisions


def decision_split_modified(store: Store, tamper: Tamper) -> int:
    """Carl's recorded split now spends credits while the windows still had room (M3): the
    same total, each part within its layer's room."""
    took = f"0,{A},{W + 5}"
    tamper.execute([("UPDATE decisions SET took = ? WHERE decision_id = ?", (took, CARL))])
    return CARL


VARIANTS = [
    usage_customer_modified,
    usage_decision_modified,
    transfer_appended_with_a_relinked_hash,
    usage_feature_modified,
    usage_key_modified,
    queued_usage_modified,
    queued_usage_deleted,
    usage_inserted_queued_for_an_unknown_decision,
    monetization_units_modified,
    monetization_price_modified,
    monetization_account_modified,
    free_monetization_deleted,
    write_off_monetization_deleted,
    free_monetization_inserted,
    hold_status_modified,
    hold_deleted,
    decision_split_modified,
]


@pytest.mark.parametrize("case", VARIANTS, ids=lambda c: c.__name__)
def test_a_harder_tampering_is_named(finished: tuple[Store, Tamper], case: Case) -> None:
    store, tamper = finished
    row_id = case(store, tamper)
    assert_named(store, row_id)


DETECTED = [
    transfer_deleted,
    monetization_units_modified,
    free_monetization_deleted,
    write_off_monetization_deleted,
    free_monetization_inserted,
]


@pytest.mark.parametrize("case", DETECTED, ids=lambda c: c.__name__)
def test_a_tampering_is_detected_whatever_names_it(
    finished: tuple[Store, Tamper], case: Case
) -> None:
    """The report is not ok, whichever check names the row (and for cases that were once
    found only through a neighbouring row)."""
    store, tamper = finished
    case(store, tamper)
    assert not audit(store).ok


# --- the ledger's totals, the outbox and the completions ----------------------------------------


def test_modified_account_totals_break_the_replay_and_name_the_account(
    finished: tuple[Store, Tamper],
) -> None:
    """Totals are derived, not chained: the chain still verifies, L3 names the account."""
    store, tamper = finished
    tamper.execute(
        [("UPDATE accounts SET credits_posted = credits_posted + 5 WHERE id = ?", (CARL_FUNDS,))]
    )
    found = assert_named(store, CARL_FUNDS, prefix="L3")
    assert found == [f"L3: account {CARL_FUNDS} differs from the replay of the journal"]
    assert audit(store).chain_ok


def test_a_settled_usage_queued_again_is_reported(finished: tuple[Store, Tamper]) -> None:
    store, tamper = finished
    tamper.execute(
        [("INSERT INTO outbox (usage_id, claimed_by, claimed_until, attempts, digest) "
          "VALUES (?, NULL, 0, 0, 1)", (CARL_USAGE,))]
    )  # fmt: skip
    found = assert_named(store, CARL_USAGE)
    assert f"M2: usage {CARL_USAGE} is settled and still queued" in found


def test_an_unsettled_usage_dropped_from_the_outbox_is_reported(
    finished: tuple[Store, Tamper],
) -> None:
    store, tamper = finished
    tamper.execute([("DELETE FROM outbox WHERE usage_id = ?", (QUE_USAGE,))])
    found = assert_named(store, QUE_USAGE)
    assert f"M6: usage {QUE_USAGE} is neither settled nor queued" in found


def test_a_deleted_completion_is_reported(finished: tuple[Store, Tamper]) -> None:
    """Its usage event is then neither settled nor queued (the discrepancy names the usage
    event the completion settled; the decision id itself is not named)."""
    store, tamper = finished
    tamper.execute([("DELETE FROM completions WHERE decision_id = ?", (CARL,))])
    found = assert_named(store, CARL_USAGE)
    assert f"M6: usage {CARL_USAGE} is neither settled nor queued" in found


# --- a queued usage event changed before it is settled -----------------------------------------


def test_a_queued_usage_changed_is_named_and_never_settled(
    finished: tuple[Store, Tamper],
) -> None:
    """Its outbox entry keeps the report's digest: the audit names the event, settlement
    refuses the batch (nothing charged), and once the row is restored as reported it settles."""
    store, tamper = finished
    queued_usage_modified(store, tamper)  # 2 units become 200
    found = assert_named(store, QUE_USAGE)
    assert found == [
        f"M6: usage {QUE_USAGE} was changed after it was reported (its outbox entry keeps the "
        "digest of another report)"
    ]
    meter = Meter(store)
    ticks = iter(range(T0 + 3 * HOUR, T0 + 4 * HOUR))
    with pytest.raises(UsageChangedError, match=f"usage {QUE_USAGE} was changed"):
        run_worker(meter, "worker-2", lambda: next(ticks))
    refused = audit(store)
    assert refused.totals == EXPECTED_TOTALS and refused.backlog == 1  # nothing was settled
    tamper.execute([("UPDATE usage_events SET units = 2 WHERE id = ?", (QUE_USAGE,))])
    assert run_worker(meter, "worker-2", lambda: next(ticks)).settled == 1
    settled = audit(store)
    assert settled.ok and settled.backlog == 0
    assert settled.totals["usage_units"] == EXPECTED_TOTALS["usage_units"] + 2


# --- the ledger's checks beside the metering checks --------------------------------------------


@pytest.mark.parametrize("case", [transfer_modified, hold_status_modified, usage_modified])
def test_the_report_is_the_same_with_the_ledger_checks_in_a_child(
    finished: tuple[Store, Tamper], case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked or not, the same discrepancies in the same order; and forked, the ledger's checks
    really ran in another process (a spy puts the pid of the process that ran it in the
    report)."""
    store, tamper = finished
    case(store, tamper)
    real = ledger_spec.journal_violations

    def spy(*args: Any) -> list[str]:
        return [f"ran in {os.getpid()}", *real(*args)]

    monkeypatch.setattr(ledger_spec, "journal_violations", spy)
    forked, here = audit(store, fork=True), audit(store, fork=False)
    assert f"ran in {os.getpid()}" in here.discrepancies
    assert f"ran in {os.getpid()}" not in forked.discrepancies
    assert len(forked.discrepancies) == len(here.discrepancies) > 1
    plain = [p for p in here.discrepancies if not p.startswith("ran in")]
    assert [p for p in forked.discrepancies if not p.startswith("ran in")] == plain
    assert (forked.totals, forked.counts, forked.chain_ok) == (
        here.totals,
        here.counts,
        here.chain_ok,
    )


def test_a_short_journal_is_checked_without_a_child(
    finished: tuple[Store, Tamper], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left to choose, the audit forks only for a journal long enough to pay for it (the
    choice is made as if a child could run now, whatever threads other tests left behind)."""
    import ledger.beside
    import ledger.metering.audit as audit_module

    monkeypatch.setattr(ledger.beside, "can_fork", lambda: True)
    store, _ = finished
    real = ledger_spec.journal_violations
    monkeypatch.setattr(
        ledger_spec, "journal_violations", lambda *a: [f"ran in {os.getpid()}", *real(*a)]
    )
    assert f"ran in {os.getpid()}" in audit(store).discrepancies  # 25 transfers: no child
    monkeypatch.setattr(audit_module, "FORK_FROM_ENTRIES", 1)
    assert f"ran in {os.getpid()}" not in audit(store).discrepancies
