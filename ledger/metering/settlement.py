"""Usage to money: report usage (durably, with an outbox entry), then settle it.

Settling a usage event completes its decision: holds are posted up to what was used and the
rest voided, an excess goes through the waterfall at settlement time, what nothing covers is
written off; the monetization events (one per layer), the ledger transfers (each naming its
monetization event) and the completion commit in one transaction with the outbox entry's
removal. Every id is derived from the decision and the layer, so settling again, after a crash
or on another worker, writes nothing new (M2).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ledger.core.flags import TransferFlags
from ledger.core.results import Result
from ledger.core.types import PendingStatus, Transfer
from ledger.metering.allocate import fill_units
from ledger.metering.completion import Book, excess_units, kept_units
from ledger.metering.decision import Completion, Decision
from ledger.metering.errors import (
    CompletionConflictError,
    InvalidRequestError,
    MeteringError,
    UnknownDecisionError,
    UsageChangedError,
)
from ledger.metering.ids import derive_id
from ledger.metering.records import Monetization, Rejection, UsageEvent
from ledger.metering.tables import Cursor
from ledger.store.base import Rollback, Then, TxView

if TYPE_CHECKING:
    from ledger.metering.meter import Meter

_LINKED = int(TransferFlags.LINKED)
_SETTLED = (Result.OK, Result.EXISTS)
UNITS_MAX = 10**12


class UsageRejectedError(MeteringError):
    """A usage report was refused and recorded as rejected; `reason` is the stable code."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{message}; the report was recorded as rejected ({reason})")


class UsageConflictError(UsageRejectedError):
    """The key was reported before with a different body."""


@dataclass(frozen=True, slots=True)
class Report:
    usage: UsageEvent
    duplicate: bool  # the same key and body were reported before: nothing new was written


def report_usage(
    meter: Meter,
    customer: str,
    feature: str,
    units: int,
    key: str,
    decision_id: int,
    occurred_at: int,
    now: int,
) -> Report:
    """Record a usage event and its outbox entry in one transaction (or the rejection)."""
    body = {
        "customer": customer,
        "feature": feature,
        "units": units,
        "key": key,
        "decision_id": decision_id,
        "occurred_at": occurred_at,
    }
    [outcome] = report_usage_batch(meter, [body], now)
    if isinstance(outcome, MeteringError):
        raise outcome
    return outcome


def report_usage_batch(
    meter: Meter, bodies: Sequence[dict[str, Any]], now: int
) -> list[Report | MeteringError]:
    """Record many usage reports in one transaction: for each, its Report or the error that
    refused it (every refusal is recorded as a rejection). Each body has the keys customer,
    feature, units, key, decision_id and occurred_at."""
    if type(now) is not int or not 0 <= now <= 2**63 - 1:
        raise InvalidRequestError("now", f"must be an integer of ns from 0 to 2**63-1, not {now!r}")
    outcomes: list[Report | MeteringError] = []
    named = {b.get("customer") for b in bodies if isinstance(b.get("customer"), str)}
    if any(c not in meter.registry.customers for c in named):
        meter.refresh()  # before the transaction: other processes may have added them
    shapes = [_shape_problem(body) for body in bodies]

    def write(cur: Cursor) -> None:
        outcomes[:] = _record_usage(meter, cur, bodies, shapes, now)

    meter.tables.write(meter.store, now, write)
    return outcomes


def _shape_problem(body: dict[str, Any]) -> tuple[str, str] | None:
    missing = {"customer", "feature", "units", "key", "decision_id", "occurred_at"} - set(body)
    if missing:
        return sorted(missing)[0], "is missing"
    for field, low, high in (
        ("units", 0, UNITS_MAX),
        ("decision_id", 1, 2**63 - 2),
        ("occurred_at", 0, 2**63 - 1),
    ):
        value = body[field]
        if type(value) is not int or not low <= value <= high:
            return field, f"must be an integer between {low} and {high}, not {value!r}"
    for field in ("customer", "feature", "key"):
        value = body[field]
        if not isinstance(value, str) or not 0 < len(value) <= 128 or not value.isprintable():
            return field, "must be a printable string of 1 to 128 characters"
    return None


