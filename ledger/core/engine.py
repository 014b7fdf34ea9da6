"""The production ledger: the kernel's semantics, written imperatively for speed.

`Ledger.apply` is the hot path. It must give exactly the results and states of the reference
(`ledger.core.reference`, the kernel run on Python values); tests/core/test_differential.py checks
that on many thousands of random batches. Checks run in the kernel's order, one per line; the
comment `-- accepted --` marks where an event can no longer fail; writes follow it.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

from ledger.core.errors import InvalidTimeError
from ledger.core.flags import ACCOUNT_FLAGS_KNOWN, TRANSFER_FLAGS_KNOWN, AccountFlags
from ledger.core.flags import TransferFlags as TF
from ledger.core.limits import AMOUNT_MAX, ID_MAX, NS_PER_SECOND, TIMESTAMP_MAX_NS
from ledger.core.results import TRANSIENT_RESULTS, Result
from ledger.core.types import (
    Account,
    AccountBalance,
    Expiry,
    PendingStatus,
    Transfer,
    TransferRecord,
)
from ledger.core.validate import check_batch
from specs import ledger as spec

if not __debug__:  # pragma: no cover - the asserts below are part of the design
    sys.exit("ledger.core refuses to run under python -O: its invariant asserts would vanish")

R = Result
_LINKED = int(TF.LINKED)
_PENDING = int(TF.PENDING)
_POST = int(TF.POST_PENDING)
_VOID = int(TF.VOID_PENDING)
_RESOLVING = _POST | _VOID
_BAL_DR = int(TF.BALANCING_DEBIT)
_BAL_CR = int(TF.BALANCING_CREDIT)
_BALANCING = _BAL_DR | _BAL_CR
_DR_GUARD = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CR_GUARD = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
_CLOSED = int(AccountFlags.CLOSED)
_HISTORY = int(AccountFlags.HISTORY)
_NOT_TRANSFER_FLAGS = ~TRANSFER_FLAGS_KNOWN
_NOT_ACCOUNT_FLAGS = ~ACCOUNT_FLAGS_KNOWN
_OK = R.OK
_PENDING_STATUS = int(PendingStatus.PENDING)

Undo = list[Callable[[], None]]
"""Inside a linked chain: how to take back each change made so far, newest last."""

# ACCOUNT_ROW: id, ledger, code, flags, user_data, debits_pending, debits_posted,
#   credits_pending, credits_posted, timestamp.
# TRANSFER_ROW: id followed by the stored transfer tuple below.
# Stored transfer tuple: positions of its fields.
DR, CR, AMOUNT, PENDING_ID, TIMEOUT, LEDGER, CODE, USER_DATA, FLAGS, TIMESTAMP = range(10)


class _Row:
    """An account's mutable totals inside the engine; callers only ever see `Account` copies."""

    __slots__ = (
        "code",
        "credits_pending",
        "credits_posted",
        "debits_pending",
        "debits_posted",
        "flags",
        "history",
        "history_taken",
        "id",
        "ledger",
        "timestamp",
        "user_data",
    )

    def __init__(self, row: Sequence[int]) -> None:
        """`row` holds an account's fields in ACCOUNT_ROW order."""
        (
            self.id,
            self.ledger,
            self.code,
            self.flags,
            self.user_data,
            self.debits_pending,
            self.debits_posted,
            self.credits_pending,
            self.credits_posted,
            self.timestamp,
        ) = row
        self.history_taken = 0
        self.history: list[AccountBalance] | None = [] if self.flags & _HISTORY else None

    @staticmethod
    def from_record(a: Account) -> _Row:
        return _Row(
            (
                a.id,
                a.ledger,
                a.code,
                a.flags,
                a.user_data,
                a.debits_pending,
                a.debits_posted,
                a.credits_pending,
                a.credits_posted,
                a.timestamp,
            )
        )

    def as_row(self) -> tuple[int, ...]:
        return (
            self.id,
            self.ledger,
            self.code,
            self.flags,
            self.user_data,
            self.debits_pending,
            self.debits_posted,
            self.credits_pending,
            self.credits_posted,
            self.timestamp,
        )


