"""Focused tests of the ledger's semantics, one behaviour each, with exact expected numbers.

Most tests run twice: on the fast engine (`Ledger`) and on the reference (`ReferenceLedger`, the
kernel the proofs are about) through `ReferenceDriver`, which gives it the engine's read API.
The expiries journal and balance history exist only in the engine; those tests use it alone.

`CORPUS` is a table of crafted batches with their exact results; `test_corpus_reaches_every_
result` checks that together they produce every member of `Result`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import pytest

from ledger import (
    AMOUNT_MAX,
    ID_MAX,
    NS_PER_SECOND,
    Account,
    AccountBalance,
    AccountFlags,
    Expiry,
    Ledger,
    PendingStatus,
    Result,
    Transfer,
    TransferFlags,
)
from ledger.core.limits import TIMEOUT_MAX_SECONDS, TIMESTAMP_MAX_NS
from ledger.core.reference import ReferenceLedger

R = Result
NS = NS_PER_SECOND
LINKED = TransferFlags.LINKED
PENDING = TransferFlags.PENDING
POST = TransferFlags.POST_PENDING
VOID = TransferFlags.VOID_PENDING
BAL_DR = TransferFlags.BALANCING_DEBIT
BAL_CR = TransferFlags.BALANCING_CREDIT
DR_GUARD = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
CR_GUARD = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
CLOSED = AccountFlags.CLOSED
HISTORY = AccountFlags.HISTORY

T0 = 100 * NS  # `now` of the batch that opens the accounts
T1 = 200 * NS  # `now` of the first batch after it


# --- builders ---------------------------------------------------------------------------------


def account(id: int, flags: int = 0, ledger: int = 1, code: int = 1, **fields: int) -> Account:
    return Account(id=id, ledger=ledger, code=code, flags=flags, **fields)


def transfer(
    id: int, dr: int = 1, cr: int = 2, amount: int = 10, flags: int = 0, **fields: int
) -> Transfer:
    fields.setdefault("ledger", 1)
    fields.setdefault("code", 1)
    return Transfer(
        id=id, debit_account_id=dr, credit_account_id=cr, amount=amount, flags=flags, **fields
    )


def pending(id: int, dr: int = 1, cr: int = 2, amount: int = 10, **fields: int) -> Transfer:
    return transfer(id, dr, cr, amount, PENDING | fields.pop("flags", 0), **fields)


def post(id: int, pending_id: int, amount: int, **fields: int) -> Transfer:
    flags = POST | fields.pop("flags", 0)
    return Transfer(id=id, pending_id=pending_id, amount=amount, flags=flags, **fields)


def void(id: int, pending_id: int, amount: int = 0, **fields: int) -> Transfer:
    flags = VOID | fields.pop("flags", 0)
    return Transfer(id=id, pending_id=pending_id, amount=amount, flags=flags, **fields)


def linked(event: Account | Transfer) -> Account | Transfer:
    return dataclasses.replace(event, flags=int(event.flags) | int(LINKED))


# Accounts 1-4 on ledger 1, 5 on ledger 2, 6 closed, 7 and 8 guarded.
ACCOUNTS = [
    account(1),
    account(2),
    account(3),
    account(4),
    account(5, ledger=2),
    account(6, flags=CLOSED),
    account(7, flags=DR_GUARD),
    account(8, flags=CR_GUARD),
]


# --- the reference behind the engine's read API -----------------------------------------------


class ReferenceDriver:
    """`ReferenceLedger` (an immutable value) behind the engine's `apply` and reads."""

    def __init__(self) -> None:
        self.value = ReferenceLedger.empty()

    def apply(self, events: Sequence[Account | Transfer], now: int) -> list[Result]:
        self.value, results = self.value.apply(events, now)
        return results

    @property
    def timestamp(self) -> int:
        return int(self.value.state.timestamp)

    def lookup_account(self, i: int) -> Account | None:
        s = self.value.state
        if not s.account_exists[i]:
            return None
        return Account(
            id=i,
            ledger=s.account_ledger[i],
            code=s.account_code[i],
            flags=s.account_flags[i],
            user_data=s.account_user_data[i],
            debits_pending=s.debits_pending[i],
            debits_posted=s.debits_posted[i],
            credits_pending=s.credits_pending[i],
            credits_posted=s.credits_posted[i],
            timestamp=s.account_timestamp[i],
        )

    def lookup_transfer(self, i: int) -> Transfer | None:
        s = self.value.state
        if not s.transfer_exists[i]:
            return None
        return Transfer(
            id=i,
            debit_account_id=s.transfer_debit_account_id[i],
            credit_account_id=s.transfer_credit_account_id[i],
            amount=s.transfer_amount[i],
            pending_id=s.transfer_pending_id[i],
            timeout=s.transfer_timeout[i],
            ledger=s.transfer_ledger[i],
            code=s.transfer_code[i],
            user_data=s.transfer_user_data[i],
            flags=s.transfer_flags[i],
            timestamp=s.transfer_timestamp[i],
        )

    def pending_status(self, i: int) -> PendingStatus:
        return PendingStatus(self.value.state.transfer_status[i])

    def failed_ids(self) -> frozenset[int]:
        return frozenset(self.value.state.failed)


Driver = Any  # a Ledger or a ReferenceDriver


@pytest.fixture(params=[Ledger, ReferenceDriver], ids=["engine", "reference"])
def ledger(request: pytest.FixtureRequest) -> Driver:
    """A fresh ledger with ACCOUNTS opened at T0."""
    driver = request.param()
    assert driver.apply(ACCOUNTS, T0) == [R.OK] * len(ACCOUNTS)
    return driver


def totals(driver: Driver, account_id: int) -> tuple[int, int, int, int]:
    """(debits_pending, debits_posted, credits_pending, credits_posted)."""
    a = driver.lookup_account(account_id)
    assert a is not None, account_id
    return (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)


def state(driver: Driver, account_ids: Sequence[int] = range(1, 10)) -> object:
    """What a rejected event must leave alone: totals, transfers 1-300, failures, timestamp."""
    accounts = {i: driver.lookup_account(i) for i in account_ids}
    transfers = {i: driver.lookup_transfer(i) for i in range(1, 301)}
    statuses = {i: driver.pending_status(i) for i in range(1, 301)}
    return accounts, transfers, statuses, driver.failed_ids(), driver.timestamp