_Head = tuple[str, str, bool]  # a decision's customer, feature and whether it was allowed


def _record_usage(
    meter: Meter,
    cur: Cursor,
    bodies: Sequence[dict[str, Any]],
    shapes: Sequence[tuple[str, str] | None],
    now: int,
) -> list[Report | MeteringError]:
    """Inside the write transaction: check each well-formed report against what is recorded
    (read for the whole batch in a few queries) and against the reports before it, then
    write the new usage events with their outbox entries, and the rejections."""
    tables = meter.tables
    valid = [b for b, shape in zip(bodies, shapes, strict=True) if shape is None]
    heads = _decision_heads(meter, cur, [b["decision_id"] for b in valid])
    known = tables.known_usage(
        cur, [(b["customer"], b["key"]) for b in valid], [b["decision_id"] for b in valid]
    )
    by_key = {(u.customer, u.key): u for u in known}
    by_decision = {u.decision_id: u for u in known}
    outcomes: list[Report | MeteringError] = []
    new: list[UsageEvent] = []
    rejected: list[Rejection] = []
    for body, shape in zip(bodies, shapes, strict=True):
        if shape is not None:
            rejected.append(_rejection(body, "invalid", now))
            outcomes.append(
                InvalidRequestError(shape[0], f"{shape[1]} (usage recorded as rejected)")
            )
            continue
        outcome = _checked_usage(meter, heads, by_key, by_decision, body, now)
        if isinstance(outcome, UsageRejectedError):
            rejected.append(_rejection(body, outcome.reason, now))
        elif not outcome.duplicate:
            u = outcome.usage
            new.append(u)
            by_key[(u.customer, u.key)] = by_decision[u.decision_id] = u
        outcomes.append(outcome)
    tables.insert_usage(cur, new)
    tables.reject(cur, rejected)
    return outcomes


def _decision_heads(meter: Meter, cur: Cursor, ids: Sequence[int]) -> dict[int, _Head]:
    cached = meter.registry.decisions_by_id
    heads = {i: (d.customer, d.feature, d.allowed) for i in ids if (d := cached.get(i)) is not None}
    heads.update(meter.tables.decision_heads(cur, [i for i in ids if i not in heads]))
    return heads


def _checked_usage(
    meter: Meter,
    heads: dict[int, _Head],
    by_key: dict[tuple[str, str], UsageEvent],
    by_decision: dict[int, UsageEvent],
    body: dict[str, Any],
    now: int,
) -> Report | UsageRejectedError:
    """The report's outcome given what is recorded: a new usage event, a duplicate of the one
    under its key, or why it is refused."""
    customer, key = body["customer"], body["key"]
    problem = _usage_problem(meter, heads.get(body["decision_id"]), body)
    if problem is not None:
        return problem
    usage = UsageEvent(
        derive_id("usage", customer, key),
        customer,
        key,
        body["feature"],
        body["units"],
        body["occurred_at"],
        body["decision_id"],
        now,
    )
    earlier = by_key.get((customer, key))
    if earlier is not None:
        if earlier.body() == usage.body():
            return Report(earlier, duplicate=True)
        return UsageConflictError(
            "key_reused",
            f"usage key {key!r} of {customer!r} was reported with "
            f"units={earlier.units}, decision {earlier.decision_id}; use a new key",
        )
    other = by_decision.get(body["decision_id"])
    if other is not None:
        return UsageRejectedError(
            "decision_already_reported",
            f"decision {body['decision_id']} already has usage {other.key!r}",
        )
    return Report(usage, duplicate=False)


def _usage_problem(
    meter: Meter, head: _Head | None, body: dict[str, Any]
) -> UsageRejectedError | None:
    decision_id = body["decision_id"]
    if body["customer"] not in meter.registry.customers:
        return UsageRejectedError("unknown_customer", f"unknown customer {body['customer']!r}")
    if head is None or head[0] != body["customer"]:
        return UsageRejectedError(
            "unknown_decision",
            f"customer {body['customer']!r} has no decision {decision_id}",
        )
    if not head[2]:
        return UsageRejectedError("decision_refused", f"decision {decision_id} was a refusal")
    if head[1] != body["feature"]:
        return UsageRejectedError(
            "feature_mismatch",
            f"decision {decision_id} was for {head[1]!r}, not {body['feature']!r}",
        )
    return None


