"""The ledger's invariants (L1-L7) and its functional spec, each stated once.

Two forms, one statement:
- predicates over *fields* take an `ops` argument, so the same statement is evaluated on Python
  values (the engine's asserts, the tests, the auditor) and on Z3 terms (proofs/);
- predicates over *records* read plain attributes (duck-typed: engine records or database rows).

This module is stdlib-only and imports nothing from `ledger` but the constants and result codes,
so `ledger.core` can call it in its asserts without an import cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

from ledger.core.limits import AMOUNT_MAX, ID_MAX, NS_PER_SECOND, TIMESTAMP_MAX_NS
from ledger.core.ops import CONCRETE, Ops

DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2
CLOSED = 1 << 4


class AccountLike(Protocol):
    @property
    def flags(self) -> int: ...
    @property
    def ledger(self) -> int: ...
    @property
    def debits_pending(self) -> int: ...
    @property
    def debits_posted(self) -> int: ...
    @property
    def credits_pending(self) -> int: ...
    @property
    def credits_posted(self) -> int: ...


# --- L1 no negative balance; L7 bounds (one account) -----------------------------------------


def no_overdraft(
    ops: Ops, debits_guard: Any, credits_guard: Any, dp: Any, dpo: Any, cp: Any, cpo: Any
) -> Any:
    """L1: a guarded side never exceeds the other side's posted total, pending included."""
    return ops.and_(
        ops.or_(ops.not_(debits_guard), dp + dpo <= cpo),
        ops.or_(ops.not_(credits_guard), cp + cpo <= dpo),
    )


def totals_in_bounds(ops: Ops, dp: Any, dpo: Any, cp: Any, cpo: Any) -> Any:
    """L7: every total is non-negative and pending plus posted fits a signed 64-bit column."""
    return ops.and_(
        dp >= 0, dpo >= 0, cp >= 0, cpo >= 0, dp + dpo <= AMOUNT_MAX, cp + cpo <= AMOUNT_MAX
    )


