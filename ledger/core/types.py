"""The ledger's two records. Amounts are integers in minor units; no float ever appears here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """An account, as created and as looked up.

    Attributes:
        id: unique account id, 1..ID_MAX-1.
        ledger: the unit of account; transfers never cross ledgers.
        code: the account's type, chosen by the application (nonzero).
        flags: `AccountFlags` bits.
        user_data: an application reference (e.g. the customer id).
        debits_pending, debits_posted, credits_pending, credits_posted: the totals; zero on
            creation, maintained by the ledger.
        timestamp: assigned by the ledger on creation; zero when submitted.
    """

    id: int
    ledger: int
    code: int
    flags: int = 0
    user_data: int = 0
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    timestamp: int = 0

    @property
    def balance(self) -> int:
        """Posted credits minus posted debits (a customer's funding account reads this)."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What a debit could take now: posted credits less posted and pending debits."""
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """A transfer, as submitted and as stored.

    Attributes:
        id: the idempotency key, unique forever, 1..ID_MAX-1.
        debit_account_id, credit_account_id: the two accounts (zero on a post or void means
            "as the pending transfer").
        amount: minor units; for a balancing transfer the maximum asked, stored as what moved.
        pending_id: for a post or void, the pending transfer it resolves.
        timeout: seconds a pending transfer may stay pending (0: no expiry).
        ledger, code: as the accounts' (zero on a post or void means "as the pending").
        user_data: an application reference (e.g. the monetization event).
        flags: `TransferFlags` bits.
        timestamp: assigned by the ledger; zero when submitted.
    """

    id: int
    debit_account_id: int = 0
    credit_account_id: int = 0
    amount: int = 0
    pending_id: int = 0
    timeout: int = 0
    ledger: int = 0
    code: int = 0
    user_data: int = 0
    flags: int = 0
    timestamp: int = 0


class TransferRecord(NamedTuple):
    """A stored transfer as a plain tuple: `Transfer`'s fields, in its order (which is also
    the order of the stored row and of the hash chain's canonical bytes). What a read of the
    whole journal (the audit's) builds instead of `Transfer`: the same attributes, at an
    eighth of the cost to build, and a tuple the garbage collector stops tracking."""

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    pending_id: int
    timeout: int
    ledger: int
    code: int
    user_data: int
    flags: int
    timestamp: int


class PendingStatus(IntEnum):
    """Where a pending transfer stands. Stable numbers (stored)."""

    NONE = 0
    PENDING = 1
    POSTED = 2
    VOIDED = 3
    EXPIRED = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Expiry:
    """A pending transfer released because its timeout passed; a journal entry of its own.

    Attributes:
        pending_id: the pending transfer that expired.
        amount: what it released, in minor units.
        timestamp: assigned by the ledger when it expired.
    """

    pending_id: int
    amount: int
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountBalance:
    """An account's totals just after a transfer, kept for accounts with the `history` flag."""

    account_id: int
    timestamp: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
