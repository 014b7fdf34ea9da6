"""`tollgate audit`: check the three datasets and the ledger on the data itself.

Reads everything once, evaluates L1-L7 (specs/ledger.py) and M1-M6 (specs/metering.py) on the
rows, verifies the journal's hash chain, rebuilds every balance from the journal, and reports
counts, totals and every discrepancy with the ids it concerns. The same predicates the proofs
and tests use; nothing here re-states a rule.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

from ledger.beside import Pending, beside
from ledger.core.types import Account, Expiry, PendingStatus, TransferRecord
from ledger.metering import accounts as acc
from ledger.metering.accounts import Code
from ledger.metering.ids import derive_id
from ledger.metering.records import Monetization, UsageEvent
from ledger.metering.tables import Allocation, MeterTables, tables_for
from ledger.store.base import Snapshot, Store
from ledger.store.chain import ChainReport
from specs import ledger as ledger_spec
from specs import metering as metering_spec
from specs import staged


@dataclass(frozen=True, slots=True)
class AuditReport:
    counts: dict[str, int]
    totals: dict[str, int]
    discrepancies: tuple[str, ...]
    backlog: int
    oldest_unsettled: int | None
    chain_ok: bool
    seconds: float = 0.0
    checks: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts,
            "totals": self.totals,
            "unsettled": {"count": self.backlog, "oldest_occurred_at": self.oldest_unsettled},
            "hash_chain_ok": self.chain_ok,
            "checks": list(self.checks),
            "discrepancies": list(self.discrepancies),
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class _Ledger:
    accounts: list[Account]
    transfers: list[TransferRecord]
    transfer_by_id: dict[int, TransferRecord]
    expiries: list[Expiry]
    failed: frozenset[int]
    statuses: dict[int, PendingStatus]
    verify_chain: Callable[[], ChainReport]


@dataclass(slots=True)
class _Data:
    ledger: _Ledger
    usage: list[UsageEvent]
    monetization: list[Monetization]
    completions: list[tuple[int, int, tuple[int, ...]]]  # decision, usage, transfer ids
    allocations: list[Allocation]
    rejections: int
    outbox: frozenset[int]
    queued_digests: dict[int, int] | None  # None: layout 1, no digests kept
    recorded: dict[int, tuple[int, ...]]  # usage id -> the monetization its completion recorded


CHECKS = (
    "L1 L7 accounts within limits",
    "L2 double entry per ledger",
    "L3 balances rebuilt from the journal",
    "L4 L5 L7 journal (ids once, two-phase, bounds)",
    "L4 no transfer both stored and remembered as failed",
    "L5 stored pending statuses match the journal",
    "L6 every settlement's transfers present",
    "hash chain",
    "M1 debits equal usage",
    "M2 settled once, derived ids",
    "M3 recorded decisions follow the waterfall",
    "M4 write-offs recorded and counted",
    "M6 usage, monetization and transfers reconcile",
)
QUEUED_CHECK = "M6 queued usage events as reported (the digests their outbox entries keep)"
QUEUED_UNCHECKED = (
    "M6 queued usage events as reported: NOT checked, the database has meter layout 1 "
    "(opening it with this Tollgate's `Meter` adds the digests)"
)


def audit(
    store: Store, tables: MeterTables | None = None, *, fork: bool | None = None
) -> AuditReport:
    """Read everything in one read and check it. The ledger's checks and the hash chain run
    in a forked child (`ledger.beside`) while this process reads and checks the metering
    tables, where that is safe, there is a spare core and the journal is long enough to pay
    for it (`fork` None); True or False forces the choice. The report is the same either way."""
    started = time.perf_counter()
    with _collector_paused():
        data, ledger_checks = _load(store, tables or tables_for(store), fork)
        with ledger_checks:
            problems = _metering_problems(data)
            ledger_problems, chain = ledger_checks.result()
        problems = ledger_problems + problems
        if not chain.ok:
            problems.append(f"hash chain: {chain.problem} at {chain.first_bad}")
        backlog, oldest = _backlog(data)
        return AuditReport(
            counts=_counts(data),
            totals=_totals(data),
            discrepancies=tuple(problems),
            backlog=backlog,
            oldest_unsettled=oldest,
            chain_ok=chain.ok,
            seconds=time.perf_counter() - started,
            checks=(*CHECKS, QUEUED_UNCHECKED if data.queued_digests is None else QUEUED_CHECK),
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The audit builds hundreds of thousands of records, none of them in a reference cycle;
    the garbage collector would walk them again and again for nothing (a quarter of the
    audit's time). Paused while it reads and checks, then left as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_transfer_id = attrgetter("id")

FORK_FROM_ENTRIES = 10_000
"""A journal this long is checked in a child (when `fork` is None and `ledger.beside` can fork):
below it, the checks take less than a fork and its copy-on-write faults cost."""

LedgerChecks = Pending[tuple[list[str], ChainReport]]


def _load(store: Store, tables: MeterTables, fork: bool | None) -> tuple[_Data, LedgerChecks]:
    """The ledger and the metering tables from one read (a settlement committed in between
    would otherwise look like a completion naming absent transfers); the ledger's checks are
    started as soon as the journal is read, beside the reading of the metering tables."""

    started: list[LedgerChecks] = []

    def rows(cur: Any, snapshot: Snapshot) -> tuple[_Ledger, tuple[Any, ...]]:
        ledger = _split(snapshot)
        child = fork if fork is not None or len(snapshot.journal) >= FORK_FROM_ENTRIES else False
        started.append(
            beside(lambda: (_ledger_problems(ledger), ledger.verify_chain()), fork=child)
        )
        usage = list(tables.all_usage(cur))
        monetization = list(tables.all_monetization(cur))
        completions = tables.all_completion_keys(cur)
        digests = tables.outbox_digests(cur)  # one read of the outbox, except on layout 1
        return ledger, (
            usage,
            monetization,
            completions,
            list(tables.all_allocations(cur)),
            tables.rejection_count(cur),
            tables.outbox_ids(cur) if digests is None else frozenset(digests),
            digests,
            _recorded_charges(cur, tables, usage, monetization, completions),
        )

    try:
        _, (ledger, metering) = store.snapshot(rows)
    except BaseException:
        for checks in started:
            with checks:  # stops the child
                pass
        raise
    return _Data(ledger, *metering), started[0]


def _split(snapshot: Snapshot) -> _Ledger:
    accounts: list[Account] = []
    transfers: list[TransferRecord] = []
    expiries: list[Expiry] = []
    for entry in snapshot.journal:
        if isinstance(entry, Account):
            accounts.append(entry)
        elif isinstance(entry, TransferRecord):
            transfers.append(entry)
        else:
            expiries.append(entry)
    return _Ledger(
        accounts,
        transfers,
        dict(zip(map(_transfer_id, transfers), transfers, strict=True)),
        expiries,
        snapshot.failed,
        snapshot.statuses,
        snapshot.verify_chain,
    )


def _recorded_charges(
    cur: Any,
    tables: MeterTables,
    usage: list[UsageEvent],
    monetization: list[Monetization],
    completions: list[tuple[int, int, tuple[int, ...]]],
) -> dict[int, tuple[int, ...]]:
    """For each settled usage event whose units are not all monetized (rare: M6 reports it),
    the monetization event ids its completion recorded, so that a deleted one can be named.
    Read from the completions' bodies, only for these events: parsing all would be slow."""
    units = {u.id: u.units for u in usage}
    monetized = metering_spec.monetized_units(monetization)
    recorded: dict[int, tuple[int, ...]] = {}
    for decision_id, usage_id, _ in completions:
        if usage_id in units and monetized.get(usage_id, 0) != units[usage_id]:
            completion = tables.completion(cur, decision_id)
            if completion is not None:
                recorded[usage_id] = tuple(c.monetization_id for c in completion.charges)
    return recorded