# --- single-phase transfers and balance guards -------------------------------------------------


def test_single_phase_transfer_moves_posted_totals(ledger: Driver) -> None:
    assert ledger.apply([transfer(10, dr=1, cr=2, amount=7)], T1) == [R.OK]
    assert totals(ledger, 1) == (0, 7, 0, 0)
    assert totals(ledger, 2) == (0, 0, 0, 7)
    stored = ledger.lookup_transfer(10)
    assert (stored.amount, stored.timestamp, stored.debit_account_id) == (7, T1, 1)


def test_debit_guard_counts_pending_debits(ledger: Driver) -> None:
    assert ledger.apply([transfer(10, dr=1, cr=7, amount=10)], T1) == [R.OK]
    assert ledger.apply([pending(11, dr=7, cr=2, amount=6)], T1) == [R.OK]
    # 6 pending + 5 > 10 credits posted, though posted debits alone (0) would allow it.
    assert ledger.apply([transfer(12, dr=7, cr=2, amount=5)], T1) == [R.EXCEEDS_CREDITS]
    assert ledger.apply([transfer(13, dr=7, cr=2, amount=4)], T1) == [R.OK]
    assert totals(ledger, 7) == (6, 4, 0, 10)


def test_credit_guard_is_the_mirror(ledger: Driver) -> None:
    assert ledger.apply([transfer(10, dr=8, cr=1, amount=10)], T1) == [R.OK]
    assert ledger.apply([pending(11, dr=2, cr=8, amount=6)], T1) == [R.OK]
    assert ledger.apply([transfer(12, dr=2, cr=8, amount=5)], T1) == [R.EXCEEDS_DEBITS]
    assert ledger.apply([transfer(13, dr=2, cr=8, amount=4)], T1) == [R.OK]
    assert totals(ledger, 8) == (0, 10, 6, 4)


# --- two-phase transfers -----------------------------------------------------------------------


def test_pending_holds_the_amount(ledger: Driver) -> None:
    assert ledger.apply([pending(10, amount=10)], T1) == [R.OK]
    assert totals(ledger, 1) == (10, 0, 0, 0)
    assert totals(ledger, 2) == (0, 0, 10, 0)
    assert ledger.pending_status(10) == PendingStatus.PENDING


def test_post_in_full(ledger: Driver) -> None:
    ledger.apply([pending(10, amount=10)], T1)
    assert ledger.apply([post(11, 10, 10)], T1) == [R.OK]
    assert totals(ledger, 1) == (0, 10, 0, 0)
    assert totals(ledger, 2) == (0, 0, 0, 10)
    assert ledger.pending_status(10) == PendingStatus.POSTED
    stored = ledger.lookup_transfer(11)
    # Zero fields of a post are stored as the pending transfer's.
    inherited = (stored.debit_account_id, stored.credit_account_id, stored.ledger, stored.code)
    assert inherited == (1, 2, 1, 1)


def test_partial_post_releases_the_remainder(ledger: Driver) -> None:
    ledger.apply([pending(10, amount=10)], T1)
    assert ledger.apply([post(11, 10, 4)], T1) == [R.OK]
    assert totals(ledger, 1) == (0, 4, 0, 0)
    assert totals(ledger, 2) == (0, 0, 0, 4)
    assert ledger.lookup_transfer(11).amount == 4


@pytest.mark.parametrize("amount", [0, 10])
def test_void_with_zero_or_the_exact_amount(ledger: Driver, amount: int) -> None:
    ledger.apply([pending(10, amount=10)], T1)
    assert ledger.apply([void(11, 10, amount)], T1) == [R.OK]
    assert totals(ledger, 1) == (0, 0, 0, 0)
    assert totals(ledger, 2) == (0, 0, 0, 0)
    assert ledger.pending_status(10) == PendingStatus.VOIDED
    assert ledger.lookup_transfer(11).amount == 10  # a void records what it released


@pytest.mark.parametrize("amount", [4, 11])
def test_void_with_another_amount_is_rejected(ledger: Driver, amount: int) -> None:
    ledger.apply([pending(10, amount=10)], T1)
    before = state(ledger)
    assert ledger.apply([void(11, 10, amount)], T1) == [R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT]
    assert state(ledger)[:4] == before[:4]
    assert ledger.pending_status(10) == PendingStatus.PENDING


def test_post_above_the_pending_amount_is_rejected(ledger: Driver) -> None:
    ledger.apply([pending(10, amount=10)], T1)
    assert ledger.apply([post(11, 10, 11)], T1) == [R.EXCEEDS_PENDING_TRANSFER_AMOUNT]
    assert totals(ledger, 1) == (10, 0, 0, 0)
    assert ledger.lookup_transfer(11) is None
    assert 11 not in ledger.failed_ids()


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (POST, POST, R.PENDING_TRANSFER_ALREADY_POSTED),
        (POST, VOID, R.PENDING_TRANSFER_ALREADY_POSTED),
        (VOID, POST, R.PENDING_TRANSFER_ALREADY_VOIDED),
        (VOID, VOID, R.PENDING_TRANSFER_ALREADY_VOIDED),
    ],
)
def test_a_pending_transfer_resolves_once(
    ledger: Driver, first: int, second: int, expected: Result
) -> None:
    ledger.apply([pending(10, amount=10)], T1)
    resolve = {POST: post, VOID: void}
    assert ledger.apply([resolve[first](11, 10, 10)], T1) == [R.OK]
    after_first = (totals(ledger, 1), totals(ledger, 2))
    assert ledger.apply([resolve[second](12, 10, 10)], T1) == [expected]
    assert (totals(ledger, 1), totals(ledger, 2)) == after_first
    assert ledger.lookup_transfer(12) is None


# --- expiry --------------------------------------------------------------------------------


def test_expiry_happens_exactly_at_the_timeout(ledger: Driver) -> None:
    assert ledger.apply([pending(10, amount=10, timeout=2)], T1) == [R.OK]  # timestamp T1
    deadline = T1 + 2 * NS
    ledger.apply([], deadline - 1)
    assert ledger.pending_status(10) == PendingStatus.PENDING
    assert totals(ledger, 1) == (10, 0, 0, 0)
    ledger.apply([], deadline)
    assert ledger.pending_status(10) == PendingStatus.EXPIRED
    assert totals(ledger, 1) == (0, 0, 0, 0)
    assert totals(ledger, 2) == (0, 0, 0, 0)
    assert ledger.timestamp == deadline  # the expiry took a timestamp of its own
    assert ledger.apply([post(11, 10, 10)], deadline + NS) == [R.PENDING_TRANSFER_EXPIRED]
    assert ledger.apply([void(12, 10)], deadline + NS) == [R.PENDING_TRANSFER_EXPIRED]
    assert totals(ledger, 1) == (0, 0, 0, 0)