@dataclass(frozen=True, slots=True)
class Changes:
    """What a ledger changed since it last reported, for a store to persist.

    The rows are plain tuples (ACCOUNT_ROW and TRANSFER_ROW order) because a store writes them
    as they are; `accounts` and `transfers` give the same as records.

    Attributes:
        account_rows: every account created or changed, with its totals now (sorted by id).
        transfer_rows: every transfer created, in timestamp order.
        statuses: pending transfers posted, voided or expired (a new pending transfer's status
            is PENDING by its flags).
        failed: ids newly remembered as failed with a transient result.
        expiries: pending transfers released by their timeout, in timestamp order.
        history: balances recorded for accounts with the history flag.
        timestamp: the last timestamp the ledger assigned.
    """

    account_rows: tuple[tuple[int, ...], ...]
    transfer_rows: tuple[tuple[int, ...], ...]
    statuses: Mapping[int, PendingStatus]
    failed: tuple[int, ...]
    expiries: tuple[Expiry, ...]
    history: tuple[AccountBalance, ...]
    timestamp: int

    @property
    def accounts(self) -> tuple[Account, ...]:
        return tuple(account_from_row(r) for r in self.account_rows)

    @property
    def transfers(self) -> tuple[Transfer, ...]:
        return tuple(transfer_from_row(r) for r in self.transfer_rows)