def _ledger_problems(d: _Ledger) -> list[str]:
    problems = [
        f"L1/L7: account {a.id} totals out of bounds or overdrawn"
        for a in d.accounts
        if not ledger_spec.account_within_limits(a)
    ]
    problems += [
        f"L2: ledger {lg} does not balance" for lg in ledger_spec.ledgers_balance(d.accounts)
    ]
    problems += [
        f"L3: account {i} differs from the replay of the journal"
        for i in ledger_spec.replay_mismatches(d.accounts, d.transfers, d.expiries)
    ]
    problems += ledger_spec.journal_violations(d.transfers, d.expiries)
    problems += _status_problems(d)
    problems += [
        f"L4: transfer {i} exists and is remembered as failed"
        for i in sorted(d.failed)
        if i in d.transfer_by_id
    ]
    return problems


def _metering_problems(d: _Data) -> list[str]:
    accounts = d.ledger.accounts
    funding = frozenset(a.id for a in accounts if a.code in metering_spec.FUNDING_CODES)
    write_off = next((a for a in accounts if a.id == acc.platform_account(Code.WRITE_OFF)), None)
    problems = metering_spec.m1_debits_equal_usage(d.monetization, d.ledger.transfers, funding)
    settled = [_Settled(decision, usage) for decision, usage, _ in d.completions]
    problems += metering_spec.m2_settled_once(d.usage, d.monetization, settled, derive_id)
    problems += _m3_decisions(d.allocations)
    problems += metering_spec.m4_write_offs(d.monetization, write_off)
    problems += metering_spec.m6_reconciliation(d.usage, d.monetization, d.outbox)
    problems += _settlement_problems(d)
    problems += _queued_problems(d)
    return problems


