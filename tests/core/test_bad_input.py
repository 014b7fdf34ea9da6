"""Malformed input is refused as a whole: a `LedgerError` subclass whose message names the event
index and the field, and nothing of the batch is applied (not even the valid events before the
bad one, nor the expiries due at its `now`). Unknown flag bits are not malformed: they are a
result code (RESERVED_FLAG). Each case runs on the engine and on the reference.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ledger import (
    AMOUNT_MAX,
    BATCH_EVENTS_MAX,
    ID_MAX,
    NS_PER_SECOND,
    Account,
    BatchTooLargeError,
    InvalidEventError,
    InvalidTimeError,
    Ledger,
    LedgerError,
    PendingStatus,
    Result,
    Transfer,
    TransferFlags,
)
from ledger.core.flags import ACCOUNT_FLAGS_MAX, TRANSFER_FLAGS_MAX
from ledger.core.limits import (
    CODE_MAX,
    LEDGER_MAX,
    TIMEOUT_MAX_SECONDS,
    TIMESTAMP_MAX_NS,
    USER_DATA_MAX,
)
from ledger.core.reference import ReferenceLedger

from .strategies import engine_view

NS = NS_PER_SECOND
T0 = 100 * NS
T1 = 200 * NS
R = Result

GOOD_TRANSFER = Transfer(id=20, debit_account_id=1, credit_account_id=2, amount=5, ledger=1, code=1)
GOOD_ACCOUNT = Account(id=9, ledger=1, code=1)


def opened_ledger() -> Ledger:
    """Accounts 1 and 2 (2 keeps history), and a pending transfer 10 due at T1 + 1 s."""
    ledger = Ledger()
    assert ledger.apply(
        [Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1, flags=8)], T0
    ) == [R.OK, R.OK]
    pending = Transfer(
        id=10,
        debit_account_id=1,
        credit_account_id=2,
        amount=7,
        ledger=1,
        code=1,
        timeout=1,
        flags=TransferFlags.PENDING,
    )
    assert ledger.apply([pending], T1) == [R.OK]
    return ledger


LATER = T1 + 5 * NS  # the pending transfer is due: a sound batch at LATER expires it first


def assert_refused(events: Any, now: int, error: type[LedgerError], *fragments: str) -> LedgerError:
    """Both ledgers raise `error`, its message holds every fragment, the engine's state is
    exactly as before; returns the engine's exception."""
    ledger = opened_ledger()
    before = engine_view(ledger, history=True)
    with pytest.raises(error) as caught:
        ledger.apply(events, now)
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))
    assert engine_view(ledger, history=True) == before
    assert ledger.pending_status(10) == PendingStatus.PENDING
    reference = ReferenceLedger.empty()
    with pytest.raises(error) as caught_reference:
        reference.apply(events, now)
    assert str(caught_reference.value) == str(caught.value)
    return caught.value


def transfer_with(**fields: Any) -> Transfer:
    """GOOD_TRANSFER with fields replaced, bypassing nothing: dataclasses do not check types."""
    return dataclasses.replace(GOOD_TRANSFER, **fields)


def account_with(**fields: Any) -> Account:
    return dataclasses.replace(GOOD_ACCOUNT, **fields)


# --- a bad field -----------------------------------------------------------------------------

BAD_FIELDS = [
    ("amount", "10", "got str"),
    ("amount", 10.0, "got float"),
    ("amount", True, "got bool"),
    ("amount", None, "got NoneType"),
    ("amount", -1, "must not be negative"),
    ("amount", AMOUNT_MAX + 1, f"must be at most {AMOUNT_MAX}"),
    ("id", -1, "must not be negative"),
    ("id", ID_MAX + 1, f"must be at most {ID_MAX}"),
    ("debit_account_id", 1.0, "got float"),
    ("credit_account_id", ID_MAX + 1, f"must be at most {ID_MAX}"),
    ("pending_id", -5, "must not be negative"),
    ("timeout", TIMEOUT_MAX_SECONDS + 1, f"must be at most {TIMEOUT_MAX_SECONDS}"),
    ("timeout", False, "got bool"),
    ("ledger", LEDGER_MAX + 1, f"must be at most {LEDGER_MAX}"),
    ("code", CODE_MAX + 1, f"must be at most {CODE_MAX}"),
    ("user_data", USER_DATA_MAX + 1, f"must be at most {USER_DATA_MAX}"),
    ("flags", TRANSFER_FLAGS_MAX + 1, f"must be at most {TRANSFER_FLAGS_MAX}"),
    ("flags", -1, "must not be negative"),
    ("timestamp", TIMESTAMP_MAX_NS + 1, f"must be at most {TIMESTAMP_MAX_NS}"),
]


