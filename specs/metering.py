"""The metering layer's invariants (M3 waterfall order, M5 windows), each stated once.

The allocation predicates read plain values: a request, the layers' rooms and the parts a
waterfall took, in the plan's order (ints and sequences of ints). They take an optional `ops`
(anything with `ite/and_/or_/not_`, as `ledger.core.ops.ConcreteOps` and `proofs.z3ops.Z3Ops`
have), so the same statement is evaluated on Python values (the default, `PLAIN`: the tests, the
auditor) and on Z3 terms (proofs/obligations_allocation.py proves them of
`ledger.metering.allocate` for unbounded integers). On Python values they return a bool.

This module is stdlib-only and imports nothing from `ledger`, so the metering code can call it
in its asserts without an import cycle.

M3, as the design states it ("usage is drawn from layers in the plan's order; no credit is spent
while an earlier layer still covers the request") and the decision waterfall's "spill, all or
nothing" rule, is the conjunction of:
- `parts_within_rooms`: no layer gives more than its room, nor less than nothing;
- `waterfall_order`: a layer gives something only when every earlier layer gave all it had;
- `allocation_complete` (a decision: all or nothing) or `fill_complete` (what a completion's
  excess takes: as much as the layers have, up to the request).
Together they determine the parts uniquely (the greedy split), so an over-cautious allocation
(refusing what fits, taking less than asked) breaks them just as an overdraw does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Logic(Protocol):
    """The part of `ledger.core.ops.Ops` the predicates use (structural: any `Ops` is one)."""

    def ite(self, condition: Any, then: Any, otherwise: Any) -> Any: ...
    def and_(self, *conditions: Any) -> Any: ...
    def or_(self, *conditions: Any) -> Any: ...
    def not_(self, condition: Any) -> Any: ...


class PlainLogic:
    """`Logic` on Python bools (what `ledger.core.ops.ConcreteOps` does, restated here so that
    specs/ imports nothing of the ledger)."""

    def ite(self, condition: Any, then: Any, otherwise: Any) -> Any:
        return then if condition else otherwise

    def and_(self, *conditions: Any) -> Any:
        return all(conditions)

    def or_(self, *conditions: Any) -> Any:
        return any(conditions)

    def not_(self, condition: Any) -> Any:
        return not condition


PLAIN = PlainLogic()


def total(values: Sequence[Any]) -> Any:
    """The sum of `values` (0 for none), on ints or on Z3 terms alike."""
    result: Any = 0
    for value in values:
        result = result + value
    return result


# --- M3 waterfall order -------------------------------------------------------------------------


def parts_within_rooms(rooms: Sequence[Any], parts: Sequence[Any], ops: Logic = PLAIN) -> Any:
    """M3 (a): one part per layer, and each part is between 0 and that layer's room."""
    if len(parts) != len(rooms):
        return ops.and_(False)
    return ops.and_(
        *[ops.and_(part >= 0, part <= room) for part, room in zip(parts, rooms, strict=True)]
    )


def waterfall_order(rooms: Sequence[Any], parts: Sequence[Any], ops: Logic = PLAIN) -> Any:
    """M3 (b): a layer is drawn from only when every earlier layer is full: if part j > 0, then
    part i == room i for every i < j (no later layer is spent while an earlier one has room)."""
    if len(parts) != len(rooms):
        return ops.and_(False)
    return ops.and_(
        *[
            ops.or_(parts[j] <= 0, ops.and_(*[parts[i] == rooms[i] for i in range(j)]))
            for j in range(len(parts))
        ]
    )


def allocation_allowed(request: Any, rooms: Sequence[Any]) -> Any:
    """M3 (c): a decision is allowed exactly when the layers together have room for it."""
    return request <= total(rooms)