def _m3_decisions(allocations: list[Allocation]) -> list[str]:
    return [
        f"M3: decision {a.decision_id} did not follow the waterfall"
        for a in allocations
        if not staged.allocation_ok(a.units, a.rooms, a.allowed, a.took)
    ]


class _Settled(NamedTuple):
    decision_id: int
    usage_id: int


def _settlement_problems(d: _Data) -> list[str]:
    """Every usage event belongs to its customer's decision for the same feature, has the id
    its key derives, and is settled or queued (never both, never neither); every settlement's
    transfers are in the journal (its chain applied whole, L6), and each of them that moved
    money names a monetization event that exists; where a settled event's units are not all
    monetized, each monetization event its completion recorded exists (so a deleted one is
    named, free layers' included: no transfer names those)."""
    completed = {usage_id: (decision_id, ids) for decision_id, usage_id, ids in d.completions}
    usage_ids = {u.id for u in d.usage}
    problems = _usage_problems(d, completed)
    settled = completed.keys() & usage_ids
    problems += [f"M2: usage {i} is settled and still queued" for i in sorted(settled & d.outbox)]
    problems += [
        f"M6: usage {i} is neither settled nor queued"
        for i in sorted(usage_ids - settled - d.outbox)
    ]
    problems += [
        f"M6: completion of decision {completed[i][0]} names absent usage {i}"
        for i in sorted(completed.keys() - usage_ids)
    ]
    problems += _settlement_transfer_problems(d, completed)
    problems += [f"M6: outbox entry for absent usage {i}" for i in sorted(d.outbox - usage_ids)]
    return problems


def _usage_problems(d: _Data, completed: dict[int, tuple[int, tuple[int, ...]]]) -> list[str]:
    """Each usage event's id is derived from its customer and key, and it matches its
    decision (and the decision its settlement names)."""
    decisions = {a.decision_id: a for a in d.allocations}
    problems = []
    for u in d.usage:
        if u.id != derive_id("usage", u.customer, u.key):
            problems.append(f"M2: usage {u.id} is not the id derived from its customer and key")
        decision = decisions.get(u.decision_id)
        if decision is None or decision.customer != u.customer or decision.feature != u.feature:
            problems.append(
                f"M6: usage {u.id} does not match a decision of {u.customer!r} for "
                f"{u.feature!r} (decision {u.decision_id})"
            )
        settlement = completed.get(u.id)
        if settlement is not None and settlement[0] != u.decision_id:
            problems.append(f"M6: usage {u.id} was settled as decision {settlement[0]}")
    return problems