@pytest.mark.parametrize(("field", "value", "problem"), BAD_FIELDS)
def test_bad_transfer_field(field: str, value: Any, problem: str) -> None:
    events = [GOOD_ACCOUNT, GOOD_TRANSFER, transfer_with(**{field: value})]
    error = assert_refused(events, LATER, InvalidEventError, "event 2", repr(field), problem)
    assert isinstance(error, InvalidEventError)
    assert (error.index, error.field) == (2, field)


BAD_ACCOUNT_FIELDS = [
    ("id", "9", "got str"),
    ("ledger", 1.5, "got float"),
    ("code", True, "got bool"),
    ("flags", ACCOUNT_FLAGS_MAX + 1, f"must be at most {ACCOUNT_FLAGS_MAX}"),
    ("user_data", -1, "must not be negative"),
    ("debits_pending", -1, "must not be negative"),
    ("debits_posted", AMOUNT_MAX + 1, f"must be at most {AMOUNT_MAX}"),
    ("credits_pending", None, "got NoneType"),
    ("credits_posted", 2.0, "got float"),
    ("timestamp", -1, "must not be negative"),
]


@pytest.mark.parametrize(("field", "value", "problem"), BAD_ACCOUNT_FIELDS)
def test_bad_account_field(field: str, value: Any, problem: str) -> None:
    events = [GOOD_TRANSFER, account_with(**{field: value})]
    error = assert_refused(events, LATER, InvalidEventError, "event 1", repr(field), problem)
    assert isinstance(error, InvalidEventError)
    assert (error.index, error.field) == (1, field)


class SubTransfer(Transfer):
    """A subclass is not a Transfer record: the ledger accepts its own two records only."""

    __slots__ = ()


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"id": 1, "ledger": 1, "code": 1}, "dict"),
        (None, "NoneType"),
        ((1, 2, 3), "tuple"),
        (
            SubTransfer(id=21, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1),
            "SubTransfer",
        ),
    ],
)
def test_an_event_that_is_not_a_record(event: object, kind: str) -> None:
    error = assert_refused(
        [GOOD_ACCOUNT, event], LATER, InvalidEventError, "event 1", "'event'", f"got {kind}"
    )
    assert isinstance(error, InvalidEventError)
    assert (error.index, error.field) == (1, "event")


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(iter([GOOD_ACCOUNT]), id="iterator"),
        pytest.param({GOOD_ACCOUNT}, id="set"),
        pytest.param("events", id="str"),
        pytest.param(GOOD_ACCOUNT, id="record"),
        pytest.param(None, id="None"),
    ],
)
def test_events_that_are_not_a_sequence(events: object) -> None:
    assert_refused(events, LATER, InvalidEventError, "'events'", "sequence")


def test_the_first_bad_event_is_named() -> None:
    events = [GOOD_ACCOUNT, transfer_with(amount=-1), transfer_with(id="x")]
    error = assert_refused(events, LATER, InvalidEventError, "event 1", "'amount'")
    assert isinstance(error, InvalidEventError)
    assert error.index == 1


# --- reserved flag bits are a result, not an error --------------------------------------------


@pytest.mark.parametrize("bit", [6, 10, 15])
def test_unknown_transfer_flag_bits_are_a_result(bit: int) -> None:
    ledger = opened_ledger()
    results = ledger.apply([transfer_with(flags=1 << bit), GOOD_TRANSFER], T1)
    assert results == [R.RESERVED_FLAG, R.OK]
    assert ledger.lookup_transfer(20) is not None
    _, reference_results = ReferenceLedger.empty().apply([transfer_with(flags=1 << bit)], T1)
    assert reference_results == [R.RESERVED_FLAG]


