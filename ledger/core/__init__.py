"""The ledger core: pure, deterministic, stdlib only. No clock, no randomness, no I/O."""

from ledger.core.engine import Ledger, apply
from ledger.core.errors import (
    BatchTooLargeError,
    InvalidEventError,
    InvalidTimeError,
    LedgerError,
)
from ledger.core.flags import AccountFlags, TransferFlags
from ledger.core.limits import AMOUNT_MAX, BATCH_EVENTS_MAX, ID_MAX, NS_PER_SECOND
from ledger.core.results import Result
from ledger.core.types import Account, AccountBalance, Expiry, PendingStatus, Transfer

__all__ = [
    "AMOUNT_MAX",
    "BATCH_EVENTS_MAX",
    "ID_MAX",
    "NS_PER_SECOND",
    "Account",
    "AccountBalance",
    "AccountFlags",
    "BatchTooLargeError",
    "Expiry",
    "InvalidEventError",
    "InvalidTimeError",
    "Ledger",
    "LedgerError",
    "PendingStatus",
    "Result",
    "Transfer",
    "TransferFlags",
    "apply",
]