def _rejection(body: dict[str, Any], reason: str, now: int) -> Rejection:
    text = json.dumps(body, sort_keys=True, default=repr)
    customer = body["customer"] if isinstance(body["customer"], str) else repr(body["customer"])
    key = body["key"] if isinstance(body["key"], str) else repr(body["key"])
    return Rejection(
        derive_id("rejection", reason, text), customer[:128], key[:128], reason, text, now
    )


# -- settlement ------------------------------------------------------------------------------


class _Funds:
    """Available micro-credits per account inside the settlement's transaction, kept current
    as the batch's earlier settlements are booked (they are not applied yet)."""

    def __init__(self, view: TxView) -> None:
        self._view = view
        self._available: dict[int, int] = {}

    def available(self, ids: Sequence[int]) -> dict[int, int]:
        missing = list({i: None for i in ids if i not in self._available})
        if missing:
            for a in self._view.accounts(missing):
                self._available[a.id] = a.available
        return {i: self._available[i] for i in ids if i in self._available}

    def adjust(self, account_id: int, delta: int) -> None:
        if account_id not in self._available:
            self.available([account_id])
        self._available[account_id] += delta


@dataclass(slots=True)
class _Settling:
    usage: UsageEvent
    decision: Decision
    book: Book | None  # None: settled before; only the outbox entry remains to drop


def settle(meter: Meter, usage_ids: Sequence[int], now: int) -> list[Completion]:
    """Settle these usage events in one transaction; those settled before are skipped.
    If the batch cannot commit whole, each is settled in a transaction of its own."""
    return _settle_chosen(meter, _just(list(usage_ids)), now)


def _settle_chosen(
    meter: Meter, choose: Callable[[Cursor], Sequence[int]], now: int
) -> list[Completion]:
    """Settle the usage events `choose` names, read inside the settling transaction, in that
    transaction; if it cannot commit whole, each of them in a transaction of its own."""
    chosen: list[int] = []
    done = _settle_batch(meter, choose, now, chosen)
    if done is not None:
        return done
    out: list[Completion] = []
    for usage_id in chosen:
        one = _settle_batch(meter, _just([usage_id]), now, [])
        if one is None:
            raise MeteringError(
                f"the ledger refused the settlement of usage {usage_id}; it stays in the outbox"
            )
        out += one
    return out


def _just(usage_ids: list[int]) -> Callable[[Cursor], Sequence[int]]:
    return lambda cur: usage_ids


def _settle_batch(
    meter: Meter, choose: Callable[[Cursor], Sequence[int]], now: int, chosen: list[int]
) -> list[Completion] | None:
    """One transaction: `choose` the usage events (their ids are left in `chosen`), book
    them and write everything; None if the ledger refused the batch (nothing written)."""
    settling: list[_Settling] = []
    committed: list[Completion] = []

    def build(view: TxView) -> tuple[list[Transfer], Then]:
        chosen[:] = list(dict.fromkeys(choose(view.cursor)))
        settling[:] = _prepare(meter, view, chosen, now)
        events: list[Transfer] = []
        for item in settling:
            if item.book is not None:
                events += _chained(item.book.events)
        return events, then

    def then(results: list[Result], cur: Cursor) -> None:
        if any(r not in _SETTLED for r in results):
            raise Rollback
        committed.clear()
        rows: list[Monetization] = []
        for item in settling:
            if item.book is not None:
                completion = item.book.completion(item.usage.units, item.usage.id, now)
                committed.append(completion)
                rows += _monetization(item, completion)
        meter.tables.record_settlements(cur, [i.usage.id for i in settling], committed, rows)
        # Before the commit, so that no crash after it leaves unused units taken; idempotent,
        # so a settlement that then fails to commit and runs again gives back nothing twice.
        for item in settling:
            if item.book is not None:
                meter.keep_free(item.decision, item.book.free_left, now)

    with meter.lock:
        meter.refresh()  # grants, customers and plans added by other processes
        # Holds due by `now` expire first, so the funds the batch reads include what they
        # released (the view already reports them expired).
        meter.store.expire_due(now)
        committed_ok = False
        try:
            results = meter.store.transact(now, build)
            committed_ok = bool(settling) and all(r in _SETTLED for r in results)
        finally:
            if not committed_ok:  # nothing settled: the excesses' window units are free again
                for item in settling:
                    if item.book is not None and item.book.excess_takes:
                        meter.release_excess(item.decision.decision_id, item.book.excess_takes)
        if any(r not in _SETTLED for r in results):
            return None
    return committed


