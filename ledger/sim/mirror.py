"""The ledger side of the checks: every batch a store applies is applied again to a
`ReferenceLedger` (the transition kernel on plain values), and the results and the account
states must agree.

`ReferenceLedger` is used unchanged; only its maps are a faster `TotalMap` (`FastMap`: copying
one of 256 buckets instead of the whole map on every write), so a run of thousands of transfers
stays linear. `FastMap` is a `TotalMap` (same reads, same equality), so the kernel cannot tell.

The stores are subclassed (`RecordingMemoryStore`, `RecordingSqliteStore`) so that every
`transact`/`apply` reports its batch, `now`, results and whether it committed; the same hook
injects the simulation's store faults (a chosen write raises before it commits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, ItemsView, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.core import reference
from ledger.core.errors import LedgerError
from ledger.core.flags import TransferFlags
from ledger.core.limits import TIMESTAMP_MAX_NS
from ledger.core.ops import CONCRETE, TotalMap
from ledger.core.reference import ReferenceLedger
from ledger.core.results import Result
from ledger.core.types import Account, PendingStatus, Transfer
from ledger.store.base import Build, Rollback, Store, StoreUnavailableError, Then, TxView
from ledger.store.memory import MemoryStore
from ledger.store.sqlite import SqliteStore

_BUCKETS = 256
_RESOLVING = int(TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING)


class _FastItems(ItemsView[int, Any]):
    def __iter__(self) -> Iterator[tuple[int, Any]]:
        mapping: Any = getattr(self, "_mapping")  # noqa: B009 - typeshed does not declare it
        items: Iterator[tuple[int, Any]] = mapping.items_fast()
        return items


class FastMap(TotalMap):
    """A `TotalMap` whose `set` copies one bucket of 1/256th of the entries."""

    __slots__ = ("_buckets", "_count", "_mask")

    def __init__(self, default: Any, buckets: int = _BUCKETS) -> None:
        super().__init__(default)
        self._buckets: list[dict[int, Any]] = [{} for _ in range(buckets)]
        self._mask = buckets - 1
        self._count = 0

    def __getitem__(self, key: int) -> Any:
        return self._buckets[key & self._mask].get(key, self._default)

    def __iter__(self) -> Iterator[int]:
        for bucket in self._buckets:
            yield from bucket

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and key in self._buckets[key & self._mask]

    def items_fast(self) -> Iterator[tuple[int, Any]]:
        for bucket in self._buckets:
            yield from bucket.items()

    def items(self) -> ItemsView[int, Any]:
        return _FastItems(self)

    def changed_keys(self, before: TotalMap) -> list[int]:
        """Keys whose value may differ from `before` (an earlier version of this map): those
        of every bucket not shared with it."""
        if not isinstance(before, FastMap):
            return list(self)
        keys: list[int] = []
        for mine, theirs in zip(self._buckets, before._buckets, strict=True):
            if mine is not theirs:
                keys += mine
                keys += theirs
        return keys

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TotalMap):
            return NotImplemented
        if self._default != other.default:
            return False
        return dict(self.items()) == dict(other.items())

    def __hash__(self) -> int:
        return hash((self._default, frozenset(self.items())))

    def __repr__(self) -> str:
        return f"FastMap({self._default!r}, {dict(self.items())!r})"

    def set(self, key: int, value: Any) -> TotalMap:
        index = key & self._mask
        bucket = self._buckets[index]
        present = key in bucket
        if value == self._default:
            if not present:
                return self
            copy = dict(bucket)
            del copy[key]
            delta = -1
        else:
            if present and bucket[key] == value and type(bucket[key]) is type(value):
                return self
            copy = dict(bucket)
            copy[key] = value
            delta = 0 if present else 1
        buckets = list(self._buckets)
        buckets[index] = copy
        result = FastMap.__new__(FastMap)
        result._mask = self._mask
        result._default = self._default
        result._entries = {}
        result._hash = None
        result._buckets = buckets
        result._count = self._count + delta
        return result


def empty_reference() -> ReferenceLedger:
    """An empty `ReferenceLedger` whose maps are `FastMap`s (the kernel's Init): 256 buckets
    for the maps of transfers (thousands of entries), 16 for accounts and ledgers."""
    state = _kernel_module().empty_state()
    maps = {
        name: FastMap(
            getattr(state, name).default, 256 if name.startswith(("transfer", "failed")) else 16
        )
        for name in (f.name for f in dataclasses.fields(state))
        if name != "timestamp"
    }
    return ReferenceLedger(dataclasses.replace(state, **maps))


def _kernel_module() -> Any:
    """The kernel the reference ledger runs (a seeded bug's, when one is installed)."""
    return getattr(reference, "kernel")  # noqa: B009 - read at call time: it may be swapped


# --- recording stores ------------------------------------------------------------------------

COMMITTED = "committed"
ROLLED_BACK = "rolled back"
FORGOT_FAILURES = "applied, failures forgotten"  # memory store: Rollback with nothing accepted
PARTIAL = "applied, could not roll back"  # memory store: Rollback after accepted events


class InjectedFault(StoreUnavailableError):
    """The simulation's store fault: this write transaction failed before it committed."""


Batch = tuple[list[Account | Transfer], int, list[Result], str]
"""(events, now, results, outcome) of one batch the engine applied inside a store call."""


@dataclass(slots=True)
class Recorder:
    """Shared by every store object of a run: the batch hook and the armed fault."""

    on_batches: Callable[[list[Batch]], None]
    writes: int = 0
    armed: int = 0  # the write (1-based, counted from `arm`) that fails; 0 = none
    fired: int = 0
    failing: bool = False  # inside the store call that the armed fault fails

    def arm(self, write: int) -> None:
        self.writes = 0
        self.armed = write

    def disarm(self) -> None:
        self.armed = 0

    def _fire(self) -> bool:
        self.writes += 1
        if self.armed and self.writes == self.armed:
            self.armed = 0
            self.fired += 1
            return True
        return False


class _Capture:
    """What one store call (`apply` or `transact`) did: every batch the engine applied inside
    it (a store may apply more than one: due expiries first), which of them its `then` saw,
    and how the call ended."""

    __slots__ = ("batches", "raised", "rolled_back", "then_saw")

    def __init__(self) -> None:
        self.batches: list[tuple[list[Account | Transfer], int, list[Result]]] = []
        self.then_saw = -1  # index in `batches` of the batch `then` was called with
        self.rolled_back = False
        self.raised = False


def _fault() -> InjectedFault:
    return InjectedFault("injected fault: the write transaction failed before commit")


def _wrap_then(then: Then | None, capture: _Capture, fire: bool) -> Then:
    """`then`, noting how it ends; with `fire`, it raises after the original ran (inside the
    transaction: a SQL store rolls everything back)."""

    def wrapped(results: list[Result], cur: Any) -> None:
        capture.then_saw = len(capture.batches) - 1
        try:
            if then is not None:
                then(results, cur)
        except Rollback:
            capture.rolled_back = True
            raise
        except BaseException:
            capture.raised = True
            raise
        if fire:
            capture.raised = True
            raise _fault()

    return wrapped


def _wrap_build(build: Build, capture: _Capture, fire: bool, fault_in_then: bool) -> Build:
    def wrapped(view: TxView) -> tuple[Sequence[Account | Transfer], Then | None]:
        if fire and not fault_in_then:
            raise _fault()
        events, then = build(view)
        return events, _wrap_then(then, capture, fire and fault_in_then)

    return wrapped


def _recording(
    apply: Callable[..., list[Result]], captures: list[_Capture]
) -> Callable[..., list[Result]]:
    """The engine's `apply`/`apply_checked`, reporting each batch to the store call in
    progress."""

    def recorded(events: Sequence[Account | Transfer], now: int) -> list[Result]:
        results = apply(events, now)
        if captures:
            captures[0].batches.append((list(events), now, list(results)))
        return results

    return recorded


class _RecordingStore:
    """What both recording stores share: one capture per outermost store call (a store's
    `apply` may call its own `transact`), the armed fault, and the report to the recorder."""

    recorder: Recorder
    _captures: list[_Capture]
    fault_in_then: bool = False

    def _scoped(self, call: Callable[[_Capture, bool], list[Result]]) -> list[Result]:
        if self._captures:  # nested inside a call being recorded: that one reports
            return call(self._captures[0], False)
        capture = _Capture()
        fire = self.recorder._fire()
        self._captures.append(capture)
        self.recorder.failing = fire
        committed = False
        try:
            results = call(capture, fire)
            committed = True
            return results
        finally:
            self.recorder.failing = False
            self._captures.clear()
            self._report(capture, committed)

    def _report(self, capture: _Capture, committed: bool) -> None:
        raise NotImplementedError


class RecordingMemoryStore(_RecordingStore, MemoryStore):
    """A `MemoryStore` that reports every batch its engine applies. A fault raises before the
    batch is applied (the memory store cannot undo an applied batch)."""

    def __init__(self, recorder: Recorder) -> None:
        MemoryStore.__init__(self)
        self.recorder = recorder
        self._captures = []
        engine: Any = self._ledger
        engine.apply = _recording(engine.apply, self._captures)

    def apply(
        self, events: Sequence[Account | Transfer], now: int, *, then: Then | None = None
    ) -> list[Result]:
        def call(capture: _Capture, fire: bool) -> list[Result]:
            if fire:
                raise _fault()
            return MemoryStore.apply(self, events, now, then=_wrap_then(then, capture, False))

        return self._scoped(call)

    def transact(self, now: int, build: Build) -> list[Result]:
        return self._scoped(
            lambda capture, fire: MemoryStore.transact(
                self, now, _wrap_build(build, capture, fire, False)
            )
        )

    def _report(self, capture: _Capture, committed: bool) -> None:
        batches: list[Batch] = []
        for i, (events, at, results) in enumerate(capture.batches):
            outcome = COMMITTED
            if i == capture.then_saw and capture.rolled_back:
                accepted = any(r is Result.OK for r in results)
                outcome = PARTIAL if accepted else FORGOT_FAILURES
            elif i == capture.then_saw and capture.raised:
                outcome = PARTIAL
            batches.append((events, at, results, outcome))
        self.recorder.on_batches(batches)


class RecordingSqliteStore(_RecordingStore, SqliteStore):
    """A `SqliteStore` that reports every batch its engine applies. A fault raises inside the
    transaction, after the batch and its rows were written and before COMMIT, so SQLite rolls
    all of it back."""

    def __init__(self, path: str | Path, recorder: Recorder) -> None:
        SqliteStore.__init__(self, path, synchronous="NORMAL")
        self.recorder = recorder
        self._captures = []

    def _load(self, *args: Any, **kwargs: Any) -> Any:
        loaded = super()._load(*args, **kwargs)
        engine: Any = loaded.ledger
        engine.apply_checked = _recording(engine.apply_checked, self._captures)
        return loaded

    def apply(
        self, events: Sequence[Account | Transfer], now: int, *, then: Then | None = None
    ) -> list[Result]:
        return self._scoped(
            lambda capture, fire: SqliteStore.apply(
                self, events, now, then=_wrap_then(then, capture, fire)
            )
        )

    def transact(self, now: int, build: Build) -> list[Result]:
        return self._scoped(
            lambda capture, fire: SqliteStore.transact(
                self, now, _wrap_build(build, capture, fire, True)
            )
        )

    def _report(self, capture: _Capture, committed: bool) -> None:
        outcome = COMMITTED if committed and not capture.rolled_back else ROLLED_BACK
        self.recorder.on_batches([(e, at, r, outcome) for e, at, r in capture.batches])


# --- the mirror --------------------------------------------------------------------------------


ACCOUNT_FIELDS = (
    "ledger",
    "code",
    "flags",
    "user_data",
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
    "timestamp",
)


@dataclass(slots=True)
class Mirror:
    """The reference ledger kept in step with the store, and the problems found so far."""

    ref: ReferenceLedger = field(default_factory=empty_reference)
    before_last: ReferenceLedger = field(default_factory=empty_reference)
    problems: list[str] = field(default_factory=list)
    batches: int = 0
    touched: set[int] = field(default_factory=set)  # accounts a batch named or changed
    ghosts_checked: int = 0  # L2 on the ghost totals: every 50 batches and on `every`

    def on_batches(self, batches: list[Batch]) -> None:
        """The batches one store call applied, in order. Those of a call that rolled back are
        applied to a copy only (each sees the ones before it), to compare their results."""
        shadow = self.ref
        for events, now, results, outcome in batches:
            shadow = self._one(shadow, events, now, results, outcome)

    def _one(
        self,
        before: ReferenceLedger,
        events: Sequence[Account | Transfer],
        now: int,
        results: list[Result],
        outcome: str,
    ) -> ReferenceLedger:
        self.batches += 1
        try:
            after, expected = before.apply(events, now)
        except LedgerError as exc:
            self.problems.append(
                f"ledger: the store applied a batch at {now} that the reference refuses: {exc}"
            )
            return before
        if list(expected) != list(results):
            self.problems.append(_results_problem(events, now, results, expected))
        if outcome == ROLLED_BACK:
            return after
        if outcome == FORGOT_FAILURES:
            after = ReferenceLedger(dataclasses.replace(after.state, failed=before.state.failed))
        if outcome == PARTIAL:
            self.problems.append(
                f"store: a batch at {now} was rolled back after events were accepted; the "
                "memory store kept it (StoreError) instead of undoing it"
            )
        self._touch(events, before, after)
        self._probe_expiry(events, after)
        self.before_last = before
        self.ref = after
        return after

    def _probe_expiry(self, events: Sequence[Account | Transfer], after: ReferenceLedger) -> None:
        """The kernel's expiry on the pending transfers this batch resolved must do nothing:
        `ReferenceLedger` only ever expires pending ones, so a kernel that would expire a posted
        or voided transfer again is caught here, on the states the simulation reaches."""
        kernel = _kernel_module()
        for e in events:
            if isinstance(e, Transfer) and e.pending_id and e.flags & _RESOLVING:
                status = after.state.transfer_status[e.pending_id]
                if status in (kernel.STATUS_POSTED, kernel.STATUS_VOIDED):
                    _, expired = kernel.expire_pending(
                        after.state, e.pending_id, TIMESTAMP_MAX_NS, CONCRETE
                    )
                    if expired:
                        how = "posted" if status == kernel.STATUS_POSTED else "voided"
                        self.problems.append(
                            f"ledger: the kernel would expire transfer {e.pending_id} again "
                            f"after it was {how} (L5)"
                        )

    def _touch(
        self, events: Sequence[Account | Transfer], before: ReferenceLedger, after: ReferenceLedger
    ) -> None:
        s, t = after.state, self.touched
        for e in events:
            if isinstance(e, Account):
                t.add(e.id)
            else:
                t.add(e.debit_account_id)
                t.add(e.credit_account_id)
                if e.pending_id:
                    t.add(s.transfer_debit_account_id[e.pending_id])
                    t.add(s.transfer_credit_account_id[e.pending_id])
        for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted"):
            t.update(getattr(s, name).changed_keys(getattr(before.state, name)))
        t.update(s.account_exists.changed_keys(before.state.account_exists))

    # -- comparisons --------------------------------------------------------------------------

    def account_ids(self) -> list[int]:
        exists = self.ref.state.account_exists
        return sorted(i for i in exists if exists[i])

    def compare_accounts(self, store: Store, *, every: bool = False) -> list[str]:
        """The accounts this step's batches named or changed (`every`: all accounts) against
        the store's, field by field; and L2 on the reference's own ghost totals."""
        s = self.ref.state
        if every:
            ids = self.account_ids()
        else:
            ids = sorted(i for i in self.touched if i and s.account_exists[i])
        self.touched = set()
        found = {a.id: a for a in store.lookup_accounts(ids)}
        problems = []
        for i in ids:
            a = found.get(i)
            if a is None:
                problems.append(f"ledger: account {i} exists in the reference, not in the store")
                continue
            want = _ref_account(s, i)
            for name in ACCOUNT_FIELDS:
                if getattr(a, name) != want[name]:
                    problems.append(
                        f"ledger: account {i} {name} is {getattr(a, name)} in the store, "
                        f"{want[name]} in the reference"
                    )
                    break
        if every or self.batches // 50 != self.ghosts_checked // 50:
            self.ghosts_checked = self.batches
            problems += _ghost_problems(s, self.account_ids())
        return problems

    def compare_journal(self, store: Store) -> list[str]:
        """Every transfer and its pending status against the store's (the periodic check)."""
        s = self.ref.state
        transfers = [e for e in store.journal() if isinstance(e, Transfer)]
        problems = []
        ref_ids = sorted(i for i in s.transfer_exists if s.transfer_exists[i])
        if len(ref_ids) != len(transfers):
            problems.append(
                f"ledger: the store holds {len(transfers)} transfers, the reference {len(ref_ids)}"
            )
        for t in transfers:
            if not s.transfer_exists[t.id]:
                problems.append(f"ledger: transfer {t.id} is in the store, not in the reference")
                continue
            want = (
                s.transfer_debit_account_id[t.id],
                s.transfer_credit_account_id[t.id],
                s.transfer_amount[t.id],
                s.transfer_pending_id[t.id],
                s.transfer_timeout[t.id],
                s.transfer_code[t.id],
                s.transfer_user_data[t.id],
                s.transfer_flags[t.id],
                s.transfer_timestamp[t.id],
            )
            have = (
                t.debit_account_id,
                t.credit_account_id,
                t.amount,
                t.pending_id,
                t.timeout,
                t.code,
                t.user_data,
                t.flags,
                t.timestamp,
            )
            if want != have:
                problems.append(f"ledger: transfer {t.id} is {have} in the store, {want} in ref")
            status = s.transfer_status[t.id]
            if status and int(store.pending_status(t.id)) != status:
                problems.append(
                    f"ledger: pending transfer {t.id} is {store.pending_status(t.id).name} in the "
                    f"store, {PendingStatus(status).name} in the reference"
                )
        return problems

    def status(self, transfer_id: int) -> int:
        return int(self.ref.state.transfer_status[transfer_id])

    def expires_at(self, transfer_id: int) -> int:
        return int(self.ref.state.transfer_expires_at[transfer_id])


def _ref_account(s: Any, i: int) -> dict[str, int]:
    return {
        "ledger": s.account_ledger[i],
        "code": s.account_code[i],
        "flags": s.account_flags[i],
        "user_data": s.account_user_data[i],
        "debits_pending": s.debits_pending[i],
        "debits_posted": s.debits_posted[i],
        "credits_pending": s.credits_pending[i],
        "credits_posted": s.credits_posted[i],
        "timestamp": s.account_timestamp[i],
    }


def _ghost_problems(s: Any, ids: list[int]) -> list[str]:
    sums: dict[int, list[int]] = {}
    for i in ids:
        row = sums.setdefault(s.account_ledger[i], [0, 0, 0, 0])
        row[0] += s.debits_pending[i]
        row[1] += s.debits_posted[i]
        row[2] += s.credits_pending[i]
        row[3] += s.credits_posted[i]
    problems = []
    names = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    for ledger in sorted(sums):
        ghosts = (
            s.ledger_debits_pending[ledger],
            s.ledger_debits_posted[ledger],
            s.ledger_credits_pending[ledger],
            s.ledger_credits_posted[ledger],
        )
        for name, ghost, total in zip(names, ghosts, sums[ledger], strict=True):
            if ghost != total:
                problems.append(
                    f"ledger: reference ledger {ledger} total {name} is {ghost}, its accounts "
                    f"sum to {total} (L2)"
                )
        if sums[ledger][1] != sums[ledger][3] or sums[ledger][0] != sums[ledger][2]:
            problems.append(f"ledger: reference ledger {ledger} does not balance (L2)")
    return problems


def _results_problem(
    events: Sequence[Account | Transfer],
    now: int,
    results: Sequence[Result],
    expected: Sequence[Result],
) -> str:
    for i, (got, want) in enumerate(zip(results, expected, strict=False)):
        if got != want:
            e = events[i]
            what = f"{type(e).__name__.lower()} {e.id}"
            return (
                f"ledger: batch at {now}, event {i} ({what}): the store says {Result(got).name}, "
                f"the reference {Result(want).name}"
            )
    return (
        f"ledger: batch at {now}: {len(results)} results from the store, {len(expected)} expected"
    )