class Ledger:
    """The ledger state and its batch transition. Deterministic: no clock, no randomness, no I/O.

    `apply` is atomic per batch against malformed input (it raises before changing anything) and
    per linked chain against failing events (a failing chain leaves no trace but a remembered
    transient failure).
    """

    def __init__(self) -> None:
        self._accounts: dict[int, _Row] = {}
        self._transfers: dict[int, tuple[int, ...]] = {}
        self._status: dict[int, int] = {}
        self._expires_at: dict[int, int] = {}
        self._expiry_queue: list[tuple[int, int, int]] = []
        self._expiries: list[Expiry] = []
        self._failed: set[int] = set()
        self._touched: set[_Row] = set()
        self.timestamp = 0
        # What changed since the last `take_changes` (for a store to persist).
        self._changed: set[_Row] = set()
        self._transfers_taken = 0
        self._expiries_taken = 0
        self._status_changed: set[int] = set()
        self._failed_new: list[int] = []

    # --- the batch ----------------------------------------------------------------------------

    def apply(self, events: Sequence[Account | Transfer], now: int) -> list[Result]:
        """Apply `events` in order at time `now` (ns); one result per event."""
        check_batch(events, now)
        return self.apply_checked(events, now)

    def apply_checked(self, events: Sequence[Account | Transfer], now: int) -> list[Result]:
        """`apply` for a batch that has already passed `check_batch` (a store checks it before
        it opens its transaction, and must not pay for the check twice)."""
        count = len(events)
        now_ts = max(now, self.timestamp + 1)
        self._check_room(now_ts, count)
        base = self._expire_due(now_ts)
        results: list[Result] = [_OK] * count
        index = 0
        while index < count:
            end = index
            while end < count and events[end].flags & _LINKED:
                end += 1
            if end == index:
                event = events[index]
                code = (
                    self._plain_transfer(event, base + index) if type(event) is Transfer else None
                )
                results[index] = self._one(event, base + index, None) if code is None else code
            elif end == count:
                self._chain_open(results, index, count)
            else:
                self._chain(events, results, index, end + 1, base)
            index = max(end, index) + 1
        if count or base != now_ts:
            self.timestamp = base + count - 1
        self._check_touched()
        return results

    def _check_room(self, now_ts: int, count: int) -> None:
        """Refuse, before any change, a batch whose timestamps would pass TIMESTAMP_MAX_NS."""
        if now_ts + len(self._expiry_queue) + count - 1 <= TIMESTAMP_MAX_NS:
            return  # the queue's length bounds the expiries due: the cheap test suffices
        due = sum(1 for entry in self._expiry_queue if self._is_due(entry, now_ts))
        if now_ts + due + count - 1 > TIMESTAMP_MAX_NS:
            raise InvalidTimeError(
                f"the ledger's clock would pass TIMESTAMP_MAX_NS ({TIMESTAMP_MAX_NS}) "
                f"with {due} expiries and {count} events at {now_ts}; nothing was applied"
            )

    def _is_due(self, entry: tuple[int, int, int], cutoff: int) -> bool:
        """Whether a queue entry is a live pending transfer due at `cutoff` (entries of
        transfers resolved early, or undone with their chain, are skipped lazily)."""
        expires_at, created, pending_id = entry
        stored = self._transfers.get(pending_id)
        return (
            expires_at <= cutoff
            and self._status.get(pending_id) == _PENDING_STATUS
            and stored is not None
            and stored[TIMESTAMP] == created
        )

    def _check_touched(self) -> None:
        """Postcondition of a batch: L1 and L7 hold on every account it changed. Checked once per
        batch, not per event, so a hot account costs one check however often it moved."""
        for row in self._touched:
            assert spec.account_within_limits(row), row.id
        self._changed |= self._touched
        self._touched.clear()

    def _one(self, event: Account | Transfer, ts: int, undo: Undo | None) -> Result:
        if type(event) is Transfer:
            return self._transfer(event, ts, undo)
        assert type(event) is Account
        return self._account(event, ts, undo)

    def _chain_open(self, results: list[Result], start: int, end: int) -> None:
        for i in range(start, end - 1):
            results[i] = R.LINKED_EVENT_FAILED
        results[end - 1] = R.LINKED_EVENT_CHAIN_OPEN

    def _chain(
        self,
        events: Sequence[Account | Transfer],
        results: list[Result],
        start: int,
        end: int,
        base: int,
    ) -> None:
        undo: Undo = []
        for i in range(start, end):
            code = self._one(events[i], base + i, undo)
            if code is not _OK:
                self._undo(undo)
                for j in range(start, end):
                    results[j] = R.LINKED_EVENT_FAILED
                results[i] = code
                return
            results[i] = code

    def _undo(self, undo: Undo) -> None:
        for restore in reversed(undo):
            restore()

    # --- expiry -------------------------------------------------------------------------------

    def _expire_due(self, ts: int) -> int:
        """Expire every pending transfer due at `ts`, in order of (expiry, creation); each expiry
        takes the next timestamp. Returns the first timestamp left for the batch's events."""
        queue = self._expiry_queue
        cutoff = ts
        while queue and queue[0][0] <= cutoff:
            entry = heapq.heappop(queue)
            if not self._is_due(entry, cutoff):
                continue  # resolved before it was due, or undone with its linked chain
            expires_at, _, pending_id = entry
            stored = self._transfers[pending_id]
            assert self._expires_at[pending_id] == expires_at
            amount = stored[AMOUNT]
            dr, cr = self._accounts[stored[DR]], self._accounts[stored[CR]]
            assert dr.debits_pending >= amount and cr.credits_pending >= amount
            self._touched.add(dr)
            self._touched.add(cr)
            dr.debits_pending -= amount
            cr.credits_pending -= amount
            self._status[pending_id] = int(PendingStatus.EXPIRED)
            self._status_changed.add(pending_id)
            self._expiries.append(Expiry(pending_id=pending_id, amount=amount, timestamp=ts))
            self._history(dr, ts)
            self._history(cr, ts)
            ts += 1
        return ts

    # --- accounts -----------------------------------------------------------------------------

    def _account(self, a: Account, ts: int, undo: Undo | None) -> Result:
        if a.timestamp != 0:
            return R.TIMESTAMP_MUST_BE_ZERO
        if a.flags & _NOT_ACCOUNT_FLAGS:
            return R.RESERVED_FLAG
        if a.id == 0:
            return R.ID_MUST_NOT_BE_ZERO
        if a.id == ID_MAX:
            return R.ID_MUST_NOT_BE_INT_MAX
        existing = self._accounts.get(a.id)
        if existing is not None:
            return _account_exists(a, existing)
        if a.flags & _DR_GUARD and a.flags & _CR_GUARD:
            return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if a.debits_pending != 0:
            return R.DEBITS_PENDING_MUST_BE_ZERO
        if a.debits_posted != 0:
            return R.DEBITS_POSTED_MUST_BE_ZERO
        if a.credits_pending != 0:
            return R.CREDITS_PENDING_MUST_BE_ZERO
        if a.credits_posted != 0:
            return R.CREDITS_POSTED_MUST_BE_ZERO
        if a.ledger == 0:
            return R.LEDGER_MUST_NOT_BE_ZERO
        if a.code == 0:
            return R.CODE_MUST_NOT_BE_ZERO
        # -- accepted --
        row = _Row((a.id, a.ledger, a.code, a.flags, a.user_data, 0, 0, 0, 0, ts))
        self._accounts[a.id] = row
        self._touched.add(row)
        if undo is not None:
            undo.append(lambda: self._forget_account(a.id))
        return _OK

    # --- transfers ----------------------------------------------------------------------------

    def _plain_transfer(self, t: Transfer, ts: int) -> Result | None:
        """The common case on its own short path: an unlinked single-phase transfer that passes
        every check, between two accounts without flags. Returns None whenever anything is not
        plain; `_transfer` then decides it with the full checks in precedence order."""
        tid, amount = t.id, t.amount
        if (
            t.flags != 0
            or t.timestamp != 0
            or t.pending_id != 0
            or t.timeout != 0
            or not 0 < tid < ID_MAX
            or tid in self._transfers
            or tid in self._failed
            or amount == 0
        ):
            return None
        dr = self._accounts.get(t.debit_account_id)
        cr = self._accounts.get(t.credit_account_id)
        if (
            dr is None
            or cr is None
            or dr is cr
            or dr.flags
            or cr.flags
            or t.code == 0
            or t.ledger != dr.ledger
            or t.ledger != cr.ledger
            or dr.debits_pending + dr.debits_posted + amount > AMOUNT_MAX
            or cr.credits_pending + cr.credits_posted + amount > AMOUNT_MAX
        ):
            return None
        # -- accepted --
        dr.debits_posted += amount
        cr.credits_posted += amount
        self._touched.add(dr)
        self._touched.add(cr)
        self._transfers[tid] = (
            t.debit_account_id,
            t.credit_account_id,
            amount,
            0,
            0,
            t.ledger,
            t.code,
            t.user_data,
            0,
            ts,
        )
        return _OK

    def _transfer(self, t: Transfer, ts: int, undo: Undo | None) -> Result:
        tid, flags = t.id, t.flags
        if t.timestamp != 0:
            return R.TIMESTAMP_MUST_BE_ZERO
        if flags & _NOT_TRANSFER_FLAGS:
            return R.RESERVED_FLAG
        if tid == 0:
            return R.ID_MUST_NOT_BE_ZERO
        if tid == ID_MAX:
            return R.ID_MUST_NOT_BE_INT_MAX
        stored = self._transfers.get(tid)
        if stored is not None:
            return _transfer_exists(t, stored)
        if tid in self._failed:
            return R.ID_ALREADY_FAILED
        code = _field_check(t, flags)
        if code is _OK and flags & _RESOLVING:
            return self._resolve(t, flags, ts, undo)
        if code is not _OK:
            return code
        return self._move(t, flags, ts, undo)

    def _fail(self, tid: int, code: Result) -> Result:
        if code in TRANSIENT_RESULTS:
            self._failed.add(tid)
            self._failed_new.append(tid)
        return code

    def _accounts_of(
        self, t: Transfer, dr_id: int, cr_id: int, ledger: int
    ) -> Result | tuple[_Row, _Row]:
        dr = self._accounts.get(dr_id)
        if dr is None:
            return self._fail(t.id, R.DEBIT_ACCOUNT_NOT_FOUND)
        cr = self._accounts.get(cr_id)
        if cr is None:
            return self._fail(t.id, R.CREDIT_ACCOUNT_NOT_FOUND)
        if dr.ledger != cr.ledger:
            return R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
        if ledger != dr.ledger:
            return R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
        return dr, cr

    def _move(self, t: Transfer, flags: int, ts: int, undo: Undo | None) -> Result:
        """A single-phase or pending transfer."""
        rows = self._accounts_of(t, t.debit_account_id, t.credit_account_id, t.ledger)
        if type(rows) is not tuple:
            return rows  # type: ignore[return-value]
        dr, cr = rows
        if dr.flags & _CLOSED:
            return self._fail(t.id, R.DEBIT_ACCOUNT_ALREADY_CLOSED)
        if cr.flags & _CLOSED:
            return self._fail(t.id, R.CREDIT_ACCOUNT_ALREADY_CLOSED)
        amount = t.amount
        if flags & _BALANCING:
            amount = _balanced(flags, amount, dr, cr)
        pending = flags & _PENDING
        code = _overflow_check(dr, cr, amount, pending, t.timeout, ts, 0)
        if code is not _OK:
            return code
        if not _fits(flags, amount, dr, cr, pending):
            code = R.EXCEEDS_CREDITS if _debit_short(flags, amount, dr) else R.EXCEEDS_DEBITS
            return self._fail(t.id, code)
        # -- accepted --
        if undo is not None:
            self._record_totals(dr, undo)
            self._record_totals(cr, undo)
        self._touched.add(dr)
        self._touched.add(cr)
        if pending:
            dr.debits_pending += amount
            cr.credits_pending += amount
            self._status[t.id] = _PENDING_STATUS
            if t.timeout:
                expires_at = ts + t.timeout * NS_PER_SECOND
                self._expires_at[t.id] = expires_at
                heapq.heappush(self._expiry_queue, (expires_at, ts, t.id))
        else:
            dr.debits_posted += amount
            cr.credits_posted += amount
        self._store(t, t.debit_account_id, t.credit_account_id, amount, t.ledger, t.code, ts, undo)
        if dr.history is not None:
            self._history(dr, ts)
        if cr.history is not None:
            self._history(cr, ts)
        return _OK

    def _resolve(self, t: Transfer, flags: int, ts: int, undo: Undo | None) -> Result:
        """Post or void the pending transfer `t.pending_id`."""
        p = self._transfers.get(t.pending_id)
        if p is None:
            return self._fail(t.id, R.PENDING_TRANSFER_NOT_FOUND)
        code = _pending_check(
            t,
            flags,
            p,
            self._status.get(t.pending_id, 0),
            self._expires_at.get(t.pending_id, 0),
            ts,
        )
        if code is not _OK:
            return code
        rows = self._accounts_of(t, p[DR], p[CR], p[LEDGER])
        if type(rows) is not tuple:
            return rows  # type: ignore[return-value]
        dr, cr = rows
        post = flags & _POST
        if post and dr.flags & _CLOSED:
            return self._fail(t.id, R.DEBIT_ACCOUNT_ALREADY_CLOSED)
        if post and cr.flags & _CLOSED:
            return self._fail(t.id, R.CREDIT_ACCOUNT_ALREADY_CLOSED)
        released = p[AMOUNT]
        amount = t.amount if post else released
        if post:
            code = _overflow_check(dr, cr, amount, 0, 0, ts, released)
            if code is not _OK:
                return code
        # -- accepted --
        if undo is not None:
            self._record_totals(dr, undo)
            self._record_totals(cr, undo)
        self._touched.add(dr)
        self._touched.add(cr)
        dr.debits_pending -= released
        cr.credits_pending -= released
        if post:
            dr.debits_posted += amount
            cr.credits_posted += amount
        if undo is not None:
            pending_id, old_status = t.pending_id, self._status[t.pending_id]
            undo.append(lambda: self._status.__setitem__(pending_id, old_status))
        self._status[t.pending_id] = int(PendingStatus.POSTED if post else PendingStatus.VOIDED)
        self._status_changed.add(t.pending_id)
        self._store(t, p[DR], p[CR], amount, p[LEDGER], p[CODE], ts, undo)
        self._history(dr, ts)
        self._history(cr, ts)
        assert amount <= released
        return _OK

    def _store(
        self,
        t: Transfer,
        dr_id: int,
        cr_id: int,
        amount: int,
        ledger: int,
        code: int,
        ts: int,
        undo: Undo | None,
    ) -> None:
        self._transfers[t.id] = (
            dr_id,
            cr_id,
            amount,
            t.pending_id,
            t.timeout,
            ledger,
            code,
            t.user_data,
            t.flags,
            ts,
        )
        if undo is not None:
            undo.append(lambda: self._forget_transfer(t.id))

    def _forget_account(self, account_id: int) -> None:
        self._touched.discard(self._accounts.pop(account_id))

    def _forget_transfer(self, transfer_id: int) -> None:
        del self._transfers[transfer_id]
        self._status.pop(transfer_id, None)
        self._expires_at.pop(transfer_id, None)

    def _record_totals(self, row: _Row, undo: Undo) -> None:
        totals = (row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted)
        length = 0 if row.history is None else len(row.history)

        def restore() -> None:
            (row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted) = (
                totals
            )
            if row.history is not None:
                del row.history[length:]

        undo.append(restore)

    def _history(self, row: _Row, ts: int) -> None:
        if row.history is not None:  # only accounts created with the history flag keep one
            row.history.append(
                AccountBalance(
                    account_id=row.id,
                    timestamp=ts,
                    debits_pending=row.debits_pending,
                    debits_posted=row.debits_posted,
                    credits_pending=row.credits_pending,
                    credits_posted=row.credits_posted,
                )
            )

    # --- persistence ---------------------------------------------------------------------------

    def take_changes(self) -> Changes:
        """Everything changed since the last call, for a store to write in one transaction."""
        new_transfers = len(self._transfers) - self._transfers_taken
        created = list(islice(reversed(self._transfers.items()), new_transfers))
        history: list[AccountBalance] = []
        for row in self._changed:
            if row.history is not None:
                history += row.history[row.history_taken :]
                row.history_taken = len(row.history)
        changes = Changes(
            account_rows=tuple(sorted(r.as_row() for r in self._changed)),
            transfer_rows=tuple((i, *t) for i, t in reversed(created)),
            statuses={
                i: PendingStatus(self._status[i])
                for i in sorted(self._status_changed)
                if i in self._status  # a pending transfer undone with its chain is gone
            },
            failed=tuple(self._failed_new),
            expiries=tuple(self._expiries[self._expiries_taken :]),
            history=tuple(sorted(history, key=lambda h: (h.timestamp, h.account_id))),
            timestamp=self.timestamp,
        )
        self._changed.clear()
        self._transfers_taken = len(self._transfers)
        self._expiries_taken = len(self._expiries)
        self._status_changed.clear()
        self._failed_new.clear()
        return changes

    @classmethod
    def load(
        cls,
        *,
        accounts: Iterable[Account],
        transfers: Iterable[tuple[Transfer, PendingStatus]],
        failed: Iterable[int],
        timestamp: int,
    ) -> Ledger:
        """A ledger holding the given rows, e.g. the part of a store a batch can read.

        `transfers` pairs each transfer with its own pending status (NONE unless it is a pending
        transfer). Loaded rows count as unchanged: `take_changes` reports only what `apply`
        does afterwards.
        """
        return cls.load_rows(
            account_rows=[_Row.from_record(a).as_row() for a in accounts],
            transfer_rows=[(*_transfer_row(t), status) for t, status in transfers],
            failed=failed,
            timestamp=timestamp,
        )

    @classmethod
    def load_rows(
        cls,
        *,
        account_rows: Iterable[Sequence[int]],
        transfer_rows: Iterable[Sequence[int]],
        failed: Iterable[int],
        timestamp: int,
    ) -> Ledger:
        """`load` from plain rows as a database returns them: accounts in ACCOUNT_ROW order,
        transfers in TRANSFER_ROW order followed by their pending status."""
        ledger = cls()
        for row in account_rows:
            ledger._accounts[row[0]] = _Row(row)
        for t in sorted(transfer_rows, key=lambda r: r[TIMESTAMP + 1]):
            ledger._load_transfer(t)
        ledger._failed = set(failed)
        ledger.timestamp = timestamp
        ledger._transfers_taken = len(ledger._transfers)
        return ledger

    def _load_transfer(self, row: Sequence[int]) -> None:
        transfer_id, status = row[0], PendingStatus(row[TIMESTAMP + 2])
        stored = tuple(row[1 : TIMESTAMP + 2])
        self._transfers[transfer_id] = stored
        if status != PendingStatus.NONE:
            assert stored[FLAGS] & _PENDING
            self._status[transfer_id] = int(status)
        if status == PendingStatus.PENDING and stored[TIMEOUT]:
            expires_at = stored[TIMESTAMP] + stored[TIMEOUT] * NS_PER_SECOND
            self._expires_at[transfer_id] = expires_at
            heapq.heappush(self._expiry_queue, (expires_at, stored[TIMESTAMP], transfer_id))

    # --- reads --------------------------------------------------------------------------------

    def lookup_account(self, account_id: int) -> Account | None:
        row = self._accounts.get(account_id)
        return None if row is None else _account_record(row)

    def lookup_transfer(self, transfer_id: int) -> Transfer | None:
        stored = self._transfers.get(transfer_id)
        return None if stored is None else _transfer_record(transfer_id, stored)

    def accounts(self) -> Iterator[Account]:
        """Every account, in creation order."""
        return (_account_record(row) for row in self._accounts.values())

    def transfers(self) -> Iterator[Transfer]:
        """Every transfer, in timestamp order."""
        return (_transfer_record(i, s) for i, s in self._transfers.items())

    def expiries(self) -> list[Expiry]:
        return list(self._expiries)

    def pending_status(self, transfer_id: int) -> PendingStatus:
        return PendingStatus(self._status.get(transfer_id, 0))

    def pending_status_at(self, transfer_id: int, now: int) -> PendingStatus:
        """The status a batch at `now` would find: a pending transfer due by then has expired."""
        status = self.pending_status(transfer_id)
        due = self._expires_at.get(transfer_id, 0)
        if status is PendingStatus.PENDING and due and due <= max(now, self.timestamp + 1):
            return PendingStatus.EXPIRED
        return status

    def forget_failures(self, ids: Iterable[int]) -> None:
        """Drop the transient-failure memo of `ids`: what a store does when it rolls back a
        batch in which nothing was accepted (a durable store simply never commits the memo)."""
        self._failed.difference_update(ids)

    def failed_ids(self) -> frozenset[int]:
        """Ids whose transfer failed with a transient result; they can never be created."""
        return frozenset(self._failed)

    def history(self, account_id: int) -> list[AccountBalance]:
        """Balances after each change, for an account created with the `history` flag."""
        row = self._accounts.get(account_id)
        return [] if row is None or row.history is None else list(row.history)

    def journal(self) -> list[Account | Transfer | Expiry]:
        """Every created account, transfer and expiry, in timestamp order."""
        entries: list[Account | Transfer | Expiry] = [*self.accounts(), *self.transfers()]
        entries.extend(self._expiries)
        return sorted(entries, key=lambda entry: entry.timestamp)

    def copy(self) -> Ledger:
        """An independent copy (O(size)); `apply` on it leaves this ledger untouched. The copy's
        `take_changes` reports only what changes after the copy was made."""
        other = Ledger()
        for account_id, row in self._accounts.items():
            clone = _Row(row.as_row())
            clone.history = None if row.history is None else list(row.history)
            clone.history_taken = 0 if row.history is None else len(row.history)
            other._accounts[account_id] = clone
        other._transfers = dict(self._transfers)
        other._status = dict(self._status)
        other._expires_at = dict(self._expires_at)
        other._expiry_queue = list(self._expiry_queue)
        other._expiries = list(self._expiries)
        other._failed = set(self._failed)
        other.timestamp = self.timestamp
        other._transfers_taken = len(other._transfers)  # a copy reports only its own changes
        other._expiries_taken = len(other._expiries)
        return other