def _chained(events: list[Transfer]) -> list[Transfer]:
    if len(events) < 2:
        return events
    return [replace(e, flags=e.flags | _LINKED) for e in events[:-1]] + events[-1:]


def _prepare(meter: Meter, view: TxView, usage_ids: Sequence[int], now: int) -> list[_Settling]:
    """Read everything the batch needs in a few queries, then book each settlement in turn
    (funds kept current across the batch)."""
    inputs = meter.tables.settlement_inputs(view.cursor, usage_ids)
    for item in inputs:  # never charge for what was not reported
        queued = item.queued_digest
        if not item.settled and queued is not None and queued != item.usage.digest():
            raise UsageChangedError(item.usage.id)
    held = [p for _, d, done, _ in inputs if not done for p in d.parts if p.transfer_id]
    statuses = view.pending_statuses([p.transfer_id for p in held])
    funds = _Funds(view)
    funds.available([p.account_id for p in held])  # one read for the batch's held accounts
    return [
        _Settling(u, d, None if done else _book(meter, statuses, funds, d, u.units, now))
        for u, d, done, _ in inputs
    ]


def _book(
    meter: Meter,
    statuses: dict[int, PendingStatus],
    funds: _Funds,
    d: Decision,
    actual: int,
    now: int,
) -> Book:
    """What completing `d` with `actual` units at `now` writes (M1, M4)."""
    book = Book(d)
    excess = excess_units(d.parts, actual)
    for part, keep in zip(d.parts, kept_units(d.parts, actual), strict=True):
        if not part.transfer_id:
            book.free_release(part, part.units - keep)
            book.free_kept(part.layer, keep)
        elif statuses[part.transfer_id] is not PendingStatus.PENDING:
            excess += keep  # the hold lapsed: what it would have posted is charged afresh
        else:
            book.resolve(part, keep)
            funds.adjust(part.account_id, part.amount - keep * d.price)
    if excess:
        _charge_excess(meter, funds, book, d, excess, now)
    return book


def _charge_excess(
    meter: Meter, funds: _Funds, book: Book, d: Decision, excess: int, now: int
) -> None:
    """The excess goes through the waterfall at `now`; what no layer covers is written off."""
    r = meter.request_for(d, now)
    meter.forget_excess(r)  # a killed attempt's take is not room used
    windows, allowance, money = meter.views(r, funds.available)
    names, rooms = meter.rooms(r, windows, allowance, money)
    parts = dict(zip(names, fill_units(excess, rooms), strict=True))
    taken = meter.take_excess(r, windows, allowance, parts)
    if taken:
        book.excess_takes = taken
    for name in ("windows", "allowance"):
        if taken is None:
            parts.pop(name, None)
        book.free_kept(name, parts.get(name, 0))
    book.excess(parts, money, excess)
    for m in money:
        funds.adjust(m.account_id, -parts.get(m.layer, 0) * d.price)


def _monetization(item: _Settling, completion: Completion) -> list[Monetization]:
    d, u = item.decision, item.usage
    return [
        Monetization(
            c.monetization_id,
            u.id,
            d.decision_id,
            d.customer,
            c.layer,
            c.units,
            d.price_version,
            d.price,
            c.amount,
            c.account_id,
        )
        for c in completion.charges
    ]