def account_within_limits(a: AccountLike) -> bool:
    """L1 and L7 for one account record."""
    guard_dr = bool(a.flags & DEBITS_MUST_NOT_EXCEED_CREDITS)
    guard_cr = bool(a.flags & CREDITS_MUST_NOT_EXCEED_DEBITS)
    totals = (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
    if not totals_in_bounds(CONCRETE, *totals):
        return False
    # Without a guard flag L1 holds whatever the totals (no_overdraft is then true); skipping
    # the call keeps this cheap enough to assert on every account a batch touches.
    return not (guard_dr or guard_cr) or bool(no_overdraft(CONCRETE, guard_dr, guard_cr, *totals))


# --- L2 double entry (all accounts of a ledger) ----------------------------------------------


def ledger_totals(accounts: Iterable[AccountLike]) -> dict[int, tuple[int, int, int, int]]:
    """Per ledger: sums of debits_pending, debits_posted, credits_pending, credits_posted."""
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for a in accounts:
        s = sums[a.ledger]
        s[0] += a.debits_pending
        s[1] += a.debits_posted
        s[2] += a.credits_pending
        s[3] += a.credits_posted
    return {ledger: (s[0], s[1], s[2], s[3]) for ledger, s in sums.items()}


def double_entry(ops: Ops, dp: Any, dpo: Any, cp: Any, cpo: Any) -> Any:
    """L2 for one ledger's sums: debits equal credits, posted and pending each."""
    return ops.and_(dpo == cpo, dp == cp)


def ledgers_balance(accounts: Iterable[AccountLike]) -> list[int]:
    """The ledgers whose accounts break L2 (empty when all balance)."""
    return [
        ledger
        for ledger, sums in sorted(ledger_totals(accounts).items())
        if not double_entry(CONCRETE, *sums)
    ]


# --- L3 derivable state: replay of the journal -----------------------------------------------

PENDING, POST_PENDING, VOID_PENDING = 1 << 1, 1 << 2, 1 << 3


class TransferLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def debit_account_id(self) -> int: ...
    @property
    def credit_account_id(self) -> int: ...
    @property
    def amount(self) -> int: ...
    @property
    def pending_id(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def timestamp(self) -> int: ...


class ExpiryLike(Protocol):
    @property
    def pending_id(self) -> int: ...
    @property
    def amount(self) -> int: ...
    @property
    def timestamp(self) -> int: ...


def replay_totals(
    transfers: Iterable[TransferLike], expiries: Iterable[ExpiryLike]
) -> dict[int, tuple[int, int, int, int]]:
    """L3: each account's four totals as the fold of the journal that names it. A resolution
    of a pending transfer that is not in the journal releases nothing here (`journal_violations`
    reports it as an L5 violation)."""
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    amounts: dict[int, TransferLike] = {}
    for t in transfers:
        amounts[t.id] = t
        dr, cr = totals[t.debit_account_id], totals[t.credit_account_id]
        if t.flags & PENDING:
            dr[0] += t.amount
            cr[2] += t.amount
            continue
        if t.flags & (POST_PENDING | VOID_PENDING):
            pending = amounts.get(t.pending_id)
            released = pending.amount if pending is not None else 0
            dr[0] -= released
            cr[2] -= released
        if not t.flags & VOID_PENDING:
            dr[1] += t.amount
            cr[3] += t.amount
    for e in expiries:
        p = amounts.get(e.pending_id)
        if p is not None:
            totals[p.debit_account_id][0] -= e.amount
            totals[p.credit_account_id][2] -= e.amount
    return {k: (v[0], v[1], v[2], v[3]) for k, v in totals.items()}


def replay_mismatches(
    accounts: Iterable[AccountLike],
    transfers: Iterable[TransferLike],
    expiries: Iterable[ExpiryLike],
) -> list[int]:
    """Ids of the accounts whose totals differ from the replay of the journal (L3)."""
    replayed = replay_totals(transfers, expiries)
    bad = []
    for a in accounts:
        stored = (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        if stored != replayed.get(a.id, (0, 0, 0, 0)):  # type: ignore[attr-defined]
            bad.append(a.id)  # type: ignore[attr-defined]
    return bad


# --- L4 idempotency, L5 two-phase, L6 atomic chains, L7 bounds (journal) ----------------------


def journal_violations(
    transfers: Iterable[TransferLike], expiries: Iterable[ExpiryLike]
) -> list[str]:
    """L4, L5 and L7 on a journal: ids unique, amounts in bounds, timestamps increasing, each
    pending resolved at most once and never above its amount. One message per violation."""
    problems: list[str] = []
    seen: dict[int, TransferLike] = {}
    resolved: dict[int, str] = {}
    last_ts = 0
    for t in transfers:
        if t.id in seen:
            problems.append(f"L4: transfer id {t.id} appears twice")
        seen[t.id] = t
        if t.timestamp <= last_ts:
            problems.append(f"L7: transfer {t.id} timestamp {t.timestamp} not increasing")
        last_ts = t.timestamp
        if not 0 <= t.amount <= AMOUNT_MAX or (t.amount == 0 and not t.flags & VOID_PENDING):
            problems.append(f"L7: transfer {t.id} amount {t.amount} out of bounds")
        if t.flags & (POST_PENDING | VOID_PENDING):
            problems += _resolution_violations(t, seen, resolved)
    for e in expiries:
        problems += _resolution_violations(e, seen, resolved)
    return problems


def _resolution_violations(
    r: TransferLike | ExpiryLike, seen: dict[int, TransferLike], resolved: dict[int, str]
) -> list[str]:
    name = f"transfer {r.id}" if hasattr(r, "id") else f"expiry of {r.pending_id}"
    pending = seen.get(r.pending_id)
    if pending is None or not pending.flags & PENDING:
        return [f"L5: {name} resolves {r.pending_id}, which is not a pending transfer"]
    if r.pending_id in resolved:
        return [f"L5: {name} resolves {r.pending_id}, already {resolved[r.pending_id]}"]
    resolved[r.pending_id] = name
    is_void_or_expiry = not hasattr(r, "flags") or bool(r.flags & VOID_PENDING)
    if is_void_or_expiry and r.amount != pending.amount:
        return [f"L5: {name} releases {r.amount}, pending amount is {pending.amount}"]
    if r.amount > pending.amount:
        return [f"L5: {name} posts {r.amount} above pending amount {pending.amount}"]
    return []


def derived_statuses(
    transfers: Iterable[TransferLike], expiries: Iterable[ExpiryLike]
) -> dict[int, int]:
    """L5: the status every pending transfer must have by the journal: 2 posted, 3 voided,
    4 expired (its resolution's kind), else 1 pending (PendingStatus numbers)."""
    status: dict[int, int] = {}
    for t in transfers:
        if t.flags & PENDING:
            status[t.id] = 1
        elif t.flags & POST_PENDING:
            status[t.pending_id] = 2
        elif t.flags & VOID_PENDING:
            status[t.pending_id] = 3
    for e in expiries:
        status[e.pending_id] = 4
    return status


def chain_all_or_nothing(linked_results: Iterable[Iterable[int]]) -> bool:
    """L6 on results: in each linked chain either every event is OK or none is."""
    for chain in linked_results:
        codes = list(chain)
        oks = [code == 0 for code in codes]
        if any(oks) and not all(oks):
            return False
    return True


# --- The functional spec of one transfer ------------------------------------------------------


def transfer_accepted(ops: Ops, t: Any, pre: Any, ts: Any) -> Any:
    """Exactly when a transfer event is accepted, stated apart from the kernel's check order.

    `t` has the decoded event fields; `pre` has what the ledger holds before it:
    `exists, failed` for t.id; for both accounts `dr_exists, cr_exists, dr_ledger, cr_ledger,
    dr_closed, cr_closed, dr_debits_guard, cr_credits_guard` and their totals `dr_dp, dr_dpo,
    dr_cp, dr_cpo, cr_dp, cr_dpo, cr_cp, cr_cpo`; for the pending transfer `p_exists, p_status,
    p_amount, p_dr, p_cr, p_ledger, p_code, p_expires_at`; and `moved`, the amount that moves.
    """
    resolving = ops.or_(t.post_pending, t.void_pending)
    kinds = ops.ite(t.pending, 1, 0) + ops.ite(t.post_pending, 1, 0) + ops.ite(t.void_pending, 1, 0)
    common = ops.and_(
        t.timestamp == 0,
        ops.not_(t.reserved_flags),
        t.id != 0,
        t.id != ID_MAX,
        ops.not_(pre.exists),
        ops.not_(pre.failed),
        kinds <= 1,
        t.debit_account_id != ID_MAX,
        t.credit_account_id != ID_MAX,
        ops.or_(t.debit_account_id != t.credit_account_id, t.debit_account_id == 0),
        ops.or_(t.pending, t.timeout == 0),
        pre.dr_exists,
        pre.cr_exists,
    )
    new_money = ops.and_(
        ops.not_(resolving),
        t.debit_account_id != 0,
        t.credit_account_id != 0,
        t.pending_id == 0,
        t.amount > 0,
        t.ledger != 0,
        t.code != 0,
        pre.dr_ledger == t.ledger,
        pre.cr_ledger == t.ledger,
        ops.not_(pre.dr_closed),
        ops.not_(pre.cr_closed),
        pre.moved > 0,
        _fits_bounds(ops, t, pre, ts),
        ops.or_(ops.not_(pre.dr_debits_guard), pre.dr_dp + pre.dr_dpo + pre.moved <= pre.dr_cpo),
        ops.or_(ops.not_(pre.cr_credits_guard), pre.cr_cp + pre.cr_cpo + pre.moved <= pre.cr_dpo),
    )
    resolution = ops.and_(
        resolving,
        ops.not_(t.balancing_debit),
        ops.not_(t.balancing_credit),
        t.pending_id != 0,
        t.pending_id != ID_MAX,
        t.pending_id != t.id,
        pre.p_exists,
        pre.p_status == 1,
        ops.or_(pre.p_expires_at == 0, ts < pre.p_expires_at),
        ops.or_(t.debit_account_id == 0, t.debit_account_id == pre.p_dr),
        ops.or_(t.credit_account_id == 0, t.credit_account_id == pre.p_cr),
        ops.or_(t.ledger == 0, t.ledger == pre.p_ledger),
        ops.or_(t.code == 0, t.code == pre.p_code),
        ops.or_(
            ops.and_(
                t.post_pending,
                t.amount > 0,
                t.amount <= pre.p_amount,
                ops.not_(pre.dr_closed),
                ops.not_(pre.cr_closed),
                pre.dr_dpo + t.amount <= AMOUNT_MAX,
                pre.cr_cpo + t.amount <= AMOUNT_MAX,
            ),
            ops.and_(t.void_pending, ops.or_(t.amount == 0, t.amount == pre.p_amount)),
        ),
    )
    return ops.and_(common, ops.or_(new_money, resolution))


def _fits_bounds(ops: Ops, t: Any, pre: Any, ts: Any) -> Any:
    """L7 for a new single-phase or pending transfer: no total and no timeout overflows."""
    m = pre.moved
    return ops.and_(
        ops.or_(
            ops.not_(t.pending),
            ops.and_(
                pre.dr_dp + m <= AMOUNT_MAX,
                pre.cr_cp + m <= AMOUNT_MAX,
                t.timeout * NS_PER_SECOND <= TIMESTAMP_MAX_NS - ts,
            ),
        ),
        ops.or_(t.pending, ops.and_(pre.dr_dpo + m <= AMOUNT_MAX, pre.cr_cpo + m <= AMOUNT_MAX)),
        pre.dr_dp + pre.dr_dpo + m <= AMOUNT_MAX,
        pre.cr_cp + pre.cr_cpo + m <= AMOUNT_MAX,
    )


def moved_amount(ops: Ops, t: Any, pre: Any) -> Any:
    """The amount an accepted transfer moves: a void moves the pending amount, a balancing
    transfer at most the room left on the balanced side, anything else exactly `t.amount`."""
    debit_room = pre.dr_cpo - pre.dr_dpo - pre.dr_dp
    credit_room = pre.cr_dpo - pre.cr_cpo - pre.cr_cp
    m = ops.ite(t.void_pending, pre.p_amount, t.amount)
    m = ops.ite(ops.and_(t.balancing_debit, debit_room < m), _at_least_zero(ops, debit_room), m)
    return ops.ite(
        ops.and_(t.balancing_credit, credit_room < m), _at_least_zero(ops, credit_room), m
    )


def _at_least_zero(ops: Ops, value: Any) -> Any:
    return ops.ite(value < 0, 0, value)


def transfer_effect(ops: Ops, t: Any, pre: Any, post: Any) -> Any:
    """What an accepted transfer changes on its two accounts (the frame is stated in proofs/):
    a single-phase transfer adds `moved` to posted; a pending one to pending; a post releases
    the pending amount and adds `moved` to posted; a void releases the pending amount."""
    single = ops.not_(ops.or_(t.pending, t.post_pending, t.void_pending))
    resolving = ops.or_(t.post_pending, t.void_pending)
    released = ops.ite(resolving, pre.p_amount, 0)
    to_pending = ops.ite(t.pending, pre.moved, 0)
    to_posted = ops.ite(ops.or_(single, t.post_pending), pre.moved, 0)
    return ops.and_(
        post.dr_dp == pre.dr_dp - released + to_pending,
        post.cr_cp == pre.cr_cp - released + to_pending,
        post.dr_dpo == pre.dr_dpo + to_posted,
        post.cr_cpo == pre.cr_cpo + to_posted,
        post.dr_cpo == pre.dr_cpo,
        post.cr_dpo == pre.cr_dpo,
    )