# --- checks, each a pure function of the event and what it reads -----------------------------


def _account_exists(a: Account, e: _Row) -> Result:
    if a.flags != e.flags:
        return R.EXISTS_WITH_DIFFERENT_FLAGS
    if a.user_data != e.user_data:
        return R.EXISTS_WITH_DIFFERENT_USER_DATA
    if a.ledger != e.ledger:
        return R.EXISTS_WITH_DIFFERENT_LEDGER
    if a.code != e.code:
        return R.EXISTS_WITH_DIFFERENT_CODE
    return R.EXISTS


def _transfer_exists(t: Transfer, e: tuple[int, ...]) -> Result:
    flags = t.flags
    resolving = flags & _RESOLVING

    def differs(given: int, stored: int) -> bool:
        return given != stored and (not resolving or given != 0)

    if flags != e[FLAGS]:
        return R.EXISTS_WITH_DIFFERENT_FLAGS
    if t.pending_id != e[PENDING_ID]:
        return R.EXISTS_WITH_DIFFERENT_PENDING_ID
    if t.timeout != e[TIMEOUT]:
        return R.EXISTS_WITH_DIFFERENT_TIMEOUT
    if differs(t.debit_account_id, e[DR]):
        return R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if differs(t.credit_account_id, e[CR]):
        return R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    if flags & _BALANCING:
        amount_differs = t.amount < e[AMOUNT]
    elif flags & _VOID:
        amount_differs = t.amount != 0 and t.amount != e[AMOUNT]
    else:
        amount_differs = t.amount != e[AMOUNT]
    if amount_differs:
        return R.EXISTS_WITH_DIFFERENT_AMOUNT
    if t.user_data != e[USER_DATA]:
        return R.EXISTS_WITH_DIFFERENT_USER_DATA
    if differs(t.ledger, e[LEDGER]):
        return R.EXISTS_WITH_DIFFERENT_LEDGER
    if differs(t.code, e[CODE]):
        return R.EXISTS_WITH_DIFFERENT_CODE
    return R.EXISTS


