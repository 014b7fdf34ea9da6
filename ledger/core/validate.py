"""Structural checks of a batch before anything is applied: right record types, integer fields
(never bool or float), each within its column's range. A failure raises and applies nothing;
everything that passes is decided by result codes."""

from __future__ import annotations

from collections.abc import Sequence

from ledger.core.errors import BatchTooLargeError, InvalidEventError, InvalidTimeError
from ledger.core.flags import ACCOUNT_FLAGS_MAX, TRANSFER_FLAGS_MAX
from ledger.core.limits import (
    AMOUNT_MAX,
    BATCH_EVENTS_MAX,
    CODE_MAX,
    ID_MAX,
    LEDGER_MAX,
    TIMEOUT_MAX_SECONDS,
    TIMESTAMP_MAX_NS,
    USER_DATA_MAX,
)
from ledger.core.types import Account, Transfer

Event = Account | Transfer

_ACCOUNT_FIELDS: tuple[tuple[str, int], ...] = (
    ("id", ID_MAX),
    ("ledger", LEDGER_MAX),
    ("code", CODE_MAX),
    ("flags", ACCOUNT_FLAGS_MAX),
    ("user_data", USER_DATA_MAX),
    ("debits_pending", AMOUNT_MAX),
    ("debits_posted", AMOUNT_MAX),
    ("credits_pending", AMOUNT_MAX),
    ("credits_posted", AMOUNT_MAX),
    ("timestamp", TIMESTAMP_MAX_NS),
)
_TRANSFER_FIELDS: tuple[tuple[str, int], ...] = (
    ("id", ID_MAX),
    ("debit_account_id", ID_MAX),
    ("credit_account_id", ID_MAX),
    ("amount", AMOUNT_MAX),
    ("pending_id", ID_MAX),
    ("timeout", TIMEOUT_MAX_SECONDS),
    ("ledger", LEDGER_MAX),
    ("code", CODE_MAX),
    ("user_data", USER_DATA_MAX),
    ("flags", TRANSFER_FLAGS_MAX),
    ("timestamp", TIMESTAMP_MAX_NS),
)


def check_field(index: int, name: str, value: object, maximum: int) -> None:
    # bool is an int subclass and is refused; IntFlag and IntEnum values are ints and accepted.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEventError(index, name, f"must be an integer, got {type(value).__name__}")
    if value < 0:
        raise InvalidEventError(index, name, f"must not be negative, got {value}")
    if value > maximum:
        raise InvalidEventError(index, name, f"must be at most {maximum}, got {value}")


def check_event(index: int, event: object) -> None:
    if type(event) is Transfer:
        fields = _TRANSFER_FIELDS
    elif type(event) is Account:
        fields = _ACCOUNT_FIELDS
    else:
        raise InvalidEventError(
            index, "event", f"must be an Account or a Transfer, got {type(event).__name__}"
        )
    for name, maximum in fields:
        check_field(index, name, getattr(event, name), maximum)


def _plain_transfer(t: object) -> bool:
    """The common case, checked in one expression: a Transfer whose fields are all plain ints in
    range. Anything else takes the slow path, which accepts IntFlag values and names a problem."""
    if type(t) is not Transfer:
        return False
    i, d, c, a, p = t.id, t.debit_account_id, t.credit_account_id, t.amount, t.pending_id
    o, lg, cd, u, f, ts = t.timeout, t.ledger, t.code, t.user_data, t.flags, t.timestamp
    return (
        type(i) is int
        and type(d) is int
        and type(c) is int
        and type(a) is int
        and type(p) is int
        and type(o) is int
        and type(lg) is int
        and type(cd) is int
        and type(u) is int
        and type(f) is int
        and type(ts) is int
        and 0 <= i <= ID_MAX
        and 0 <= d <= ID_MAX
        and 0 <= c <= ID_MAX
        and 0 <= a <= AMOUNT_MAX
        and 0 <= p <= ID_MAX
        and 0 <= o <= TIMEOUT_MAX_SECONDS
        and 0 <= lg <= LEDGER_MAX
        and 0 <= cd <= CODE_MAX
        and 0 <= u <= USER_DATA_MAX
        and 0 <= f <= TRANSFER_FLAGS_MAX
        and 0 <= ts <= TIMESTAMP_MAX_NS
    )


def check_batch(events: Sequence[object], now: object) -> None:
    """Raise a `LedgerError` naming the first problem; return quietly when the batch is sound."""
    if isinstance(now, bool) or not isinstance(now, int) or not 0 <= now <= TIMESTAMP_MAX_NS:
        raise InvalidTimeError(f"now must be an integer of nanoseconds in 0..{TIMESTAMP_MAX_NS}")
    if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
        raise InvalidEventError(0, "events", "must be a sequence of Account and Transfer records")
    if len(events) > BATCH_EVENTS_MAX:
        raise BatchTooLargeError(
            f"a batch holds at most {BATCH_EVENTS_MAX} events, got {len(events)}; split it"
        )
    for index, event in enumerate(events):
        if not _plain_transfer(event):
            check_event(index, event)