def complete(meter: Meter, decision_id: int, actual: int, now: int) -> Completion:
    """Report `actual` units for the decision and settle them now."""
    decision = meter.decision(decision_id)
    if decision is None or not decision.allowed:
        raise UnknownDecisionError(
            f"no allowed decision has id {decision_id}; only allowed decisions complete"
        )
    prior = meter.completion(decision_id)
    if prior is None:
        reported = meter.tables.read(
            meter.store, lambda cur: meter.tables.usage_for_decision(cur, decision_id)
        )
        if reported is None:
            key = f"complete-{decision_id}"
            at = max(now, decision.now)
            reported = report_usage(
                meter, decision.customer, decision.feature, actual, key, decision_id, at, now
            ).usage
        settled = settle(meter, [reported.id], now) if reported.units == actual else []
        prior = settled[0] if settled else meter.completion(decision_id)
        if prior is None:
            prior = Completion(decision_id, reported.units, usage_id=reported.id)
    if prior.actual_units != actual:
        raise CompletionConflictError(
            f"decision {decision_id} was completed with {prior.actual_units} unit(s), not "
            f"{actual}; nothing was changed"
        )
    return prior


def settle_pending(meter: Meter, worker: str, now: int, *, limit: int = 1000) -> int:
    """Settle up to `limit` unsettled usage events that nobody holds; returns how many this
    call settled.

    The events are picked inside the transaction that settles them, after the writers' lock
    every batch takes first, so two workers never pick the same events and a worker killed
    mid-batch leaves nothing held. A read first checks that there is something to pick, so an
    idle poll never takes the writers' lock. The pick starts at a place in the outbox (by
    usage id) drawn from the worker and `now`. No lease is taken; a lease taken with
    `MeterTables.claim` (as `tollgate serve`'s worker does) is respected."""
    start = derive_id("pick", worker, now)

    def pick(cur: Cursor) -> list[int]:
        return meter.tables.claimable(cur, now, limit, start)

    if not meter.tables.read(meter.store, pick):
        return 0
    return len(_settle_chosen(meter, pick, now))


def _measure_lag(meter: Meter, clock: Callable[[], int], stats: WorkerStats) -> int:
    """Set `stats.lag_ns` from the backlog; returns how many events wait."""
    backlog, oldest = meter.backlog()
    stats.lag_ns = 0 if oldest is None else max(0, clock() - oldest)
    return backlog


@dataclass(slots=True)
class WorkerStats:
    """What a settlement worker did: events settled, batches, seconds, and the lag (ns from
    the oldest unsettled event's occurred_at to now; 0 when nothing waits) after its last
    batch."""

    settled: int = 0
    batches: int = 0
    seconds: float = 0.0
    lag_ns: int | None = None

    @property
    def per_second(self) -> float:
        return self.settled / self.seconds if self.seconds else 0.0


def run_worker(
    meter: Meter,
    worker: str,
    clock: Callable[[], int],
    *,
    limit: int = 1000,
    until_idle: bool = True,
    stop: Callable[[], bool] = lambda: False,
    idle: Callable[[], None] = lambda: None,
) -> WorkerStats:
    """Stream the outbox: pick, settle, repeat. Returns when the outbox is empty (with
    `until_idle`) or when `stop()` says so; `idle()` runs between empty polls (e.g. a sleep).
    Safe to run in any number of processes and to kill at any moment: a killed worker's batch
    rolls back whole and is picked again, and settling twice writes nothing twice. The lag is
    measured whenever a poll finds nothing to settle, and after the last batch (counting the
    backlog reads the whole outbox, so not after every batch)."""
    stats = WorkerStats()
    started = time.perf_counter()
    measured = False
    while not stop():
        count = settle_pending(meter, worker, clock(), limit=limit)
        stats.settled += count
        if count:
            stats.batches += 1
            measured = False
            continue
        backlog = _measure_lag(meter, clock, stats)
        measured = True
        if backlog == 0 and until_idle:
            break
        idle()
    if not measured:
        _measure_lag(meter, clock, stats)
    stats.seconds = time.perf_counter() - started
    return stats