def _settlement_transfer_problems(
    d: _Data, completed: dict[int, tuple[int, tuple[int, ...]]]
) -> list[str]:
    transfers = d.ledger.transfer_by_id
    priced = {m.id for m in d.monetization}
    problems = []
    for usage_id, (_, ids) in completed.items():
        for t in ids:
            transfer = transfers.get(t)
            if transfer is None:
                problems.append(f"L6: settlement of usage {usage_id} lacks transfer {t}")
            elif transfer.user_data not in priced and metering_spec.posts(transfer):
                problems.append(
                    f"M1: transfer {t} of the settlement of usage {usage_id} names "
                    f"monetization {transfer.user_data}, which is absent"
                )
    problems += [
        f"M6: monetization {m} recorded by the settlement of usage {usage_id} is absent"
        for usage_id, ids in d.recorded.items()
        for m in ids
        if m not in priced
    ]
    return problems


def _queued_problems(d: _Data) -> list[str]:
    """Each queued usage event is as it was reported: its digest is the one its outbox entry
    keeps (before it is settled, nothing else binds it)."""
    queued = d.queued_digests
    if not queued:
        return []
    return [
        f"M6: usage {u.id} was changed after it was reported (its outbox entry keeps the "
        "digest of another report)"
        for u in d.usage
        if u.id in queued and queued[u.id] != u.digest()
    ]


def _backlog(d: _Data) -> tuple[int, int | None]:
    """(unsettled usage events, the oldest one's occurred_at), from the rows read."""
    queued = [u.occurred_at for u in d.usage if u.id in d.outbox]
    return len(queued), min(queued, default=None)


def _status_problems(d: _Ledger) -> list[str]:
    """L5: the stored status of every pending transfer is the one its journal implies (a
    status edited back to pending would let it be resolved twice)."""
    derived = ledger_spec.derived_statuses(d.transfers, d.expiries)
    if derived == d.statuses:  # the usual case, compared in one step
        return []
    ids = sorted(set(derived) | set(d.statuses))
    return [
        f"L5: transfer {i} is stored as {d.statuses.get(i, PendingStatus.NONE).name.lower()}, "
        f"its journal says {PendingStatus(derived.get(i, 0)).name.lower()}"
        for i in ids
        if int(d.statuses.get(i, 0)) != derived.get(i, 0)
    ]


def _counts(d: _Data) -> dict[str, int]:
    return {
        "usage_events": len(d.usage),
        "usage_rejections": d.rejections,
        "monetization_events": len(d.monetization),
        "transfers": len(d.ledger.transfers),
        "accounts": len(d.ledger.accounts),
        "expiries": len(d.ledger.expiries),
        "completions": len(d.completions),
        "decisions": len(d.allocations),
    }


def _totals(d: _Data) -> dict[str, int]:
    units: dict[str, int] = {}  # per layer
    amounts: dict[str, int] = {}
    for m in d.monetization:
        units[m.layer] = units.get(m.layer, 0) + m.units
        amounts[m.layer] = amounts.get(m.layer, 0) + m.amount

    def layer_sum(sums: dict[str, int], layers: Sequence[str]) -> int:
        return sum(
            n
            for layer, n in sums.items()
            if layer in layers or (layer.startswith("grant:") and "grants" in layers)
        )

    write_off = metering_spec.WRITE_OFF_LAYER
    return {
        "usage_units": sum(u.units for u in d.usage if u.id not in d.outbox),
        "monetized_units": sum(units.values()),
        "charged": sum(n for layer, n in amounts.items() if layer != write_off),
        "written_off": layer_sum(amounts, [write_off]),
        "units_free": layer_sum(units, ["windows", "allowance"]),
        "units_grants": layer_sum(units, ["grants"]),
        "units_credits": layer_sum(units, ["credits"]),
        "units_pool": layer_sum(units, ["pool", "overage"]),
    }