def test_expiry_is_journalled_before_the_batch_events() -> None:
    ledger = Ledger()
    ledger.apply(ACCOUNTS, T0)
    ledger.apply([pending(10, amount=10, timeout=1), pending(11, amount=3, timeout=1)], T1)
    deadline = T1 + NS  # of transfer 10; transfer 11 (timestamp T1 + 1) is due 1 ns later
    assert ledger.apply([account(9)], deadline) == [R.OK]
    assert ledger.expiries() == [Expiry(pending_id=10, amount=10, timestamp=deadline)]
    assert ledger.lookup_account(9).timestamp == deadline + 1
    assert ledger.apply([account(10)], deadline + 2) == [R.OK]
    assert ledger.expiries()[1:] == [Expiry(pending_id=11, amount=3, timestamp=deadline + 2)]
    assert ledger.lookup_account(10).timestamp == deadline + 3
    journal = ledger.journal()
    assert journal[-4:] == [
        ledger.expiries()[0],
        ledger.lookup_account(9),
        ledger.expiries()[1],
        ledger.lookup_account(10),
    ]


def test_post_after_the_deadline_in_the_same_batch_is_expired(ledger: Driver) -> None:
    assert ledger.apply([pending(10, amount=10, timeout=1)], T1) == [R.OK]
    deadline = T1 + NS
    # The batch starts 1 ns before the deadline: its second event lands exactly on it.
    assert ledger.apply([account(9), post(11, 10, 10)], deadline - 1) == [
        R.OK,
        R.PENDING_TRANSFER_EXPIRED,
    ]
    assert totals(ledger, 1) == (10, 0, 0, 0)  # released by the next batch, not by the post
    assert 11 not in ledger.failed_ids()
    ledger.apply([], deadline + 5)
    assert ledger.pending_status(10) == PendingStatus.EXPIRED
    assert totals(ledger, 1) == (0, 0, 0, 0)


def test_post_just_before_the_deadline_succeeds(ledger: Driver) -> None:
    ledger.apply([pending(10, amount=10, timeout=1)], T1)
    assert ledger.apply([post(11, 10, 6)], T1 + NS - 1) == [R.OK]
    assert totals(ledger, 1) == (0, 6, 0, 0)
    ledger.apply([], T1 + 5 * NS)
    assert ledger.pending_status(10) == PendingStatus.POSTED


def test_zero_timeout_never_expires(ledger: Driver) -> None:
    ledger.apply([pending(10, amount=10, timeout=0)], T1)
    ledger.apply([], T1 + 10**6 * NS)
    assert ledger.pending_status(10) == PendingStatus.PENDING
    assert ledger.apply([post(11, 10, 10)], T1 + 10**6 * NS) == [R.OK]


# --- linked chains -----------------------------------------------------------------------------


def test_linked_chain_applies_whole(ledger: Driver) -> None:
    chain = [
        linked(account(9)),
        linked(transfer(10, dr=1, cr=9, amount=5)),
        transfer(11, dr=9, cr=2, amount=3),
    ]
    assert ledger.apply(chain, T1) == [R.OK, R.OK, R.OK]
    assert totals(ledger, 9) == (0, 3, 0, 5)
    assert ledger.lookup_account(9).timestamp == T1
    assert ledger.lookup_transfer(11).timestamp == T1 + 2


def test_linked_chain_failure_rolls_back_everything(ledger: Driver) -> None:
    before = state(ledger)
    chain = [
        linked(account(9)),
        linked(transfer(10, dr=1, cr=9, amount=5)),
        linked(transfer(11, dr=9, cr=2, amount=0)),
        transfer(12, dr=1, cr=2, amount=1),
    ]
    assert ledger.apply([*chain, transfer(13, amount=2)], T1) == [
        R.LINKED_EVENT_FAILED,
        R.LINKED_EVENT_FAILED,
        R.AMOUNT_MUST_NOT_BE_ZERO,
        R.LINKED_EVENT_FAILED,
        R.OK,  # after the chain: applied on its own
    ]
    assert ledger.lookup_account(9) is None
    assert ledger.lookup_transfer(10) is None and ledger.lookup_transfer(12) is None
    assert totals(ledger, 1) == (0, 2, 0, 0)
    assert ledger.failed_ids() == before[3]
    assert ledger.lookup_transfer(13).timestamp == T1 + 4  # the chain still used its timestamps
    # Nothing of the chain is remembered: the same events succeed once corrected.
    fixed = [*chain[:2], linked(transfer(11, dr=9, cr=2, amount=4)), chain[3]]
    assert ledger.apply(fixed, T1) == [R.OK] * 4


def test_linked_chain_remembers_the_transient_failure_only(ledger: Driver) -> None:
    chain = [linked(transfer(10, amount=1)), transfer(11, dr=7, cr=2, amount=1)]
    assert ledger.apply(chain, T1) == [R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS]
    assert ledger.failed_ids() == frozenset({11})
    assert ledger.apply([transfer(10, amount=1)], T1) == [R.OK]
    assert ledger.apply([transfer(11, dr=7, cr=2, amount=1)], T1) == [R.ID_ALREADY_FAILED]


def test_linked_chain_left_open_is_not_applied(ledger: Driver) -> None:
    events = [transfer(10, amount=1), linked(transfer(11, amount=2)), linked(account(9))]
    assert ledger.apply(events, T1) == [R.OK, R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN]
    assert totals(ledger, 1) == (0, 1, 0, 0)
    assert ledger.lookup_account(9) is None
    assert ledger.failed_ids() == frozenset()
    assert ledger.apply([linked(account(9))], T1) == [R.LINKED_EVENT_CHAIN_OPEN]


# --- balancing transfers -------------------------------------------------------------------