def _field_check(t: Transfer, flags: int) -> Result:
    kind = flags & (_PENDING | _RESOLVING)
    if kind and kind not in (_PENDING, _POST, _VOID):
        return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    resolving = flags & _RESOLVING
    if flags & _BALANCING and resolving:
        return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    dr, cr = t.debit_account_id, t.credit_account_id
    if not resolving and dr == 0:
        return R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if dr == ID_MAX:
        return R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if not resolving and cr == 0:
        return R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if cr == ID_MAX:
        return R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if dr == cr and dr != 0:
        return R.ACCOUNTS_MUST_BE_DIFFERENT
    if not resolving and t.pending_id != 0:
        return R.PENDING_ID_MUST_BE_ZERO
    if resolving and t.pending_id == 0:
        return R.PENDING_ID_MUST_NOT_BE_ZERO
    if resolving and t.pending_id == ID_MAX:
        return R.PENDING_ID_MUST_NOT_BE_INT_MAX
    if resolving and t.pending_id == t.id:
        return R.PENDING_ID_MUST_BE_DIFFERENT
    if not flags & _PENDING and t.timeout != 0:
        return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if not flags & _VOID and t.amount == 0:
        return R.AMOUNT_MUST_NOT_BE_ZERO
    if not resolving and t.ledger == 0:
        return R.LEDGER_MUST_NOT_BE_ZERO
    if not resolving and t.code == 0:
        return R.CODE_MUST_NOT_BE_ZERO
    return _OK