@pytest.mark.parametrize("flags", [1 << 5, 1 << 15, ACCOUNT_FLAGS_MAX])
def test_unknown_account_flag_bits_are_a_result(flags: int) -> None:
    ledger = opened_ledger()
    flags &= ~1  # not linked: a chain left open would hide the code
    assert ledger.apply([account_with(flags=flags)], T1) == [R.RESERVED_FLAG]
    assert ledger.lookup_account(9) is None


# --- batch size ------------------------------------------------------------------------------


def test_one_event_too_many() -> None:
    events = [GOOD_ACCOUNT] * (BATCH_EVENTS_MAX + 1)
    assert_refused(
        events, LATER, BatchTooLargeError, str(BATCH_EVENTS_MAX), str(BATCH_EVENTS_MAX + 1)
    )


def test_a_full_batch_is_accepted() -> None:
    ledger = Ledger()
    events = [Account(id=i + 1, ledger=1, code=1) for i in range(BATCH_EVENTS_MAX)]
    assert ledger.apply(events, T0) == [R.OK] * BATCH_EVENTS_MAX
    assert ledger.timestamp == T0 + BATCH_EVENTS_MAX - 1
    # The reference too (events that fail at once keep it fast).
    _, results = ReferenceLedger.empty().apply(
        [Account(id=0, ledger=1, code=1)] * BATCH_EVENTS_MAX, T0
    )
    assert results == [R.ID_MUST_NOT_BE_ZERO] * BATCH_EVENTS_MAX


# --- bad `now` -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now",
    [-1, LATER + 0.5, float(LATER), True, False, None, "1000", TIMESTAMP_MAX_NS + 1],
    ids=["negative", "fraction", "float", "true", "false", "none", "str", "too-large"],
)
def test_bad_now(now: object) -> None:
    assert_refused([GOOD_ACCOUNT, GOOD_TRANSFER], now, InvalidTimeError, "now")


def test_a_refused_batch_expires_nothing_and_the_same_batch_applies_once_sound() -> None:
    ledger = opened_ledger()
    before = engine_view(ledger, history=True)
    with pytest.raises(InvalidEventError):
        ledger.apply([GOOD_ACCOUNT, GOOD_TRANSFER, transfer_with(id=21, amount=1.0)], LATER)
    assert engine_view(ledger, history=True) == before
    assert ledger.apply([GOOD_ACCOUNT, GOOD_TRANSFER], LATER) == [R.OK, R.OK]
    assert ledger.pending_status(10) == PendingStatus.EXPIRED
    assert ledger.lookup_account(9) is not None


# --- the end of time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(Ledger, id="engine"),
        pytest.param(lambda: ReferenceLedger.empty(), id="reference"),
    ],
)
def test_batch_ending_exactly_at_the_end_of_time_is_accepted(make: Any) -> None:
    ledger = make()
    result = ledger.apply([GOOD_ACCOUNT], TIMESTAMP_MAX_NS)
    results = result[1] if isinstance(result, tuple) else result
    assert results == [R.OK]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(Ledger, id="engine"),
        pytest.param(lambda: ReferenceLedger.empty(), id="reference"),
    ],
)
def test_batch_past_the_end_of_time_is_refused(make: Any) -> None:
    ledger = make()
    two = [GOOD_ACCOUNT, dataclasses.replace(GOOD_ACCOUNT, id=10)]
    with pytest.raises(InvalidTimeError):
        ledger.apply(two, TIMESTAMP_MAX_NS)


def test_resolved_pending_transfers_take_no_room_at_the_end_of_time() -> None:
    ledger = opened_ledger()  # pending transfer 10, timeout 1 s
    more = [
        dataclasses.replace(GOOD_TRANSFER, id=i, timeout=1, flags=TransferFlags.PENDING)
        for i in (11, 12)
    ]
    posts = [
        Transfer(id=30 + i, pending_id=i, amount=1, flags=TransferFlags.POST_PENDING)
        for i in (10, 11, 12)
    ]
    assert ledger.apply(more + posts, T1) == [R.OK] * 5
    # Nothing is due: one event needs one timestamp, and TIMESTAMP_MAX_NS - 2 is free. (With
    # three resolved entries in the heap the refusal does not depend on the off-by-one above.)
    assert ledger.apply([GOOD_ACCOUNT], TIMESTAMP_MAX_NS - 2) == [R.OK]
    assert ledger.timestamp == TIMESTAMP_MAX_NS - 2