def test_balancing_debit_takes_only_what_is_available(ledger: Driver) -> None:
    ledger.apply([transfer(10, dr=1, cr=7, amount=10), pending(11, dr=7, cr=2, amount=3)], T1)
    assert ledger.apply([transfer(12, dr=7, cr=2, amount=25, flags=BAL_DR)], T1) == [R.OK]
    assert ledger.lookup_transfer(12).amount == 7  # 10 credits - 3 held
    assert totals(ledger, 7) == (3, 7, 0, 10)
    assert ledger.apply([transfer(13, dr=7, cr=2, amount=5, flags=BAL_DR)], T1) == [
        R.EXCEEDS_CREDITS
    ]
    assert 13 in ledger.failed_ids()


def test_balancing_debit_with_room_to_spare_moves_the_amount(ledger: Driver) -> None:
    ledger.apply([transfer(10, dr=1, cr=7, amount=10)], T1)
    assert ledger.apply([transfer(12, dr=7, cr=2, amount=4, flags=BAL_DR)], T1) == [R.OK]
    assert ledger.lookup_transfer(12).amount == 4


def test_balancing_credit_takes_only_what_is_available(ledger: Driver) -> None:
    ledger.apply([transfer(10, dr=8, cr=1, amount=10)], T1)
    assert ledger.apply([transfer(12, dr=2, cr=8, amount=25, flags=BAL_CR)], T1) == [R.OK]
    assert ledger.lookup_transfer(12).amount == 10
    assert totals(ledger, 8) == (0, 10, 0, 10)
    assert ledger.apply([transfer(13, dr=2, cr=8, amount=1, flags=BAL_CR)], T1) == [
        R.EXCEEDS_DEBITS
    ]


def test_balancing_pending_holds_what_is_available(ledger: Driver) -> None:
    ledger.apply([transfer(10, dr=1, cr=7, amount=10)], T1)
    assert ledger.apply([pending(12, dr=7, cr=2, amount=25, flags=BAL_DR)], T1) == [R.OK]
    assert totals(ledger, 7) == (10, 0, 0, 10)
    assert ledger.apply([post(13, 12, 10)], T1) == [R.OK]
    assert totals(ledger, 7) == (0, 10, 0, 10)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [(30, R.EXISTS), (25, R.EXISTS), (7, R.EXISTS), (6, R.EXISTS_WITH_DIFFERENT_AMOUNT)],
)
def test_replay_of_a_balancing_transfer(ledger: Driver, amount: int, expected: Result) -> None:
    ledger.apply([transfer(10, dr=1, cr=7, amount=7)], T1)
    ledger.apply([transfer(12, dr=7, cr=2, amount=25, flags=BAL_DR)], T1)  # moved 7
    before = state(ledger)
    assert ledger.apply([transfer(12, dr=7, cr=2, amount=amount, flags=BAL_DR)], T1) == [expected]
    assert state(ledger)[:4] == before[:4]
    assert ledger.lookup_transfer(12).amount == 7


# --- idempotency -------------------------------------------------------------------------------

STORED = transfer(50, dr=1, cr=2, amount=10, user_data=1)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, R.EXISTS),
        ({"flags": int(PENDING), "pending_id": 7, "amount": 11}, R.EXISTS_WITH_DIFFERENT_FLAGS),
        ({"pending_id": 7, "timeout": 1}, R.EXISTS_WITH_DIFFERENT_PENDING_ID),
        ({"timeout": 1, "debit_account_id": 3}, R.EXISTS_WITH_DIFFERENT_TIMEOUT),
        ({"debit_account_id": 3, "credit_account_id": 4}, R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID),
        ({"credit_account_id": 3, "amount": 11}, R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID),
        ({"amount": 11, "user_data": 2}, R.EXISTS_WITH_DIFFERENT_AMOUNT),
        ({"user_data": 2, "ledger": 2}, R.EXISTS_WITH_DIFFERENT_USER_DATA),
        ({"ledger": 2, "code": 2}, R.EXISTS_WITH_DIFFERENT_LEDGER),
        ({"code": 2}, R.EXISTS_WITH_DIFFERENT_CODE),
        # Exists checks come before validation: a replay that is also invalid is still "exists".
        ({"amount": 0}, R.EXISTS_WITH_DIFFERENT_AMOUNT),
        ({"timestamp": 0, "debit_account_id": 99}, R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID),
    ],
)
def test_replay_reports_the_first_differing_field(
    ledger: Driver, changes: dict[str, int], expected: Result
) -> None:
    assert ledger.apply([STORED], T1) == [R.OK]
    before = state(ledger)
    assert ledger.apply([dataclasses.replace(STORED, **changes)], T1 + NS) == [expected]
    assert state(ledger)[:4] == before[:4]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, R.EXISTS),
        ({"debit_account_id": 1, "credit_account_id": 2, "ledger": 1, "code": 1}, R.EXISTS),
        ({"debit_account_id": 3}, R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID),
        ({"credit_account_id": 3}, R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID),
        ({"ledger": 2}, R.EXISTS_WITH_DIFFERENT_LEDGER),
        ({"code": 2}, R.EXISTS_WITH_DIFFERENT_CODE),
        ({"amount": 5}, R.EXISTS_WITH_DIFFERENT_AMOUNT),
        ({"pending_id": 41}, R.EXISTS_WITH_DIFFERENT_PENDING_ID),
    ],
)
def test_replay_of_a_post_compares_inherited_fields(
    ledger: Driver, changes: dict[str, int], expected: Result
) -> None:
    ledger.apply([pending(40, amount=10), pending(41, amount=10)], T1)
    ledger.apply([post(60, 40, 6)], T1)
    assert ledger.apply([dataclasses.replace(post(60, 40, 6), **changes)], T1) == [expected]


@pytest.mark.parametrize(
    ("amount", "expected"), [(0, R.EXISTS), (10, R.EXISTS), (4, R.EXISTS_WITH_DIFFERENT_AMOUNT)]
)
def test_replay_of_a_void_accepts_zero_or_the_released_amount(
    ledger: Driver, amount: int, expected: Result
) -> None:
    ledger.apply([pending(40, amount=10)], T1)
    assert ledger.apply([void(60, 40, 0)], T1) == [R.OK]
    assert ledger.apply([void(60, 40, amount)], T1) == [expected]


def test_account_replay_changes_nothing(ledger: Driver) -> None:
    assert ledger.apply([transfer(10, dr=1, cr=2, amount=5)], T1) == [R.OK]
    assert ledger.apply([account(1)], T1) == [R.EXISTS]
    assert totals(ledger, 1) == (0, 5, 0, 0)
    assert ledger.lookup_account(1).timestamp == T0