def allocation_complete(
    request: Any, rooms: Sequence[Any], allowed: Any, parts: Sequence[Any], ops: Logic = PLAIN
) -> Any:
    """M3 (c), all or nothing: allowed exactly when `allocation_allowed`; an allowed decision's
    parts sum to the request; a refused one takes nothing from any layer."""
    fits = allocation_allowed(request, rooms)
    return ops.and_(
        ops.or_(ops.and_(allowed, fits), ops.and_(ops.not_(allowed), ops.not_(fits))),
        ops.or_(ops.not_(allowed), total(parts) == request),
        ops.or_(allowed, ops.and_(*[part == 0 for part in parts])),
    )


def fill_complete(
    request: Any, rooms: Sequence[Any], parts: Sequence[Any], ops: Logic = PLAIN
) -> Any:
    """M3 (c) for a fill (a completion's excess): the parts sum to min(request, sum of rooms),
    so what the layers cannot cover is exactly request - sum(parts)."""
    available = total(rooms)
    return total(parts) == ops.ite(request <= available, request, available)


def allocation_ok(
    request: Any, rooms: Sequence[Any], allowed: Any, parts: Sequence[Any], ops: Logic = PLAIN
) -> Any:
    """M3 for a decision: all of (a), (b) and (c)."""
    return ops.and_(
        parts_within_rooms(rooms, parts, ops),
        waterfall_order(rooms, parts, ops),
        allocation_complete(request, rooms, allowed, parts, ops),
    )


def fill_ok(request: Any, rooms: Sequence[Any], parts: Sequence[Any], ops: Logic = PLAIN) -> Any:
    """M3 for a fill: all of (a), (b) and (c)."""
    return ops.and_(
        parts_within_rooms(rooms, parts, ops),
        waterfall_order(rooms, parts, ops),
        fill_complete(request, rooms, parts, ops),
    )


# --- M5 windows ---------------------------------------------------------------------------------


def window_within_limit(used: Any, limit: Any, ops: Logic = PLAIN) -> Any:
    """M5: the units counted in a rate window are never negative and never exceed its limit."""
    return ops.and_(used >= 0, used <= limit)


# --- M1, M2, M4, M6 on records (the auditor reads database rows through these) -----------------
#
# The records are duck-typed: anything with the named attributes (the engine's records, rows
# read from SQLite or PostgreSQL). Codes and flags are restated here (stdlib only); tests pin them
# to ledger.metering.accounts and ledger.core.flags.

FUNDING_CODES = frozenset({1, 2, 3, 4})  # credits, grant, pool, overage accounts
BREAKAGE_TRANSFER = 8  # an expired grant's remainder: a debit of a grant with no usage
WRITE_OFF_LAYER = "write_off"
FREE_LAYERS = frozenset({"windows", "allowance"})
PENDING_FLAG, VOID_FLAG = 1 << 1, 1 << 3


def posts(t: Any) -> bool:
    """Whether a transfer moved posted money (not a hold, not a void)."""
    return not t.flags & (PENDING_FLAG | VOID_FLAG)


def m1_debits_equal_usage(
    monetization: Sequence[Any], transfers: Sequence[Any], funding_accounts: frozenset[int]
) -> list[str]:
    """M1: for every monetization event the posted transfers naming it (debits of the
    customer's funds plus its write-off) add up to its amount; no posted debit of a funding
    account lacks exactly one monetization event (breakage aside)."""
    by_id = {m.id: m for m in monetization}
    tagged: dict[int, int] = {}
    misdirected: list[str] = []
    unpriced: list[str] = []
    for t in transfers:  # one pass: journals are long
        if not posts(t):
            continue
        tagged[t.user_data] = tagged.get(t.user_data, 0) + t.amount
        m = by_id.get(t.user_data)
        if m is not None and t.debit_account_id != m.account_id:
            misdirected.append(
                f"M1: transfer {t.id} names monetization {t.user_data} but debits account "
                f"{t.debit_account_id}, not {m.account_id}"
            )
        elif m is None and t.debit_account_id in funding_accounts and t.code != BREAKAGE_TRANSFER:
            unpriced.append(
                f"M1: transfer {t.id} debits funding account {t.debit_account_id} with no "
                f"monetization event (user_data {t.user_data})"
            )
    problems = [
        f"M1: monetization {m.id} ({m.layer}) priced {m.amount}, transfers naming it "
        f"moved {tagged.get(m.id, 0)}"
        for m in monetization
        if tagged.get(m.id, 0) != m.amount
    ]
    problems += misdirected
    problems += [
        f"M1: monetization {m.id} ({m.layer}) amount {m.amount} is not {m.units} units at "
        f"{m.price}" + (" (a free layer is priced 0)" if m.layer in FREE_LAYERS else "")
        for m in monetization
        if m.amount != (0 if m.layer in FREE_LAYERS else m.units * m.price)
    ]
    return problems + unpriced


