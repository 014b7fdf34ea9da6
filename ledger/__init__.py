"""Tollgate: an access-and-credits engine on a formally checked double-entry ledger."""

from ledger.core import (
    AMOUNT_MAX,
    BATCH_EVENTS_MAX,
    ID_MAX,
    NS_PER_SECOND,
    Account,
    AccountBalance,
    AccountFlags,
    BatchTooLargeError,
    Expiry,
    InvalidEventError,
    InvalidTimeError,
    Ledger,
    LedgerError,
    PendingStatus,
    Result,
    Transfer,
    TransferFlags,
    apply,
)

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
__version__ = "0.1.0"