# --- remembered failures -----------------------------------------------------------------------


def test_id_already_failed_after_exceeds_credits(ledger: Driver) -> None:
    assert ledger.apply([transfer(10, dr=7, cr=2, amount=5)], T1) == [R.EXCEEDS_CREDITS]
    assert ledger.apply([transfer(11, dr=1, cr=7, amount=50)], T1) == [R.OK]
    # Now it would fit, but a retry can never turn into a charge.
    assert ledger.apply([transfer(10, dr=7, cr=2, amount=5)], T1) == [R.ID_ALREADY_FAILED]
    assert ledger.lookup_transfer(10) is None
    assert totals(ledger, 7) == (0, 0, 0, 50)
    assert ledger.failed_ids() == frozenset({10})


def test_id_already_failed_after_account_not_found(ledger: Driver) -> None:
    assert ledger.apply([transfer(10, dr=99, cr=2, amount=5)], T1) == [R.DEBIT_ACCOUNT_NOT_FOUND]
    assert ledger.apply([account(99)], T1) == [R.OK]
    assert ledger.apply([transfer(10, dr=99, cr=2, amount=5)], T1) == [R.ID_ALREADY_FAILED]
    # Any body: the id itself is spent.
    assert ledger.apply([transfer(10, dr=1, cr=2, amount=1)], T1) == [R.ID_ALREADY_FAILED]
    assert ledger.lookup_transfer(10) is None


@pytest.mark.parametrize(
    ("setup", "invalid", "expected"),
    [
        ([], transfer(10, amount=0), R.AMOUNT_MUST_NOT_BE_ZERO),
        ([], transfer(10, ledger=0), R.LEDGER_MUST_NOT_BE_ZERO),
        ([], transfer(10, dr=1, cr=1), R.ACCOUNTS_MUST_BE_DIFFERENT),
        ([], transfer(10, dr=1, cr=5), R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER),
        ([], post(10, 10, 5), R.PENDING_ID_MUST_BE_DIFFERENT),
        (
            [transfer(9, dr=3, cr=1, amount=AMOUNT_MAX)],
            transfer(10, dr=2, cr=1, amount=3),
            R.OVERFLOWS_CREDITS_POSTED,
        ),
    ],
)
def test_non_transient_failures_are_not_remembered(
    ledger: Driver, setup: list[Transfer], invalid: Transfer, expected: Result
) -> None:
    """Validation errors (and other results decided by the event and the totals) leave no
    trace: the corrected event can reuse the id."""
    ledger.apply(setup, T1)
    assert ledger.apply([invalid], T1) == [expected]
    assert ledger.failed_ids() == frozenset()
    assert ledger.apply([transfer(10, dr=2, cr=3, amount=3)], T1) == [R.OK]
    assert ledger.lookup_transfer(10).amount == 3


def test_transient_results_are_the_remembered_ones() -> None:
    assert {r for r in Result if r.transient} == {
        R.DEBIT_ACCOUNT_NOT_FOUND,
        R.CREDIT_ACCOUNT_NOT_FOUND,
        R.PENDING_TRANSFER_NOT_FOUND,
        R.EXCEEDS_CREDITS,
        R.EXCEEDS_DEBITS,
        R.DEBIT_ACCOUNT_ALREADY_CLOSED,
        R.CREDIT_ACCOUNT_ALREADY_CLOSED,
    }


def test_pending_transfer_not_found_is_remembered(ledger: Driver) -> None:
    assert ledger.apply([post(10, 40, 5)], T1) == [R.PENDING_TRANSFER_NOT_FOUND]
    ledger.apply([pending(40, amount=10)], T1)
    assert ledger.apply([post(10, 40, 5)], T1) == [R.ID_ALREADY_FAILED]
    assert totals(ledger, 1) == (10, 0, 0, 0)


# --- closed accounts -------------------------------------------------------------------------


def test_closed_accounts_reject_transfers(ledger: Driver) -> None:
    assert ledger.apply([transfer(10, dr=6, cr=1)], T1) == [R.DEBIT_ACCOUNT_ALREADY_CLOSED]
    assert ledger.apply([transfer(11, dr=1, cr=6)], T1) == [R.CREDIT_ACCOUNT_ALREADY_CLOSED]
    assert ledger.apply([pending(12, dr=1, cr=6)], T1) == [R.CREDIT_ACCOUNT_ALREADY_CLOSED]
    assert totals(ledger, 6) == (0, 0, 0, 0)
    assert ledger.failed_ids() == frozenset({10, 11, 12})


def _close(driver: Driver, account_id: int) -> None:
    """Close an account that already holds a pending transfer. No event can do that yet (there
    are no closing transfers), so this edits the state directly: the engine's row, or the
    reference's kernel state."""
    if isinstance(driver, Ledger):
        driver._accounts[account_id].flags |= CLOSED
        return
    s = driver.value.state
    driver.value = ReferenceLedger(
        dataclasses.replace(
            s,
            account_closed=s.account_closed.set(account_id, True),
            account_flags=s.account_flags.set(account_id, s.account_flags[account_id] | CLOSED),
        )
    )


def test_a_closed_account_still_allows_a_void(ledger: Driver) -> None:
    ledger.apply([pending(10, dr=1, cr=2, amount=10), pending(11, dr=1, cr=2, amount=4)], T1)
    _close(ledger, 1)
    assert ledger.apply([post(12, 10, 10)], T1) == [R.DEBIT_ACCOUNT_ALREADY_CLOSED]
    assert ledger.apply([void(13, 11)], T1) == [R.OK]
    assert totals(ledger, 1) == (10, 0, 0, 0)
    assert ledger.pending_status(11) == PendingStatus.VOIDED