def _pending_check(
    t: Transfer, flags: int, p: tuple[int, ...], status: int, expires_at: int, ts: int
) -> Result:
    if status == PendingStatus.NONE:
        return R.PENDING_TRANSFER_NOT_PENDING
    if t.debit_account_id != 0 and t.debit_account_id != p[DR]:
        return R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id != 0 and t.credit_account_id != p[CR]:
        return R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
    if t.ledger != 0 and t.ledger != p[LEDGER]:
        return R.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
    if t.code != 0 and t.code != p[CODE]:
        return R.PENDING_TRANSFER_HAS_DIFFERENT_CODE
    if flags & _POST and t.amount > p[AMOUNT]:
        return R.EXCEEDS_PENDING_TRANSFER_AMOUNT
    if flags & _VOID and t.amount != 0 and t.amount != p[AMOUNT]:
        return R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
    if status == PendingStatus.POSTED:
        return R.PENDING_TRANSFER_ALREADY_POSTED
    if status == PendingStatus.VOIDED:
        return R.PENDING_TRANSFER_ALREADY_VOIDED
    if status == PendingStatus.EXPIRED or (expires_at != 0 and expires_at <= ts):
        return R.PENDING_TRANSFER_EXPIRED
    return _OK


def _balanced(flags: int, amount: int, dr: _Row, cr: _Row) -> int:
    """A balancing transfer takes at most what the guarded side still has available."""
    if flags & _BAL_DR:
        amount = min(amount, max(0, dr.credits_posted - dr.debits_posted - dr.debits_pending))
    if flags & _BAL_CR:
        amount = min(amount, max(0, cr.debits_posted - cr.credits_posted - cr.credits_pending))
    return amount


