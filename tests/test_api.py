"""The package's `__all__` is its public API (STYLE.md: "A small public surface"). Changing it
is a decision: update this list in the same commit, and say why."""

from __future__ import annotations

import ledger

PUBLIC_API = [
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


def test_public_api_is_pinned() -> None:
    assert ledger.__all__ == PUBLIC_API


def test_every_public_name_exists() -> None:
    missing = [name for name in ledger.__all__ if not hasattr(ledger, name)]
    assert missing == []


def test_errors_share_one_root() -> None:
    errors = [ledger.BatchTooLargeError, ledger.InvalidEventError, ledger.InvalidTimeError]
    assert all(issubclass(error, ledger.LedgerError) for error in errors)
    assert issubclass(ledger.LedgerError, Exception)