# --- overflows -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "event", "expected"),
    [
        (transfer(10, 1, 2, AMOUNT_MAX), transfer(11, 1, 3, 1), R.OVERFLOWS_DEBITS_POSTED),
        (transfer(10, 1, 2, AMOUNT_MAX), transfer(11, 3, 2, 1), R.OVERFLOWS_CREDITS_POSTED),
        (pending(10, 1, 2, AMOUNT_MAX), pending(11, 1, 3, 1), R.OVERFLOWS_DEBITS_PENDING),
        (pending(10, 1, 2, AMOUNT_MAX), pending(11, 3, 2, 1), R.OVERFLOWS_CREDITS_PENDING),
        (pending(10, 1, 2, AMOUNT_MAX - 5), transfer(11, 1, 3, 6), R.OVERFLOWS_DEBITS),
        (pending(10, 1, 2, AMOUNT_MAX - 5), transfer(11, 3, 2, 6), R.OVERFLOWS_CREDITS),
        (transfer(10, 1, 2, AMOUNT_MAX - 5), pending(11, 1, 3, 6), R.OVERFLOWS_DEBITS),
        (pending(10, 1, 2, AMOUNT_MAX - 5), transfer(11, 1, 3, 5), R.OK),
    ],
)
def test_overflow_is_a_result_never_a_wrap(
    ledger: Driver, setup: Transfer, event: Transfer, expected: Result
) -> None:
    assert ledger.apply([setup], T1) == [R.OK]
    before = state(ledger)
    assert ledger.apply([event], T1) == [expected]
    if expected is not R.OK:
        assert state(ledger)[:4] == before[:4]
        # Not remembered: it is decided by the event and the totals, and reported again.
        assert ledger.apply([event], T1) == [expected]


def test_timeout_overflow_is_exact() -> None:
    for driver in (Ledger(), ReferenceDriver()):
        driver.apply(ACCOUNTS, T0)
        # A deadline of exactly TIMESTAMP_MAX_NS fits; one nanosecond later does not.
        now = TIMESTAMP_MAX_NS - TIMEOUT_MAX_SECONDS * NS
        fits = pending(10, timeout=TIMEOUT_MAX_SECONDS)
        assert driver.apply([fits], now) == [R.OK]
        assert driver.apply([pending(11, timeout=TIMEOUT_MAX_SECONDS)], now) == [
            R.OVERFLOWS_TIMEOUT
        ]
        assert driver.lookup_transfer(11) is None


# --- time ------------------------------------------------------------------------------------


def test_timestamps_increase_even_when_now_goes_back(ledger: Driver) -> None:
    assert ledger.timestamp == T0 + len(ACCOUNTS) - 1
    ledger.apply([transfer(10, amount=1), transfer(11, amount=1)], T1)
    ledger.apply([transfer(12, amount=1)], T1 - 50 * NS)  # the clock went back
    ledger.apply([transfer(13, amount=1)], T1 + 1)  # not ahead of the last timestamp
    ledger.apply([transfer(14, amount=1)], T1 + NS)
    stamps = [ledger.lookup_transfer(i).timestamp for i in range(10, 15)]
    assert stamps == [T1, T1 + 1, T1 + 2, T1 + 3, T1 + NS]
    assert ledger.timestamp == T1 + NS


def test_an_empty_batch_takes_no_timestamp(ledger: Driver) -> None:
    before = ledger.timestamp
    assert ledger.apply([], T1) == []
    assert ledger.timestamp == before


def test_a_rejected_event_still_takes_its_timestamp(ledger: Driver) -> None:
    assert ledger.apply([transfer(10, amount=0), transfer(11)], T1) == [
        R.AMOUNT_MUST_NOT_BE_ZERO,
        R.OK,
    ]
    assert ledger.lookup_transfer(11).timestamp == T1 + 1
    assert ledger.timestamp == T1 + 1


# --- history -----------------------------------------------------------------------------------


def test_history_keeps_the_balance_after_each_change() -> None:
    ledger = Ledger()
    ledger.apply([account(1, flags=HISTORY), account(2)], T0)
    ledger.apply([transfer(10, dr=2, cr=1, amount=30)], T1)
    ledger.apply([pending(11, dr=1, cr=2, amount=10)], T1 + 1 * NS)
    ledger.apply([post(12, 11, 4)], T1 + 2 * NS)
    # A rolled-back chain leaves no entry.
    ledger.apply([linked(transfer(13, dr=2, cr=1, amount=5)), transfer(14, amount=0)], T1 + 3 * NS)

    def entry(ts: int, dp: int, dpo: int, cp: int, cpo: int) -> AccountBalance:
        return AccountBalance(
            account_id=1,
            timestamp=ts,
            debits_pending=dp,
            debits_posted=dpo,
            credits_pending=cp,
            credits_posted=cpo,
        )

    assert ledger.history(1) == [
        entry(T1, 0, 0, 0, 30),
        entry(T1 + NS, 10, 0, 0, 30),
        entry(T1 + 2 * NS, 0, 4, 0, 30),
    ]
    assert ledger.history(2) == []  # no history flag
    assert ledger.history(99) == []  # no such account


def test_history_records_an_expiry() -> None:
    """The project's choice: an expiry is a change with its own timestamp, so it is kept.
    (TigerBeetle's history omits expiries; see the research notes, section 1.4.)"""
    ledger = Ledger()
    ledger.apply([account(1, flags=HISTORY), account(2)], T0)
    ledger.apply([pending(11, dr=1, cr=2, amount=10, timeout=1)], T1)
    ledger.apply([], T1 + NS)
    assert [(h.timestamp, h.debits_pending) for h in ledger.history(1)] == [(T1, 10), (T1 + NS, 0)]


# --- the corpus: every result code, each from a crafted batch ------------------------------


class Case(NamedTuple):
    name: str
    setup: list[Account | Transfer]  # applied at T1 after ACCOUNTS
    events: list[Account | Transfer]  # applied at `now`
    expected: list[Result]
    now: int = T1 + 5 * NS


P = [pending(100, amount=10), transfer(101, amount=1), pending(102, amount=3, timeout=1)]

