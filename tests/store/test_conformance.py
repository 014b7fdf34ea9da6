"""One conformance suite, run unchanged against every store kind (memory, SQLite, PostgreSQL).

A Hypothesis state machine applies random batches (repeated ids, pending/post/void, balancing,
linked chains closed and left open, expiries, time moving back and forth, malformed batches) to
a store and to an in-memory `Ledger`, and after every step requires the same results and the
same state through every read of the `Store` interface, a verifying hash chain and the
invariants of specs/ledger.py on the store's own journal. Plain tests then pin each method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ledger import (
    BATCH_EVENTS_MAX,
    ID_MAX,
    NS_PER_SECOND,
    Account,
    BatchTooLargeError,
    Expiry,
    InvalidEventError,
    InvalidTimeError,
    Ledger,
    LedgerError,
    PendingStatus,
    Result,
    Transfer,
)
from ledger.core.engine import transfer_record
from ledger.core.limits import TIMESTAMP_MAX_NS
from ledger.store import Store, StoreError
from tests.core.strategies import (
    ACCOUNT_IDS,
    LATE_EPOCH_NS,
    MISSING_ACCOUNT_ID,
    TRANSFER_IDS,
    Event,
    balancing_scenarios,
    batch_events,
    scaled,
    two_phase_scenarios,
)
from tests.store.crash_child import differences, violations

MakeStore = Callable[[], Store]  # the `make_store` fixture (tests/store/conftest.py)
R = Result
NS = NS_PER_SECOND
PENDING, POST, VOID, LINKED, HISTORY = 2, 4, 8, 1, 8


def kind_of(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["make_store"])


def agree(store: Store, ledger: Ledger, account_ids: set[int], transfer_ids: set[int]) -> None:
    journal = list(store.journal())
    problems = differences(store, ledger, sorted(account_ids), sorted(transfer_ids), journal)
    problems += violations(store, journal)
    problems += [
        f"{entry}: {f.name} is a {type(value).__name__}, not an int"
        for entry in journal
        for f in fields(entry)
        if isinstance(value := getattr(entry, f.name), bool) or not isinstance(value, int)
    ]
    assert problems == []


# --- the state machine ------------------------------------------------------------------------

GOOD = Transfer(id=3, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1)
OPEN = Account(id=7, ledger=1, code=1)
MALFORMED: list[tuple[str, Any, Any]] = [
    ("negative amount", [replace(GOOD, amount=-1)], NS),
    ("float amount", [replace(GOOD, amount=1.5)], NS),
    ("bool id", [replace(OPEN, id=True)], NS),
    ("ledger too large", [replace(OPEN, ledger=2**32)], NS),
    ("user_data too large", [replace(GOOD, user_data=2**63)], NS),
    ("not a record", [OPEN, {"id": 8}], NS),
    ("a string", "accounts", NS),
    ("not a sequence", None, NS),
    ("too many events", [replace(OPEN, id=10 + i) for i in range(BATCH_EVENTS_MAX + 1)], NS),
    ("negative now", [OPEN], -1),
    ("float now", [OPEN], 1.0),
    ("bool now", [OPEN], True),
    ("now beyond the end of time", [OPEN], TIMESTAMP_MAX_NS + 1),
    # Passes the structural checks, then the ledger finds no room for two timestamps: raised
    # inside the store's write transaction, which must roll back.
    ("no room for the batch", [OPEN, replace(OPEN, id=8)], TIMESTAMP_MAX_NS),
]

_epoch = st.sampled_from((0, 0, 0, LATE_EPOCH_NS))
_step_seconds = st.sampled_from((0, 0, 1, 1, 1, 2, 3, 4))
_step_offset_ns = st.sampled_from((0, 0, 0, 0, 1, 2, -1, -2, -3 * NS))
_action = st.sampled_from(("batch",) * 5 + ("valid",) * 4 + ("empty", "malformed"))
_valid_kind = st.sampled_from(
    ("single", "single", "pending", "pending", "post", "void", "replay", "linked")
)
_valid_amount = st.sampled_from((1, 2, 5, 10, 20))
_pair = st.sampled_from([(d, c) for d in ACCOUNT_IDS for c in ACCOUNT_IDS if d != c])


class StoreAgainstCore(RuleBasedStateMachine):
    """A store and a `Ledger` fed the same batches; after every step they must agree."""

    def __init__(self, make_store: MakeStore) -> None:
        super().__init__()
        self.store = make_store()
        self.ledger = Ledger()
        self.seen: list[Event] = []
        self.now = 0
        self.account_ids = {*ACCOUNT_IDS, MISSING_ACCOUNT_ID}
        self.transfer_ids = set(TRANSFER_IDS)
        self.next_id = 100  # ids of `valid_batch`, above the strategies' pool

    @initialize(data=st.data(), epoch=_epoch, start=st.integers(0, 3))
    def open_accounts(self, data: st.DataObject, epoch: int, start: int) -> None:
        """The first batch opens accounts 1, 2, ... (now and then with a defect)."""
        self.now = epoch + start * NS
        self.apply(data.draw(batch_events(self.seen, first=True)))

    @rule(data=st.data(), action=_action, step=_step_seconds, offset=_step_offset_ns)
    def step(self, data: st.DataObject, action: str, step: int, offset: int) -> None:
        self.now = max(0, self.now + step * NS + offset)
        if action == "batch":
            self.apply(data.draw(batch_events(self.seen)))
        elif action == "valid":
            self.apply(self.valid_batch(data))
        elif action == "empty":  # applies nothing but the expiries that have come due
            assert self.store.apply([], self.now) == self.ledger.apply([], self.now) == []
        else:
            self.malformed(*data.draw(st.sampled_from(MALFORMED)))

    def valid_batch(self, data: st.DataObject) -> list[Event]:
        """Mostly accepted events with fresh ids (the core's strategies favour rejections): money
        moved, holds opened with short timeouts, posted, voided and left to expire, replays, and
        linked pairs, so that every table a store keeps is written often."""
        events: list[Event] = []
        pendings = [e for e in self.seen if type(e) is Transfer and e.flags & PENDING]
        for _ in range(data.draw(st.integers(1, 8))):
            kind = data.draw(_valid_kind)
            self.next_id += 1
            if kind in ("post", "void") and pendings:
                p = data.draw(st.sampled_from(pendings))
                amount = (
                    data.draw(st.sampled_from((p.amount, max(1, p.amount // 2))))
                    if kind == "post"
                    else 0
                )
                event = Transfer(
                    id=self.next_id,
                    pending_id=p.id,
                    amount=amount,
                    flags=POST if kind == "post" else VOID,
                )
            elif kind == "replay" and self.seen:
                replayed = data.draw(st.sampled_from(self.seen))
                event = replace(replayed, flags=replayed.flags & ~LINKED)
            else:
                debit, credit = data.draw(_pair)
                pending = kind == "pending"
                event = Transfer(
                    id=self.next_id,
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=data.draw(_valid_amount),
                    timeout=data.draw(st.integers(0, 3)) if pending else 0,
                    ledger=1,
                    code=1,
                    flags=PENDING if pending else 0,
                )
            if kind == "linked":
                event = replace(event, flags=event.flags | LINKED)
            self.seen.append(event)
            events.append(event)
        return events

    def apply(self, events: list[Event]) -> None:
        self.account_ids |= {e.id for e in events if type(e) is Account}
        self.transfer_ids |= {e.id for e in events if type(e) is Transfer}
        try:
            expected = self.ledger.apply(events, self.now)
        except LedgerError as error:  # the strategies can run into the end of time
            with pytest.raises(type(error)):
                self.store.apply(events, self.now)
            return
        assert self.store.apply(events, self.now) == expected

    def malformed(self, name: str, events: Any, now: Any) -> None:
        journal = list(self.store.journal())
        failed = self.store.failed_ids()
        with pytest.raises(LedgerError) as raised:
            self.ledger.apply(events, now)
        with pytest.raises(type(raised.value)):
            self.store.apply(events, now)
        assert list(self.store.journal()) == journal, name
        assert self.store.failed_ids() == failed, name

    @invariant()
    def store_agrees_with_core(self) -> None:
        agree(self.store, self.ledger, self.account_ids, self.transfer_ids)

    def teardown(self) -> None:
        self.store.close()


# Examples per store kind: a PostgreSQL store is a fresh database per example.
EXAMPLES = {"memory": 200, "sqlite": 200, "postgres": 50}


def test_store_agrees_with_core_on_random_batches(
    make_store: MakeStore, request: pytest.FixtureRequest
) -> None:
    run_state_machine_as_test(
        lambda: StoreAgainstCore(make_store),
        settings=settings(max_examples=scaled(EXAMPLES[kind_of(request)]), stateful_step_count=30),
    )


@pytest.mark.parametrize(
    "scenarios", [two_phase_scenarios(), balancing_scenarios()], ids=["two_phase", "balancing"]
)
def test_store_agrees_with_core_on_scenarios(make_store: MakeStore, scenarios: Any) -> None:
    """Deadlines landing a few ns around events, and balancing transfers with holds and replays:
    the scenario strategies the core is tested with, here through a store."""

    @given(scenarios)
    @settings(max_examples=scaled(25))
    def check(scenario: list[tuple[list[Event], int]]) -> None:
        with make_store() as store:
            ledger = Ledger()
            ids: set[int] = set()
            for events, now in scenario:
                ids |= {e.id for e in events} | {
                    e.pending_id for e in events if type(e) is Transfer
                }
                assert store.apply(events, now) == ledger.apply(events, now)
                agree(store, ledger, ids | {9}, ids)

    check()


# --- each method, plainly -------------------------------------------------------------------------


def opened(make_store: MakeStore, *accounts: Account) -> Store:
    store = make_store()
    accounts = accounts or tuple(Account(id=i, ledger=1, code=1) for i in (1, 2, 3))
    assert store.apply(list(accounts), NS) == [R.OK] * len(accounts)
    return store


def move(
    transfer_id: int, amount: int = 10, debit: int = 1, credit: int = 2, flags: int = 0, **more: int
) -> Transfer:
    return Transfer(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=1,
        code=1,
        flags=flags,
        **more,
    )


def test_apply_gives_one_result_per_event_in_order(make_store: MakeStore) -> None:
    store = opened(make_store)
    results = store.apply(
        [
            move(1),
            move(1),
            move(1, amount=11),
            move(2, credit=9),
            move(2),
            move(3, flags=LINKED),
            move(4, debit=9),
        ],
        2 * NS,
    )
    assert results == [
        R.OK,
        R.EXISTS,
        R.EXISTS_WITH_DIFFERENT_AMOUNT,
        R.CREDIT_ACCOUNT_NOT_FOUND,
        R.ID_ALREADY_FAILED,
        R.LINKED_EVENT_FAILED,
        R.DEBIT_ACCOUNT_NOT_FOUND,
    ]
    assert [t.id for t in store.lookup_transfers([1, 2, 3, 4])] == [1]


def test_lookup_accounts_keeps_the_order_asked_and_skips_missing(make_store: MakeStore) -> None:
    store = opened(make_store)
    store.apply([move(1, amount=7)], 2 * NS)
    found = store.lookup_accounts([3, 9, 1, 2, 1])
    assert [a.id for a in found] == [3, 1, 2, 1]
    assert (found[1].debits_posted, found[2].credits_posted, found[0].debits_posted) == (7, 7, 0)
    assert [a.timestamp for a in found] == [NS + 2, NS, NS + 1, NS]
    assert store.lookup_accounts([]) == []


def test_lookup_transfers_keeps_the_order_asked_and_skips_missing(make_store: MakeStore) -> None:
    store = opened(make_store)
    store.apply([move(5), move(6, amount=3, user_data=4)], 2 * NS)
    found = store.lookup_transfers([6, 7, 5, 6])
    assert [(t.id, t.amount, t.user_data) for t in found] == [(6, 3, 4), (5, 10, 0), (6, 3, 4)]
    assert found[1] == move(5, timestamp=2 * NS)
    assert store.lookup_transfers([]) == []


def test_many_ids_at_once(make_store: MakeStore) -> None:
    """More ids than one SQL statement takes as parameters (SQLite: 32,766)."""
    store = opened(make_store)
    store.apply([move(i, amount=1) for i in range(1, 2001)], 2 * NS)
    ids = list(range(40_000, 0, -1))
    assert [t.id for t in store.lookup_transfers(ids)] == list(range(2000, 0, -1))
    assert [a.id for a in store.lookup_accounts(ids)] == [3, 2, 1]


def test_pending_status_through_the_two_phase_lifecycle(make_store: MakeStore) -> None:
    store = opened(make_store)
    pendings = [move(i, flags=PENDING, timeout=1 if i == 13 else 0) for i in (10, 11, 12, 13)]
    store.apply([*pendings, move(14)], 2 * NS)
    assert [store.pending_status(i) for i in (10, 13, 14, 99)] == [
        PendingStatus.PENDING,
        PendingStatus.PENDING,
        PendingStatus.NONE,
        PendingStatus.NONE,
    ]
    results = store.apply(
        [
            Transfer(id=20, pending_id=10, amount=4, flags=POST),
            Transfer(id=21, pending_id=11, flags=VOID),
            Transfer(id=22, pending_id=10, amount=4, flags=POST),
        ],
        3 * NS,
    )
    assert results == [R.OK, R.OK, R.PENDING_TRANSFER_ALREADY_POSTED]
    assert store.apply([], 4 * NS) == []  # 13's timeout (1 s) has passed: it expires
    statuses = [store.pending_status(i) for i in (10, 11, 12, 13, 20)]
    assert statuses == [
        PendingStatus.POSTED,
        PendingStatus.VOIDED,
        PendingStatus.PENDING,
        PendingStatus.EXPIRED,
        PendingStatus.NONE,
    ]
    a1, a2 = store.lookup_accounts([1, 2])
    assert (a1.debits_pending, a1.debits_posted, a2.credits_pending, a2.credits_posted) == (
        10,
        14,
        10,
        14,
    )


def _hold_then_clock(store: Store) -> None:
    """A hold of 10 made at 2 s with a 1 s timeout (due at 3 s), then a transfer that puts the
    clock at 3 s less 1 ns: a batch at any `now` is timed at 3 s or later and expires it."""
    assert store.apply([move(10, flags=PENDING, timeout=1)], 2 * NS) == [R.OK]
    assert store.apply([move(11, amount=1, debit=3)], 3 * NS - 1) == [R.OK]


def _state(store: Store) -> tuple[Any, ...]:
    return (
        store.pending_status(10),
        store.lookup_accounts([1, 2, 3]),
        list(store.journal()),
        store.verify_chain(),
    )


@pytest.mark.parametrize("now", [2 * NS, 3 * NS - 1, 3 * NS, 9 * NS], ids=str)
def test_expire_due_does_what_an_empty_batch_does(make_store: MakeStore, now: int) -> None:
    """Whether `now` is behind the clock, just before the hold is due or past it."""
    expired, batch = opened(make_store), opened(make_store)
    for store in (expired, batch):
        _hold_then_clock(store)
    expired.expire_due(now)
    assert batch.apply([], now) == []
    assert _state(expired) == _state(batch)
    assert expired.pending_status(10) is PendingStatus.EXPIRED
    assert expired.lookup_accounts([1])[0].debits_pending == 0


def test_expire_due_leaves_a_hold_not_yet_due(make_store: MakeStore) -> None:
    store = opened(make_store)
    assert store.apply([move(10, flags=PENDING, timeout=5)], 2 * NS) == [R.OK]
    before = _state(store)
    store.expire_due(6 * NS)
    assert _state(store) == before
    assert store.pending_status(10) is PendingStatus.PENDING


def _counting_writes(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets a 1 for each write transaction `store` opens from now on."""
    writes: list[int] = []
    real = store._write_transaction  # type: ignore[attr-defined]

    def counted() -> Any:
        writes.append(1)
        return real()

    monkeypatch.setattr(store, "_write_transaction", counted)
    return writes


@pytest.mark.parametrize("make_store", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("check", ["expire_due", "accounts_at"])
def test_a_write_transaction_is_opened_only_when_a_hold_is_due(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch, check: str
) -> None:
    store = opened(make_store)
    assert store.apply([move(10, flags=PENDING, timeout=5)], 2 * NS) == [R.OK]
    writes = _counting_writes(store, monkeypatch)
    if check == "expire_due":
        store.expire_due(6 * NS)
    else:  # nothing due: one read, the accounts in the order asked
        found = store.accounts_at([2, 99, 1], 6 * NS)
        assert found == store.lookup_accounts([2, 99, 1]) and [a.id for a in found] == [2, 1]
        assert found[1].debits_pending == 10
    assert writes == []
    if check == "expire_due":
        store.expire_due(8 * NS)
    else:
        assert store.accounts_at([1], 8 * NS)[0].debits_pending == 0
    assert writes == [1] and store.pending_status(10) is PendingStatus.EXPIRED


def test_expire_due_refuses_a_time_out_of_range(make_store: MakeStore) -> None:
    store = opened(make_store)
    with pytest.raises(InvalidTimeError):
        store.expire_due(-1)


@pytest.mark.parametrize("now", [2 * NS, 3 * NS - 1, 3 * NS, 9 * NS], ids=str)
def test_accounts_at_reads_what_expire_due_then_lookup_accounts_read(
    make_store: MakeStore, now: int
) -> None:
    one, other = opened(make_store), opened(make_store)
    for store in (one, other):
        _hold_then_clock(store)
    found = one.accounts_at([3, 1, 99, 2], now)
    other.expire_due(now)
    assert found == other.lookup_accounts([3, 1, 99, 2])
    assert [a.id for a in found] == [3, 1, 2]  # in the order asked, unknown ids left out
    assert _state(one) == _state(other)
    assert found[1].debits_pending == 0  # the hold on account 1 expired first


def test_accounts_at_refuses_a_time_out_of_range(make_store: MakeStore) -> None:
    store = opened(make_store)
    with pytest.raises(InvalidTimeError):
        store.accounts_at([1], -1)


def test_account_history_only_for_accounts_with_the_flag(make_store: MakeStore) -> None:
    store = opened(
        make_store,
        Account(id=1, ledger=1, code=1, flags=HISTORY),
        Account(id=2, ledger=1, code=1),
    )
    store.apply(
        [move(1, amount=5, debit=2, credit=1), move(2, amount=3, debit=1, credit=2, flags=PENDING)],
        2 * NS,
    )
    store.apply([Transfer(id=3, pending_id=2, flags=VOID)], 3 * NS)
    history = store.account_history(1)
    assert [(h.timestamp, h.debits_pending, h.credits_posted) for h in history] == [
        (2 * NS, 0, 5),
        (2 * NS + 1, 3, 5),
        (3 * NS, 0, 5),
    ]
    assert all(h.account_id == 1 for h in history)
    assert store.account_history(2) == []
    assert store.account_history(9) == []


def test_journal_is_every_entry_in_timestamp_order(make_store: MakeStore) -> None:
    store = opened(make_store)
    store.apply([move(1, flags=PENDING, timeout=1), move(2, amount=4), move(3, debit=9)], 2 * NS)
    store.apply([Account(id=4, ledger=1, code=1)], 5 * NS)
    journal = list(store.journal())
    assert [(type(e).__name__, e.timestamp) for e in journal] == [
        ("Account", NS),
        ("Account", NS + 1),
        ("Account", NS + 2),
        ("Transfer", 2 * NS),
        ("Transfer", 2 * NS + 1),
        ("Expiry", 5 * NS),
        ("Account", 5 * NS + 1),
    ]
    assert journal[5] == Expiry(pending_id=1, amount=10, timestamp=5 * NS)
    assert journal[0] == Account(
        id=1, ledger=1, code=1, debits_posted=4, timestamp=NS
    )  # totals now


def test_failed_ids_remember_transient_failures_only(make_store: MakeStore) -> None:
    store = opened(
        make_store, Account(id=1, ledger=1, code=1, flags=2), Account(id=2, ledger=1, code=1)
    )
    results = store.apply(
        [move(1), move(2, credit=9), move(3, amount=0), Transfer(id=4, pending_id=77, flags=VOID)],
        2 * NS,
    )
    assert results == [
        R.EXCEEDS_CREDITS,
        R.CREDIT_ACCOUNT_NOT_FOUND,
        R.AMOUNT_MUST_NOT_BE_ZERO,
        R.PENDING_TRANSFER_NOT_FOUND,
    ]
    assert store.failed_ids() == frozenset({1, 2, 4})
    assert store.apply([move(1, debit=2, credit=1)], 3 * NS) == [R.ID_ALREADY_FAILED]


def test_verify_chain_on_an_empty_and_a_used_store(make_store: MakeStore) -> None:
    store = make_store()
    assert store.verify_chain().ok and store.verify_chain().entries == 0
    store.apply([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1), move(1)], NS)
    report = store.verify_chain()
    assert (report.ok, report.entries, report.first_bad, report.problem) == (True, 3, None, "")


def test_a_snapshot_gives_what_the_separate_reads_give(make_store: MakeStore) -> None:
    store = opened(make_store)
    store.apply([move(1, flags=PENDING, timeout=1), move(2, flags=PENDING)], 2 * NS)
    store.apply([Transfer(id=4, pending_id=2, amount=6, flags=POST), move(3, credit=9)], 3 * NS)
    store.apply([move(5)], 5 * NS)  # after transfer 1's timeout: it expires
    snapshot, also = store.snapshot(lambda cursor, ledger: ("read with it", ledger))
    assert also == ("read with it", snapshot)  # `also` is given the ledger as read
    assert snapshot.journal == [
        transfer_record(e) if isinstance(e, Transfer) else e for e in store.journal()
    ]
    assert snapshot.verify_chain() == store.verify_chain() and snapshot.verify_chain().ok
    assert snapshot.statuses == store.statuses()
    assert snapshot.statuses == {1: PendingStatus.EXPIRED, 2: PendingStatus.POSTED}
    assert snapshot.failed == store.failed_ids() == frozenset({3})


@pytest.mark.parametrize(("name", "events", "now"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_raises_and_writes_nothing(
    make_store: MakeStore, name: str, events: Any, now: Any
) -> None:
    store = opened(make_store)
    store.apply([move(1, flags=PENDING, timeout=1)], 2 * NS)
    journal, failed = list(store.journal()), store.failed_ids()
    with pytest.raises(LedgerError):
        store.apply(events, now)
    assert list(store.journal()) == journal
    assert store.failed_ids() == failed
    assert store.pending_status(1) == PendingStatus.PENDING
    assert store.verify_chain().ok
    # The store is still usable, and its clock did not move.
    assert store.apply([move(2)], 2 * NS) == [R.OK]
    assert store.lookup_transfers([2])[0].timestamp == 2 * NS + 1


def test_a_malformed_event_after_good_ones_applies_none_of_them(make_store: MakeStore) -> None:
    store = opened(make_store)
    with pytest.raises(InvalidEventError, match="event 2"):
        store.apply([move(1), Account(id=5, ledger=1, code=1), move(2, amount=-5)], 2 * NS)
    assert store.lookup_transfers([1]) == [] and store.lookup_accounts([5]) == []


@pytest.mark.parametrize(
    ("error", "events", "now"),
    [
        (BatchTooLargeError, [Account(id=1, ledger=1, code=1)] * (BATCH_EVENTS_MAX + 1), NS),
        (InvalidTimeError, [], -1),
        (InvalidEventError, [Account(id=ID_MAX + 1, ledger=1, code=1)], NS),
    ],
    ids=["batch", "time", "event"],
)
def test_malformed_input_raises_the_core_error(
    make_store: MakeStore, error: type[LedgerError], events: list[Event], now: int
) -> None:
    with make_store() as store, pytest.raises(error):
        store.apply(events, now)


def test_the_largest_batch_is_applied_whole(make_store: MakeStore) -> None:
    store = opened(make_store)
    batch = [
        move(i, amount=1, flags=PENDING, timeout=1) if i % 3 == 0 else move(i, amount=1)
        for i in range(1, BATCH_EVENTS_MAX + 1)
    ]
    ledger = Ledger()
    ledger.apply([Account(id=i, ledger=1, code=1) for i in (1, 2, 3)], NS)
    assert store.apply(batch, 2 * NS) == ledger.apply(batch, 2 * NS) == [R.OK] * BATCH_EVENTS_MAX
    assert store.apply([], 9 * NS) == ledger.apply([], 9 * NS)  # 2,730 expiries at once
    agree(store, ledger, {1, 2, 3}, {1, 3, BATCH_EVENTS_MAX})


def test_two_stores_are_independent(make_store: MakeStore) -> None:
    first, second = opened(make_store), make_store()
    first.apply([move(1)], 2 * NS)
    assert second.lookup_accounts([1, 2]) == [] and list(second.journal()) == []
    assert first.lookup_transfers([1]) != []


def test_timestamps_keep_increasing_when_now_goes_back(make_store: MakeStore) -> None:
    store = opened(make_store)
    store.apply([move(1)], 5 * NS)
    store.apply([move(2), move(3)], 2 * NS)
    assert [t.timestamp for t in store.lookup_transfers([1, 2, 3])] == [
        5 * NS,
        5 * NS + 1,
        5 * NS + 2,
    ]


def test_ids_out_of_range_are_simply_not_found(
    make_store: MakeStore, request: pytest.FixtureRequest
) -> None:
    store = opened(make_store)
    huge, negative = 2**64, -1
    assert store.lookup_accounts([1, huge, negative, ID_MAX]) == store.lookup_accounts([1])
    assert store.lookup_transfers([huge, negative]) == []
    assert store.pending_status(huge) == PendingStatus.NONE
    assert store.account_history(huge) == []


# --- closing --------------------------------------------------------------------------------------


def test_close_releases_the_store(make_store: MakeStore, request: pytest.FixtureRequest) -> None:
    store = opened(make_store)
    store.close()
    store.close()  # closing twice is harmless
    calls: list[Callable[[], object]] = [
        lambda: store.apply([move(1)], 2 * NS),
        lambda: store.lookup_accounts([1]),
        lambda: store.lookup_transfers([1]),
        lambda: store.pending_status(1),
        lambda: store.account_history(1),
        lambda: list(store.journal()),
        lambda: store.failed_ids(),
        lambda: store.verify_chain(),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="closed"):
            call()


def test_a_store_is_a_context_manager_that_closes(
    make_store: MakeStore, request: pytest.FixtureRequest
) -> None:
    with opened(make_store) as store:
        assert store.apply([move(1)], 2 * NS) == [R.OK]
    with pytest.raises(StoreError):
        store.lookup_accounts([1])


def test_a_batch_with_the_changes_of_every_kind(make_store: MakeStore) -> None:
    """One batch that creates accounts, moves money, opens and resolves holds, fails a chain,
    and comes after an expiry: every table the store keeps is written at once."""
    store = opened(
        make_store, Account(id=1, ledger=1, code=1, flags=HISTORY), Account(id=2, ledger=1, code=1)
    )
    ledger = Ledger()
    ledger.apply(
        [Account(id=1, ledger=1, code=1, flags=HISTORY), Account(id=2, ledger=1, code=1)], NS
    )
    first = [move(1, flags=PENDING, timeout=1), move(2, flags=PENDING), move(3)]
    second = [
        Account(id=3, ledger=1, code=1, flags=LINKED),
        move(4, debit=3, credit=1, flags=LINKED),
        move(5, debit=1, credit=9),  # fails: the chain (account 3, transfer 4) is undone
        Account(id=4, ledger=1, code=1, flags=HISTORY),
        move(6, debit=1, credit=4),
        Transfer(id=7, pending_id=2, amount=6, flags=POST),
        Transfer(id=8, pending_id=1, flags=VOID),  # expired before this batch
    ]
    for events, now in ((first, 2 * NS), (second, 4 * NS)):
        assert store.apply(events, now) == ledger.apply(events, now)
    assert store.lookup_accounts([3]) == [] and store.failed_ids() == {5}
    agree(store, ledger, {1, 2, 3, 4}, set(range(1, 9)))


def test_replays_compare_with_the_stored_body(make_store: MakeStore) -> None:
    """A replay must compare with the stored body in a later batch, not one kept in memory."""
    store = opened(make_store)
    original = move(1, amount=10, flags=PENDING, timeout=5, user_data=3)
    store.apply([original], 2 * NS)
    replays = [
        original,
        replace(original, amount=9),
        replace(original, timeout=6),
        replace(original, user_data=4),
    ]
    assert store.apply(replays, 3 * NS) == [
        R.EXISTS,
        R.EXISTS_WITH_DIFFERENT_AMOUNT,
        R.EXISTS_WITH_DIFFERENT_TIMEOUT,
        R.EXISTS_WITH_DIFFERENT_USER_DATA,
    ]