def m2_settled_once(
    usage: Sequence[Any],
    monetization: Sequence[Any],
    completions: Sequence[Any],
    derive: Any,
) -> list[str]:
    """M2: a usage event is settled at most once, and every id settlement wrote is the one
    derived from its decision and layer (so a redelivery names the same transfers)."""
    problems = []
    per_decision: dict[int, int] = {}
    for u in usage:
        per_decision[u.decision_id] = per_decision.get(u.decision_id, 0) + 1
    problems += [f"M2: decision {d} has {n} usage events" for d, n in per_decision.items() if n > 1]
    problems += [
        f"M2: monetization {m.id} is not the id derived from decision {m.decision_id} and "
        f"layer {m.layer!r}"
        for m in monetization
        if m.id != derive("monetization", m.decision_id, m.layer)
    ]
    settled: dict[int, int] = {}
    for c in completions:
        settled[c.usage_id] = settled.get(c.usage_id, 0) + 1
    problems += [f"M2: usage {u} settled {n} times" for u, n in settled.items() if n > 1]
    return problems


def m4_write_offs(monetization: Sequence[Any], write_off_account: Any) -> list[str]:
    """M4: what the customer's funds could not cover is written off and counted: the
    write-off account's posted debits equal the write-off monetization events' amounts."""
    recorded = sum(m.amount for m in monetization if m.layer == WRITE_OFF_LAYER)
    if write_off_account is None:
        return [] if recorded == 0 else [f"M4: write-offs of {recorded} but no write-off account"]
    if write_off_account.debits_posted != recorded:
        return [
            f"M4: write-off account {write_off_account.id} debited "
            f"{write_off_account.debits_posted}, write-off monetization events total {recorded}"
        ]
    return []


def monetized_units(monetization: Sequence[Any]) -> dict[int, int]:
    """The units monetized per usage event id."""
    units: dict[int, int] = {}
    for m in monetization:
        units[m.usage_id] = units.get(m.usage_id, 0) + m.units
    return units


def m6_reconciliation(
    usage: Sequence[Any], monetization: Sequence[Any], unsettled: frozenset[int]
) -> list[str]:
    """M6: every settled usage event joins monetization events whose units add up to its
    units; every monetization event joins its usage event; an unsettled one has none."""
    units = monetized_units(monetization)
    by_usage = {u.id: u for u in usage}
    problems = []
    for m in monetization:
        u = by_usage.get(m.usage_id)
        if u is None:
            problems.append(f"M6: monetization {m.id} names usage {m.usage_id}, which is absent")
        elif m.decision_id != u.decision_id or m.customer != u.customer:
            problems.append(f"M6: monetization {m.id} does not match usage {u.id}")
    for u in usage:
        got = units.get(u.id, 0)
        if u.id in unsettled:
            if got:
                problems.append(f"M6: usage {u.id} is unsettled but has monetization events")
        elif got != u.units:
            problems.append(f"M6: usage {u.id} has {u.units} units, monetized {got}")
    return problems