CORPUS = [
    # Accounts.
    Case("account ok", [], [account(9)], [R.OK]),
    Case("account timestamp", [], [account(9, timestamp=1)], [R.TIMESTAMP_MUST_BE_ZERO]),
    Case("account reserved flag", [], [account(9, flags=1 << 5)], [R.RESERVED_FLAG]),
    Case("account id zero", [], [account(0)], [R.ID_MUST_NOT_BE_ZERO]),
    Case("account id max", [], [account(ID_MAX)], [R.ID_MUST_NOT_BE_INT_MAX]),
    Case("account exists", [], [account(1)], [R.EXISTS]),
    Case(
        "account exists flags first",
        [],
        [account(1, flags=HISTORY, user_data=5, ledger=2, code=2)],
        [R.EXISTS_WITH_DIFFERENT_FLAGS],
    ),
    Case(
        "account exists user_data before ledger",
        [],
        [account(1, user_data=5, ledger=2, code=2)],
        [R.EXISTS_WITH_DIFFERENT_USER_DATA],
    ),
    Case(
        "account exists ledger before code",
        [],
        [account(1, ledger=2, code=2)],
        [R.EXISTS_WITH_DIFFERENT_LEDGER],
    ),
    Case("account exists code", [], [account(1, code=2)], [R.EXISTS_WITH_DIFFERENT_CODE]),
    Case(
        "account guards exclusive",
        [],
        [account(9, flags=DR_GUARD | CR_GUARD)],
        [R.FLAGS_ARE_MUTUALLY_EXCLUSIVE],
    ),
    Case(
        "account debits_pending",
        [],
        [account(9, debits_pending=1)],
        [R.DEBITS_PENDING_MUST_BE_ZERO],
    ),
    Case(
        "account debits_posted", [], [account(9, debits_posted=1)], [R.DEBITS_POSTED_MUST_BE_ZERO]
    ),
    Case(
        "account credits_pending",
        [],
        [account(9, credits_pending=1)],
        [R.CREDITS_PENDING_MUST_BE_ZERO],
    ),
    Case(
        "account credits_posted",
        [],
        [account(9, credits_posted=1)],
        [R.CREDITS_POSTED_MUST_BE_ZERO],
    ),
    Case(
        "account ledger zero before code",
        [],
        [account(9, ledger=0, code=0)],
        [R.LEDGER_MUST_NOT_BE_ZERO],
    ),
    Case("account code zero", [], [account(9, code=0)], [R.CODE_MUST_NOT_BE_ZERO]),
    # Shape and validation of transfers.
    Case("transfer timestamp", [], [transfer(10, timestamp=1)], [R.TIMESTAMP_MUST_BE_ZERO]),
    Case("transfer reserved flag", [], [transfer(10, flags=1 << 6)], [R.RESERVED_FLAG]),
    Case("transfer id zero", [], [transfer(0)], [R.ID_MUST_NOT_BE_ZERO]),
    Case("transfer id max", [], [transfer(ID_MAX)], [R.ID_MUST_NOT_BE_INT_MAX]),
    Case(
        "pending and post", P, [post(10, 100, 5, flags=PENDING)], [R.FLAGS_ARE_MUTUALLY_EXCLUSIVE]
    ),
    Case("post and void", P, [post(10, 100, 5, flags=VOID)], [R.FLAGS_ARE_MUTUALLY_EXCLUSIVE]),
    Case("balancing post", P, [post(10, 100, 5, flags=BAL_DR)], [R.FLAGS_ARE_MUTUALLY_EXCLUSIVE]),
    Case("debit zero", [], [transfer(10, dr=0)], [R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO]),
    Case("debit max", [], [transfer(10, dr=ID_MAX)], [R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX]),
    Case("credit zero", [], [transfer(10, cr=0)], [R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO]),
    Case("credit max", [], [transfer(10, cr=ID_MAX)], [R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX]),
    Case("same accounts", [], [transfer(10, dr=1, cr=1)], [R.ACCOUNTS_MUST_BE_DIFFERENT]),
    Case("stray pending_id", [], [transfer(10, pending_id=100)], [R.PENDING_ID_MUST_BE_ZERO]),
    Case("post without pending_id", [], [post(10, 0, 5)], [R.PENDING_ID_MUST_NOT_BE_ZERO]),
    Case("post pending_id max", [], [post(10, ID_MAX, 5)], [R.PENDING_ID_MUST_NOT_BE_INT_MAX]),
    Case("post of itself", [], [post(10, 10, 5)], [R.PENDING_ID_MUST_BE_DIFFERENT]),
    Case("stray timeout", [], [transfer(10, timeout=1)], [R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER]),
    Case("amount zero", [], [transfer(10, amount=0)], [R.AMOUNT_MUST_NOT_BE_ZERO]),
    Case("post amount zero", P, [post(10, 100, 0)], [R.AMOUNT_MUST_NOT_BE_ZERO]),
    Case(
        "ledger zero before code", [], [transfer(10, ledger=0, code=0)], [R.LEDGER_MUST_NOT_BE_ZERO]
    ),
    Case("code zero", [], [transfer(10, code=0)], [R.CODE_MUST_NOT_BE_ZERO]),
    # Two-phase.
    Case("pending not found", [], [post(10, 100, 5)], [R.PENDING_TRANSFER_NOT_FOUND]),
    Case("not pending", P, [post(10, 101, 1)], [R.PENDING_TRANSFER_NOT_PENDING]),
    Case(
        "post other debit",
        P,
        [post(10, 100, 5, debit_account_id=3)],
        [R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID],
    ),
    Case(
        "post other credit",
        P,
        [post(10, 100, 5, credit_account_id=3)],
        [R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID],
    ),
    Case(
        "post other ledger",
        P,
        [post(10, 100, 5, ledger=2)],
        [R.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER],
    ),
    Case("post other code", P, [post(10, 100, 5, code=2)], [R.PENDING_TRANSFER_HAS_DIFFERENT_CODE]),
    Case(
        "post same fields",
        P,
        [post(10, 100, 5, debit_account_id=1, credit_account_id=2, ledger=1, code=1)],
        [R.OK],
    ),
    Case("post too much", P, [post(10, 100, 11)], [R.EXCEEDS_PENDING_TRANSFER_AMOUNT]),
    Case("void other amount", P, [void(10, 100, 4)], [R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT]),
    Case(
        "already posted",
        [*P, post(103, 100, 10)],
        [void(10, 100)],
        [R.PENDING_TRANSFER_ALREADY_POSTED],
    ),
    Case(
        "already voided",
        [*P, void(103, 100)],
        [post(10, 100, 10)],
        [R.PENDING_TRANSFER_ALREADY_VOIDED],
    ),
    Case("expired", P, [post(10, 102, 3)], [R.PENDING_TRANSFER_EXPIRED]),
    # Accounts of a transfer.
    Case("debit not found", [], [transfer(10, dr=99)], [R.DEBIT_ACCOUNT_NOT_FOUND]),
    Case("credit not found", [], [transfer(10, cr=99)], [R.CREDIT_ACCOUNT_NOT_FOUND]),
    Case(
        "accounts on two ledgers",
        [],
        [transfer(10, dr=1, cr=5)],
        [R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER],
    ),
    Case(
        "transfer on another ledger",
        [],
        [transfer(10, ledger=2)],
        [R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS],
    ),
    Case("debit closed", [], [transfer(10, dr=6)], [R.DEBIT_ACCOUNT_ALREADY_CLOSED]),
    Case("credit closed", [], [transfer(10, cr=6)], [R.CREDIT_ACCOUNT_ALREADY_CLOSED]),
    # Bounds.
    Case(
        "overflow debits pending",
        [pending(10, 1, 2, AMOUNT_MAX)],
        [pending(11, 1, 3, 1)],
        [R.OVERFLOWS_DEBITS_PENDING],
    ),
    Case(
        "overflow credits pending",
        [pending(10, 1, 2, AMOUNT_MAX)],
        [pending(11, 3, 2, 1)],
        [R.OVERFLOWS_CREDITS_PENDING],
    ),
    Case(
        "overflow debits posted",
        [transfer(10, 1, 2, AMOUNT_MAX)],
        [transfer(11, 1, 3, 1)],
        [R.OVERFLOWS_DEBITS_POSTED],
    ),
    Case(
        "overflow credits posted",
        [transfer(10, 1, 2, AMOUNT_MAX)],
        [transfer(11, 3, 2, 1)],
        [R.OVERFLOWS_CREDITS_POSTED],
    ),
    Case(
        "overflow debits",
        [pending(10, 1, 2, AMOUNT_MAX - 5)],
        [transfer(11, 1, 3, 6)],
        [R.OVERFLOWS_DEBITS],
    ),
    Case(
        "overflow credits",
        [pending(10, 1, 2, AMOUNT_MAX - 5)],
        [transfer(11, 3, 2, 6)],
        [R.OVERFLOWS_CREDITS],
    ),
    Case(
        "overflow timeout",  # the deadline would be TIMESTAMP_MAX_NS + 1
        [],
        [pending(10, timeout=TIMEOUT_MAX_SECONDS)],
        [R.OVERFLOWS_TIMEOUT],
        now=TIMESTAMP_MAX_NS - TIMEOUT_MAX_SECONDS * NS + 1,
    ),
    # Balance limits.
    Case("exceeds credits", [], [transfer(10, dr=7, cr=1, amount=1)], [R.EXCEEDS_CREDITS]),
    Case("exceeds debits", [], [transfer(10, dr=1, cr=8, amount=1)], [R.EXCEEDS_DEBITS]),
    Case(
        "balancing debit, nothing available",
        [],
        [transfer(10, dr=1, cr=2, flags=BAL_DR)],
        [R.EXCEEDS_CREDITS],
    ),
    Case(
        "balancing credit, nothing available",
        [],
        [transfer(10, dr=1, cr=2, flags=BAL_CR)],
        [R.EXCEEDS_DEBITS],
    ),
    # Idempotency of transfers.
    Case("transfer exists", [STORED], [STORED], [R.EXISTS]),
    Case(
        "transfer exists flags",
        [STORED],
        [dataclasses.replace(STORED, flags=int(PENDING))],
        [R.EXISTS_WITH_DIFFERENT_FLAGS],
    ),
    Case(
        "transfer exists pending_id",
        [*P, post(103, 100, 5)],
        [post(103, 102, 5)],
        [R.EXISTS_WITH_DIFFERENT_PENDING_ID],
    ),
    Case(
        "transfer exists timeout",
        P,
        [pending(102, amount=3, timeout=2)],
        [R.EXISTS_WITH_DIFFERENT_TIMEOUT],
    ),
    Case(
        "transfer exists debit",
        [STORED],
        [dataclasses.replace(STORED, debit_account_id=3)],
        [R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID],
    ),
    Case(
        "transfer exists credit",
        [STORED],
        [dataclasses.replace(STORED, credit_account_id=3)],
        [R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID],
    ),
    Case(
        "transfer exists amount",
        [STORED],
        [dataclasses.replace(STORED, amount=9)],
        [R.EXISTS_WITH_DIFFERENT_AMOUNT],
    ),
    Case(
        "transfer exists user_data",
        [STORED],
        [dataclasses.replace(STORED, user_data=9)],
        [R.EXISTS_WITH_DIFFERENT_USER_DATA],
    ),
    Case(
        "transfer exists ledger",
        [STORED],
        [dataclasses.replace(STORED, ledger=2)],
        [R.EXISTS_WITH_DIFFERENT_LEDGER],
    ),
    Case(
        "transfer exists code",
        [STORED],
        [dataclasses.replace(STORED, code=2)],
        [R.EXISTS_WITH_DIFFERENT_CODE],
    ),
    Case("id already failed", [transfer(10, dr=99)], [transfer(10)], [R.ID_ALREADY_FAILED]),
    # Linked chains.
    Case("chain ok", [], [linked(account(9)), transfer(10, dr=9, cr=2, amount=1)], [R.OK, R.OK]),
    Case(
        "chain fails",
        [],
        [linked(transfer(10)), linked(transfer(11, amount=0)), transfer(12)],
        [R.LINKED_EVENT_FAILED, R.AMOUNT_MUST_NOT_BE_ZERO, R.LINKED_EVENT_FAILED],
    ),
    Case(
        "chain open",
        [],
        [transfer(10), linked(transfer(11)), linked(transfer(12))],
        [R.OK, R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN],
    ),
]


def _run_case(driver: Driver, case: Case) -> list[list[Result]]:
    """Every batch's results: ACCOUNTS at T0, the setup at T1, the events at `case.now`."""
    return [
        driver.apply(ACCOUNTS, T0),
        driver.apply(case.setup, T1),
        driver.apply(case.events, case.now),
    ]


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
@pytest.mark.parametrize("make", [Ledger, ReferenceDriver], ids=["engine", "reference"])
def test_corpus_case(make: type, case: Case) -> None:
    accounts, _, results = _run_case(make(), case)
    assert accounts == [R.OK] * len(ACCOUNTS)
    assert results == case.expected


def test_corpus_reaches_every_result() -> None:
    seen: set[Result] = set()
    for case in CORPUS:
        for results in _run_case(Ledger(), case):
            seen.update(results)
    missing = sorted(set(Result) - seen)
    assert missing == [], f"no crafted batch produces {[r.name for r in missing]}"
