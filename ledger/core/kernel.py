"""The transition kernel: the ledger's semantics, written once, run two ways.

Every function here is written over an `Ops` value and never branches on data with Python's own
`if`/`and`/`or`/`not`/`in` (tests/test_tidy.py enforces it). Run with `ConcreteOps` it is the
reference ledger that the fast engine is tested against; run with `Z3Ops` it is what proofs/
proves. The three steps are `create_account`, `create_transfer` and `expire_pending`; `apply_chain`
composes steps into an all-or-nothing linked chain.

A step first chooses its result code from an ordered list of checks (the first that holds wins),
then writes every effect guarded by `ok`, so a rejected event leaves every map as it was except the
remembered failure of a transient result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.core.limits import AMOUNT_MAX, ID_MAX, NS_PER_SECOND, TIMESTAMP_MAX_NS
from ledger.core.ops import Ops, TotalMap
from ledger.core.results import TRANSIENT_RESULTS, Result

# Status of a pending transfer, stored under the pending transfer's own id.
STATUS_NONE = 0
STATUS_PENDING = 1
STATUS_POSTED = 2
STATUS_VOIDED = 3
STATUS_EXPIRED = 4


@dataclass(frozen=True, slots=True)
class KernelState:
    """The whole ledger as total maps (Python `TotalMap`s or Z3 arrays).

    Attributes:
        account_*: per account id; `account_exists` is False for ids never created.
        debits_pending .. credits_posted: the four totals per account id.
        transfer_*: the stored (resolved) body of each created transfer, by transfer id.
        transfer_status: for a pending transfer, whether it is pending, posted, voided or expired.
        failed: ids whose transfer failed with a transient result (remembered forever).
        ledger_*: ghost totals per ledger, the sum of the account totals of that ledger.
        timestamp: the last timestamp the ledger assigned.
    """

    account_exists: Any
    account_ledger: Any
    account_code: Any
    account_user_data: Any
    account_flags: Any
    account_debits_guard: Any
    account_credits_guard: Any
    account_closed: Any
    account_timestamp: Any
    debits_pending: Any
    debits_posted: Any
    credits_pending: Any
    credits_posted: Any
    transfer_exists: Any
    transfer_debit_account_id: Any
    transfer_credit_account_id: Any
    transfer_amount: Any
    transfer_pending_id: Any
    transfer_timeout: Any
    transfer_ledger: Any
    transfer_code: Any
    transfer_user_data: Any
    transfer_flags: Any
    transfer_timestamp: Any
    transfer_expires_at: Any
    transfer_status: Any
    failed: Any
    ledger_debits_pending: Any
    ledger_debits_posted: Any
    ledger_credits_pending: Any
    ledger_credits_posted: Any
    timestamp: Any


BOOL_FIELDS = frozenset(
    {
        "account_exists",
        "account_debits_guard",
        "account_credits_guard",
        "account_closed",
        "transfer_exists",
        "failed",
    }
)
MAP_FIELDS = tuple(f.name for f in dataclasses.fields(KernelState) if f.name != "timestamp")


def empty_state() -> KernelState:
    """The initial ledger (Init): no accounts, no transfers, every total zero."""
    maps = {name: TotalMap(False if name in BOOL_FIELDS else 0) for name in MAP_FIELDS}
    return KernelState(timestamp=0, **maps)


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """An account to create, with its flags decoded. Fields are ints/bools or Z3 terms."""

    id: Any
    ledger: Any
    code: Any
    user_data: Any
    linked: Any
    debits_guard: Any
    credits_guard: Any
    history: Any
    closed: Any
    reserved_flags: Any
    debits_pending: Any
    debits_posted: Any
    credits_pending: Any
    credits_posted: Any
    timestamp: Any


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """A transfer to create, with its flags decoded. Fields are ints/bools or Z3 terms."""

    id: Any
    debit_account_id: Any
    credit_account_id: Any
    amount: Any
    pending_id: Any
    timeout: Any
    ledger: Any
    code: Any
    user_data: Any
    linked: Any
    pending: Any
    post_pending: Any
    void_pending: Any
    balancing_debit: Any
    balancing_credit: Any
    reserved_flags: Any
    timestamp: Any


def first_result(ops: Ops, checks: Sequence[tuple[Any, Result]], otherwise: Any) -> Any:
    """The code of the first check that holds, else `otherwise` (checks in precedence order)."""
    code = otherwise
    for condition, result in reversed(checks):
        code = ops.ite(condition, int(result), code)
    return code


def encode_flags(ops: Ops, bits: Sequence[tuple[Any, int]]) -> Any:
    """The flags integer of decoded bits; linear, so it stays decidable on Z3 terms."""
    total: Any = 0
    for bit, value in bits:
        total = total + ops.ite(bit, value, 0)
    return total


def account_flags_value(ops: Ops, a: AccountEvent) -> Any:
    return encode_flags(
        ops,
        [(a.linked, 1), (a.debits_guard, 2), (a.credits_guard, 4), (a.history, 8), (a.closed, 16)],
    )


def transfer_flags_value(ops: Ops, t: TransferEvent) -> Any:
    return encode_flags(
        ops,
        [
            (t.linked, 1),
            (t.pending, 2),
            (t.post_pending, 4),
            (t.void_pending, 8),
            (t.balancing_debit, 16),
            (t.balancing_credit, 32),
        ],
    )


# --- accounts ---------------------------------------------------------------------------------


def create_account(s: KernelState, a: AccountEvent, ts: Any, ops: Ops) -> tuple[KernelState, Any]:
    """Create account `a` at timestamp `ts`; returns the new state and the result code."""
    flags = account_flags_value(ops, a)
    exists = ops.get(s.account_exists, a.id)
    code = first_result(
        ops,
        [
            (a.timestamp != 0, Result.TIMESTAMP_MUST_BE_ZERO),
            (a.reserved_flags, Result.RESERVED_FLAG),
            (a.id == 0, Result.ID_MUST_NOT_BE_ZERO),
            (a.id == ID_MAX, Result.ID_MUST_NOT_BE_INT_MAX),
            (
                ops.and_(exists, flags != ops.get(s.account_flags, a.id)),
                Result.EXISTS_WITH_DIFFERENT_FLAGS,
            ),
            (
                ops.and_(exists, a.user_data != ops.get(s.account_user_data, a.id)),
                Result.EXISTS_WITH_DIFFERENT_USER_DATA,
            ),
            (
                ops.and_(exists, a.ledger != ops.get(s.account_ledger, a.id)),
                Result.EXISTS_WITH_DIFFERENT_LEDGER,
            ),
            (
                ops.and_(exists, a.code != ops.get(s.account_code, a.id)),
                Result.EXISTS_WITH_DIFFERENT_CODE,
            ),
            (exists, Result.EXISTS),
            (ops.and_(a.debits_guard, a.credits_guard), Result.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
            (a.debits_pending != 0, Result.DEBITS_PENDING_MUST_BE_ZERO),
            (a.debits_posted != 0, Result.DEBITS_POSTED_MUST_BE_ZERO),
            (a.credits_pending != 0, Result.CREDITS_PENDING_MUST_BE_ZERO),
            (a.credits_posted != 0, Result.CREDITS_POSTED_MUST_BE_ZERO),
            (a.ledger == 0, Result.LEDGER_MUST_NOT_BE_ZERO),
            (a.code == 0, Result.CODE_MUST_NOT_BE_ZERO),
        ],
        int(Result.OK),
    )
    ok = code == int(Result.OK)

    def put(table: Any, value: Any) -> Any:
        return ops.put(table, a.id, ops.ite(ok, value, ops.get(table, a.id)))

    # The four totals are not written: an account that does not exist has all of them zero.
    new = dataclasses.replace(
        s,
        account_exists=put(s.account_exists, True),
        account_ledger=put(s.account_ledger, a.ledger),
        account_code=put(s.account_code, a.code),
        account_user_data=put(s.account_user_data, a.user_data),
        account_flags=put(s.account_flags, flags),
        account_debits_guard=put(s.account_debits_guard, a.debits_guard),
        account_credits_guard=put(s.account_credits_guard, a.credits_guard),
        account_closed=put(s.account_closed, a.closed),
        account_timestamp=put(s.account_timestamp, ts),
        timestamp=ts,
    )
    return new, code


# --- transfers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _View:
    """Values a transfer step reads, gathered once so the checks read like the spec."""

    resolving: Any
    single: Any
    exists: Any
    debit_account_id: Any
    credit_account_id: Any
    ledger: Any
    code: Any
    pending_amount: Any
    pending_status: Any
    pending_expires_at: Any
    pending_exists: Any
    flags: Any


def _view(s: KernelState, t: TransferEvent, ops: Ops) -> _View:
    resolving = ops.or_(t.post_pending, t.void_pending)
    p = t.pending_id

    def inherit(given: Any, table: Any) -> Any:
        # A post or void names its pending transfer; zero fields are taken from it.
        return ops.ite(ops.and_(resolving, given == 0), ops.get(table, p), given)

    return _View(
        resolving=resolving,
        single=ops.not_(ops.or_(t.pending, resolving)),
        exists=ops.get(s.transfer_exists, t.id),
        debit_account_id=inherit(t.debit_account_id, s.transfer_debit_account_id),
        credit_account_id=inherit(t.credit_account_id, s.transfer_credit_account_id),
        ledger=inherit(t.ledger, s.transfer_ledger),
        code=inherit(t.code, s.transfer_code),
        pending_amount=ops.get(s.transfer_amount, p),
        pending_status=ops.get(s.transfer_status, p),
        pending_expires_at=ops.get(s.transfer_expires_at, p),
        pending_exists=ops.get(s.transfer_exists, p),
        flags=transfer_flags_value(ops, t),
    )


def _differs(ops: Ops, v: _View, given: Any, stored: Any) -> Any:
    """Whether a replayed field differs from the stored one (zero means inherited on post/void)."""
    return ops.and_(given != stored, ops.or_(ops.not_(v.resolving), given != 0))


def _exists_checks(
    s: KernelState, t: TransferEvent, v: _View, ops: Ops
) -> list[tuple[Any, Result]]:
    i = t.id
    stored_amount = ops.get(s.transfer_amount, i)
    amount_differs = ops.ite(
        ops.or_(t.balancing_debit, t.balancing_credit),
        t.amount < stored_amount,  # a balancing replay may ask for more than it moved
        ops.ite(
            t.void_pending,
            ops.and_(t.amount != 0, t.amount != stored_amount),
            t.amount != stored_amount,
        ),
    )
    pairs = [
        (v.flags != ops.get(s.transfer_flags, i), Result.EXISTS_WITH_DIFFERENT_FLAGS),
        (
            t.pending_id != ops.get(s.transfer_pending_id, i),
            Result.EXISTS_WITH_DIFFERENT_PENDING_ID,
        ),
        (t.timeout != ops.get(s.transfer_timeout, i), Result.EXISTS_WITH_DIFFERENT_TIMEOUT),
        (
            _differs(ops, v, t.debit_account_id, ops.get(s.transfer_debit_account_id, i)),
            Result.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID,
        ),
        (
            _differs(ops, v, t.credit_account_id, ops.get(s.transfer_credit_account_id, i)),
            Result.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID,
        ),
        (amount_differs, Result.EXISTS_WITH_DIFFERENT_AMOUNT),
        (t.user_data != ops.get(s.transfer_user_data, i), Result.EXISTS_WITH_DIFFERENT_USER_DATA),
        (
            _differs(ops, v, t.ledger, ops.get(s.transfer_ledger, i)),
            Result.EXISTS_WITH_DIFFERENT_LEDGER,
        ),
        (_differs(ops, v, t.code, ops.get(s.transfer_code, i)), Result.EXISTS_WITH_DIFFERENT_CODE),
    ]
    checks = [(ops.and_(v.exists, condition), result) for condition, result in pairs]
    checks.append((v.exists, Result.EXISTS))
    checks.append((ops.get(s.failed, i), Result.ID_ALREADY_FAILED))
    return checks


def _field_checks(t: TransferEvent, v: _View, ops: Ops) -> list[tuple[Any, Result]]:
    n_kinds = encode_flags(ops, [(t.pending, 1), (t.post_pending, 1), (t.void_pending, 1)])
    balancing = ops.or_(t.balancing_debit, t.balancing_credit)
    given_debit, given_credit = t.debit_account_id, t.credit_account_id
    return [
        (
            ops.or_(n_kinds > 1, ops.and_(balancing, v.resolving)),
            Result.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        ),
        (
            ops.and_(ops.not_(v.resolving), given_debit == 0),
            Result.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO,
        ),
        (given_debit == ID_MAX, Result.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX),
        (
            ops.and_(ops.not_(v.resolving), given_credit == 0),
            Result.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO,
        ),
        (given_credit == ID_MAX, Result.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX),
        (
            ops.and_(given_debit == given_credit, given_debit != 0),
            Result.ACCOUNTS_MUST_BE_DIFFERENT,
        ),
        (ops.and_(ops.not_(v.resolving), t.pending_id != 0), Result.PENDING_ID_MUST_BE_ZERO),
        (ops.and_(v.resolving, t.pending_id == 0), Result.PENDING_ID_MUST_NOT_BE_ZERO),
        (ops.and_(v.resolving, t.pending_id == ID_MAX), Result.PENDING_ID_MUST_NOT_BE_INT_MAX),
        (ops.and_(v.resolving, t.pending_id == t.id), Result.PENDING_ID_MUST_BE_DIFFERENT),
        (
            ops.and_(ops.not_(t.pending), t.timeout != 0),
            Result.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
        ),
        (ops.and_(ops.not_(t.void_pending), t.amount == 0), Result.AMOUNT_MUST_NOT_BE_ZERO),
        (ops.and_(ops.not_(v.resolving), t.ledger == 0), Result.LEDGER_MUST_NOT_BE_ZERO),
        (ops.and_(ops.not_(v.resolving), t.code == 0), Result.CODE_MUST_NOT_BE_ZERO),
    ]


def _pending_checks(
    t: TransferEvent, v: _View, ts: Any, s: KernelState, ops: Ops
) -> list[tuple[Any, Result]]:
    p = t.pending_id

    def resolving(condition: Any) -> Any:
        return ops.and_(v.resolving, condition)

    expired = ops.or_(
        v.pending_status == STATUS_EXPIRED,
        ops.and_(v.pending_expires_at != 0, v.pending_expires_at <= ts),
    )
    return [
        (resolving(ops.not_(v.pending_exists)), Result.PENDING_TRANSFER_NOT_FOUND),
        (resolving(v.pending_status == STATUS_NONE), Result.PENDING_TRANSFER_NOT_PENDING),
        (
            resolving(v.debit_account_id != ops.get(s.transfer_debit_account_id, p)),
            Result.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID,
        ),
        (
            resolving(v.credit_account_id != ops.get(s.transfer_credit_account_id, p)),
            Result.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID,
        ),
        (
            resolving(v.ledger != ops.get(s.transfer_ledger, p)),
            Result.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER,
        ),
        (
            resolving(v.code != ops.get(s.transfer_code, p)),
            Result.PENDING_TRANSFER_HAS_DIFFERENT_CODE,
        ),
        (
            ops.and_(t.post_pending, t.amount > v.pending_amount),
            Result.EXCEEDS_PENDING_TRANSFER_AMOUNT,
        ),
        (
            ops.and_(t.void_pending, t.amount != 0, t.amount != v.pending_amount),
            Result.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
        ),
        (resolving(v.pending_status == STATUS_POSTED), Result.PENDING_TRANSFER_ALREADY_POSTED),
        (resolving(v.pending_status == STATUS_VOIDED), Result.PENDING_TRANSFER_ALREADY_VOIDED),
        (resolving(expired), Result.PENDING_TRANSFER_EXPIRED),
    ]


@dataclass(frozen=True, slots=True)
class _Accounts:
    debit_account_id: Any
    credit_account_id: Any
    dr_debits_pending: Any
    dr_debits_posted: Any
    dr_credits_posted: Any
    cr_credits_pending: Any
    cr_credits_posted: Any
    cr_debits_posted: Any


def _accounts(s: KernelState, v: _View, ops: Ops) -> _Accounts:
    dr, cr = v.debit_account_id, v.credit_account_id
    return _Accounts(
        debit_account_id=dr,
        credit_account_id=cr,
        dr_debits_pending=ops.get(s.debits_pending, dr),
        dr_debits_posted=ops.get(s.debits_posted, dr),
        dr_credits_posted=ops.get(s.credits_posted, dr),
        cr_credits_pending=ops.get(s.credits_pending, cr),
        cr_credits_posted=ops.get(s.credits_posted, cr),
        cr_debits_posted=ops.get(s.debits_posted, cr),
    )


def _clamp_zero(ops: Ops, value: Any) -> Any:
    return ops.ite(value < 0, 0, value)


def _amount(t: TransferEvent, v: _View, a: _Accounts, ops: Ops) -> Any:
    """The amount that moves: a void moves the pending amount; a balancing transfer takes at
    most what the guarded side still has available."""
    debit_room = _clamp_zero(ops, a.dr_credits_posted - a.dr_debits_posted - a.dr_debits_pending)
    credit_room = _clamp_zero(ops, a.cr_debits_posted - a.cr_credits_posted - a.cr_credits_pending)
    amount = ops.ite(t.void_pending, v.pending_amount, t.amount)
    amount = ops.ite(ops.and_(t.balancing_debit, debit_room < amount), debit_room, amount)
    return ops.ite(ops.and_(t.balancing_credit, credit_room < amount), credit_room, amount)


def _account_checks(
    t: TransferEvent, v: _View, a: _Accounts, amount: Any, ts: Any, s: KernelState, ops: Ops
) -> list[tuple[Any, Result]]:
    dr, cr = a.debit_account_id, a.credit_account_id
    dr_ledger, cr_ledger = ops.get(s.account_ledger, dr), ops.get(s.account_ledger, cr)
    not_void = ops.not_(t.void_pending)
    adds_pending = t.pending
    adds_posted = ops.or_(v.single, t.post_pending)
    released = ops.ite(v.resolving, v.pending_amount, 0)
    dr_pending = a.dr_debits_pending
    cr_pending = ops.get(s.credits_pending, cr)
    return [
        (ops.not_(ops.get(s.account_exists, dr)), Result.DEBIT_ACCOUNT_NOT_FOUND),
        (ops.not_(ops.get(s.account_exists, cr)), Result.CREDIT_ACCOUNT_NOT_FOUND),
        (dr_ledger != cr_ledger, Result.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER),
        (v.ledger != dr_ledger, Result.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS),
        (ops.and_(not_void, ops.get(s.account_closed, dr)), Result.DEBIT_ACCOUNT_ALREADY_CLOSED),
        (ops.and_(not_void, ops.get(s.account_closed, cr)), Result.CREDIT_ACCOUNT_ALREADY_CLOSED),
        (ops.and_(adds_pending, dr_pending + amount > AMOUNT_MAX), Result.OVERFLOWS_DEBITS_PENDING),
        (
            ops.and_(adds_pending, cr_pending + amount > AMOUNT_MAX),
            Result.OVERFLOWS_CREDITS_PENDING,
        ),
        (
            ops.and_(adds_posted, a.dr_debits_posted + amount > AMOUNT_MAX),
            Result.OVERFLOWS_DEBITS_POSTED,
        ),
        (
            ops.and_(adds_posted, a.cr_credits_posted + amount > AMOUNT_MAX),
            Result.OVERFLOWS_CREDITS_POSTED,
        ),
        (
            ops.and_(not_void, dr_pending - released + a.dr_debits_posted + amount > AMOUNT_MAX),
            Result.OVERFLOWS_DEBITS,
        ),
        (
            ops.and_(not_void, cr_pending - released + a.cr_credits_posted + amount > AMOUNT_MAX),
            Result.OVERFLOWS_CREDITS,
        ),
        (
            ops.and_(t.pending, ts + t.timeout * NS_PER_SECOND > TIMESTAMP_MAX_NS),
            Result.OVERFLOWS_TIMEOUT,
        ),
        (
            ops.and_(
                ops.not_(v.resolving),
                ops.get(s.account_debits_guard, dr),
                dr_pending + a.dr_debits_posted + amount > a.dr_credits_posted,
            ),
            Result.EXCEEDS_CREDITS,
        ),
        (ops.and_(t.balancing_debit, amount == 0), Result.EXCEEDS_CREDITS),
        (
            ops.and_(
                ops.not_(v.resolving),
                ops.get(s.account_credits_guard, cr),
                cr_pending + a.cr_credits_posted + amount > a.cr_debits_posted,
            ),
            Result.EXCEEDS_DEBITS,
        ),
        (ops.and_(t.balancing_credit, amount == 0), Result.EXCEEDS_DEBITS),
    ]


def create_transfer(s: KernelState, t: TransferEvent, ts: Any, ops: Ops) -> tuple[KernelState, Any]:
    """Create transfer `t` at timestamp `ts`; returns the new state and the result code."""
    v = _view(s, t, ops)
    a = _accounts(s, v, ops)
    amount = _amount(t, v, a, ops)
    code = first_result(
        ops,
        [
            (t.timestamp != 0, Result.TIMESTAMP_MUST_BE_ZERO),
            (t.reserved_flags, Result.RESERVED_FLAG),
            (t.id == 0, Result.ID_MUST_NOT_BE_ZERO),
            (t.id == ID_MAX, Result.ID_MUST_NOT_BE_INT_MAX),
            *_exists_checks(s, t, v, ops),
            *_field_checks(t, v, ops),
            *_pending_checks(t, v, ts, s, ops),
            *_account_checks(t, v, a, amount, ts, s, ops),
        ],
        int(Result.OK),
    )
    ok = code == int(Result.OK)
    transient = ops.or_(*[code == int(r) for r in sorted(TRANSIENT_RESULTS)])
    s = dataclasses.replace(
        s, failed=ops.put(s.failed, t.id, ops.or_(ops.get(s.failed, t.id), transient))
    )
    return _transfer_effect(s, t, v, a, amount, ok, ts, ops), code


def _transfer_effect(
    s: KernelState,
    t: TransferEvent,
    v: _View,
    a: _Accounts,
    amount: Any,
    ok: Any,
    ts: Any,
    ops: Ops,
) -> KernelState:
    """Every write of an accepted transfer, each guarded by `ok` (validate, then mutate)."""
    released = ops.ite(ops.and_(ok, v.resolving), v.pending_amount, 0)
    pending_added = ops.ite(ops.and_(ok, t.pending), amount, 0)
    posted_added = ops.ite(ops.and_(ok, ops.or_(v.single, t.post_pending)), amount, 0)
    dr, cr, ledger = a.debit_account_id, a.credit_account_id, v.ledger
    pending_delta = pending_added - released

    def add(table: Any, key: Any, delta: Any) -> Any:
        return ops.put(table, key, ops.get(table, key) + delta)

    def record(table: Any, value: Any) -> Any:
        return ops.put(table, t.id, ops.ite(ok, value, ops.get(table, t.id)))

    resolved_status = ops.ite(t.post_pending, STATUS_POSTED, STATUS_VOIDED)
    status = ops.put(
        s.transfer_status,
        t.pending_id,
        ops.ite(
            ops.and_(ok, v.resolving), resolved_status, ops.get(s.transfer_status, t.pending_id)
        ),
    )
    expires_at = ops.ite(ops.and_(t.pending, t.timeout != 0), ts + t.timeout * NS_PER_SECOND, 0)
    return dataclasses.replace(
        s,
        debits_pending=add(s.debits_pending, dr, pending_delta),
        credits_pending=add(s.credits_pending, cr, pending_delta),
        debits_posted=add(s.debits_posted, dr, posted_added),
        credits_posted=add(s.credits_posted, cr, posted_added),
        ledger_debits_pending=add(s.ledger_debits_pending, ledger, pending_delta),
        ledger_credits_pending=add(s.ledger_credits_pending, ledger, pending_delta),
        ledger_debits_posted=add(s.ledger_debits_posted, ledger, posted_added),
        ledger_credits_posted=add(s.ledger_credits_posted, ledger, posted_added),
        transfer_status=record(status, ops.ite(t.pending, STATUS_PENDING, STATUS_NONE)),
        transfer_exists=record(s.transfer_exists, True),
        transfer_debit_account_id=record(s.transfer_debit_account_id, dr),
        transfer_credit_account_id=record(s.transfer_credit_account_id, cr),
        transfer_amount=record(s.transfer_amount, amount),
        transfer_pending_id=record(s.transfer_pending_id, t.pending_id),
        transfer_timeout=record(s.transfer_timeout, t.timeout),
        transfer_ledger=record(s.transfer_ledger, ledger),
        transfer_code=record(s.transfer_code, v.code),
        transfer_user_data=record(s.transfer_user_data, t.user_data),
        transfer_flags=record(s.transfer_flags, v.flags),
        transfer_timestamp=record(s.transfer_timestamp, ts),
        transfer_expires_at=record(s.transfer_expires_at, expires_at),
        timestamp=ts,
    )


# --- expiry -----------------------------------------------------------------------------------


def expire_pending(s: KernelState, pending_id: Any, ts: Any, ops: Ops) -> tuple[KernelState, Any]:
    """Expire pending transfer `pending_id` at `ts` if its timeout has passed; returns the new
    state and whether it expired. Expiry releases exactly the pending amount, even on a closed
    account."""
    p = pending_id
    expires_at = ops.get(s.transfer_expires_at, p)
    due = ops.and_(
        ops.get(s.transfer_status, p) == STATUS_PENDING, expires_at != 0, expires_at <= ts
    )
    released = ops.ite(due, ops.get(s.transfer_amount, p), 0)
    dr = ops.get(s.transfer_debit_account_id, p)
    cr = ops.get(s.transfer_credit_account_id, p)
    ledger = ops.get(s.transfer_ledger, p)

    def sub(table: Any, key: Any) -> Any:
        return ops.put(table, key, ops.get(table, key) - released)

    status = ops.ite(due, STATUS_EXPIRED, ops.get(s.transfer_status, p))
    new = dataclasses.replace(
        s,
        debits_pending=sub(s.debits_pending, dr),
        credits_pending=sub(s.credits_pending, cr),
        ledger_debits_pending=sub(s.ledger_debits_pending, ledger),
        ledger_credits_pending=sub(s.ledger_credits_pending, ledger),
        transfer_status=ops.put(s.transfer_status, p, status),
        timestamp=ts,
    )
    return new, due


# --- linked chains ----------------------------------------------------------------------------


def select_state(
    ops: Ops, condition: Any, then: KernelState, otherwise: KernelState
) -> KernelState:
    """`then` where `condition` holds, else `otherwise`, field by field."""
    values = {
        f.name: ops.ite(condition, getattr(then, f.name), getattr(otherwise, f.name))
        for f in dataclasses.fields(KernelState)
    }
    return KernelState(**values)


def step(
    s: KernelState, event: AccountEvent | TransferEvent, ts: Any, ops: Ops
) -> tuple[KernelState, Any]:
    """One event of either kind."""
    if isinstance(event, AccountEvent):  # the kind is structure, not data
        return create_account(s, event, ts, ops)
    return create_transfer(s, event, ts, ops)


def apply_chain(
    s: KernelState, events: Sequence[AccountEvent | TransferEvent], ts: Any, ops: Ops
) -> tuple[KernelState, list[Any]]:
    """Apply a linked chain starting at timestamp `ts`: every event, or none.

    Events after the first failure are not evaluated. On failure the state is the one before the
    chain, except that the failing event's transient result stays remembered under its id.
    Codes: the failing event keeps its own code; every other event gets LINKED_EVENT_FAILED.
    """
    current = s
    failed_so_far: Any = False
    own_codes = []
    for index, event in enumerate(events):
        after, code = step(current, event, ts + index, ops)
        current = select_state(ops, failed_so_far, current, after)
        own_codes.append(ops.ite(failed_so_far, int(Result.LINKED_EVENT_FAILED), code))
        failed_so_far = ops.or_(failed_so_far, code != int(Result.OK))
    rolled_back = dataclasses.replace(s, failed=current.failed, timestamp=current.timestamp)
    final = select_state(ops, failed_so_far, rolled_back, current)
    codes = []
    for own in own_codes:
        codes.append(
            ops.ite(
                ops.and_(failed_so_far, own == int(Result.OK)), int(Result.LINKED_EVENT_FAILED), own
            )
        )
    return final, codes