def _overflow_check(
    dr: _Row, cr: _Row, amount: int, pending: int, timeout: int, ts: int, released: int
) -> Result:
    if pending and dr.debits_pending + amount > AMOUNT_MAX:
        return R.OVERFLOWS_DEBITS_PENDING
    if pending and cr.credits_pending + amount > AMOUNT_MAX:
        return R.OVERFLOWS_CREDITS_PENDING
    if not pending and dr.debits_posted + amount > AMOUNT_MAX:
        return R.OVERFLOWS_DEBITS_POSTED
    if not pending and cr.credits_posted + amount > AMOUNT_MAX:
        return R.OVERFLOWS_CREDITS_POSTED
    if dr.debits_pending - released + dr.debits_posted + amount > AMOUNT_MAX:
        return R.OVERFLOWS_DEBITS
    if cr.credits_pending - released + cr.credits_posted + amount > AMOUNT_MAX:
        return R.OVERFLOWS_CREDITS
    if pending and ts + timeout * NS_PER_SECOND > TIMESTAMP_MAX_NS:
        return R.OVERFLOWS_TIMEOUT
    return _OK


def _debit_short(flags: int, amount: int, dr: _Row) -> bool:
    if dr.flags & _DR_GUARD and dr.debits_pending + dr.debits_posted + amount > dr.credits_posted:
        return True
    return bool(flags & _BAL_DR) and amount == 0


def _fits(flags: int, amount: int, dr: _Row, cr: _Row, pending: int) -> bool:
    if _debit_short(flags, amount, dr):
        return False
    if cr.flags & _CR_GUARD and cr.credits_pending + cr.credits_posted + amount > cr.debits_posted:
        return False
    return not (flags & _BAL_CR and amount == 0)


def _account_record(row: _Row) -> Account:
    return account_from_row(row.as_row())


def account_from_row(r: Sequence[int]) -> Account:
    """An `Account` from its fields in ACCOUNT_ROW order."""
    return Account(
        id=r[0],
        ledger=r[1],
        code=r[2],
        flags=r[3],
        user_data=r[4],
        debits_pending=r[5],
        debits_posted=r[6],
        credits_pending=r[7],
        credits_posted=r[8],
        timestamp=r[9],
    )


def transfer_from_row(r: Sequence[int]) -> Transfer:
    """A `Transfer` from its fields in TRANSFER_ROW order."""
    return _transfer_record(r[0], r[1:])


def transfer_record(t: Transfer) -> TransferRecord:
    """`t` as a `TransferRecord` (what whole-journal reads give)."""
    return TransferRecord._make(_transfer_row(t))


def _transfer_row(t: Transfer) -> tuple[int, ...]:
    return (
        t.id,
        t.debit_account_id,
        t.credit_account_id,
        t.amount,
        t.pending_id,
        t.timeout,
        t.ledger,
        t.code,
        t.user_data,
        t.flags,
        t.timestamp,
    )


def _transfer_record(transfer_id: int, s: Sequence[int]) -> Transfer:
    return Transfer(
        id=transfer_id,
        debit_account_id=s[DR],
        credit_account_id=s[CR],
        amount=s[AMOUNT],
        pending_id=s[PENDING_ID],
        timeout=s[TIMEOUT],
        ledger=s[LEDGER],
        code=s[CODE],
        user_data=s[USER_DATA],
        flags=s[FLAGS],
        timestamp=s[TIMESTAMP],
    )


def apply(
    state: Ledger, events: Sequence[Account | Transfer], now: int
) -> tuple[Ledger, list[Result]]:
    """The pure form: a new ledger and the results; `state` is left as it was.

    It copies the state (O(size)); a long-lived owner such as a store calls `Ledger.apply`,
    which changes the ledger in place with the same semantics.
    """
    new_state = state.copy()
    results = new_state.apply(events, now)
    return new_state, results
