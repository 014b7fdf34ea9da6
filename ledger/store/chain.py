"""The journal's hash chain: every journal entry (account created, transfer, expiry) carries
sha256(previous hash || canonical bytes of the entry). Entries are chained in timestamp order,
which the ledger makes strictly increasing across all three kinds, so a modified, deleted,
inserted or reordered row breaks the chain at (or right after) that row."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.core.types import Account, Expiry, Transfer, TransferRecord

GENESIS = bytes(32)
"""The hash before the first entry."""

_ACCOUNT = struct.Struct(">BqIHHqq")  # kind, id, ledger, code, flags, user_data, timestamp
_TRANSFER = struct.Struct(">BqqqqqIIHqHq")  # kind, id, dr, cr, amount, pending, timeout, ...
_EXPIRY = struct.Struct(">Bqqq")  # kind, pending_id, amount, timestamp

Entry = Account | Transfer | TransferRecord | Expiry


def canonical(entry: Entry) -> bytes:
    """Fixed-width big-endian bytes of the fields that define an entry (an account's changing
    totals are not part of it: they are derived from the journal)."""
    if type(entry) is TransferRecord:
        return _TRANSFER.pack(2, *entry)
    if type(entry) is Transfer:
        return transfer_bytes(
            (
                entry.id,
                entry.debit_account_id,
                entry.credit_account_id,
                entry.amount,
                entry.pending_id,
                entry.timeout,
                entry.ledger,
                entry.code,
                entry.user_data,
                entry.flags,
                entry.timestamp,
            )
        )
    if type(entry) is Account:
        return _ACCOUNT.pack(
            1, entry.id, entry.ledger, entry.code, entry.flags, entry.user_data, entry.timestamp
        )
    assert type(entry) is Expiry
    return _EXPIRY.pack(3, entry.pending_id, entry.amount, entry.timestamp)


def transfer_bytes(row: Sequence[int]) -> bytes:
    """`canonical` of a transfer given as a row: id, debit and credit account ids, amount,
    pending_id, timeout, ledger, code, user_data, flags, timestamp."""
    return _TRANSFER.pack(2, *row)


def account_bytes(row: Sequence[int]) -> bytes:
    """`canonical` of an account given as a row: id, ledger, code, flags, user_data, the four
    totals (not hashed), timestamp."""
    return _ACCOUNT.pack(1, row[0], row[1], row[2], row[3], row[4], row[9])


def link(previous: bytes, entry: Entry) -> bytes:
    return hashlib.sha256(previous + canonical(entry)).digest()


def link_bytes(previous: bytes, entry_bytes: bytes) -> bytes:
    return hashlib.sha256(previous + entry_bytes).digest()


def describe(entry: Entry) -> str:
    if isinstance(entry, Transfer | TransferRecord):
        return f"transfer {entry.id} (timestamp {entry.timestamp})"
    if isinstance(entry, Account):
        return f"account {entry.id} (timestamp {entry.timestamp})"
    return f"expiry of pending transfer {entry.pending_id} (timestamp {entry.timestamp})"


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of `verify_chain`.

    Attributes:
        ok: every stored hash equals the recomputed one, and the head matches.
        entries: how many journal entries were checked.
        first_bad: the first entry whose stored hash does not match (None when ok).
        problem: what is wrong, in words (empty when ok).
    """

    ok: bool
    entries: int
    first_bad: str | None = None
    problem: str = ""


def verify(rows: Iterable[tuple[Entry, bytes]], head: bytes) -> ChainReport:
    """Recompute the chain over `rows` (entry and its stored hash, in timestamp order) and
    compare each hash and finally the recorded `head`."""
    previous = GENESIS
    count = 0
    last_timestamp = -1
    for entry, stored in rows:
        count += 1
        if entry.timestamp <= last_timestamp:
            return ChainReport(False, count, describe(entry), "timestamps are not increasing")
        last_timestamp = entry.timestamp
        expected = link(previous, entry)
        if stored != expected:
            return ChainReport(
                False, count, describe(entry), "its hash does not match its contents and position"
            )
        previous = stored
    if previous != head:
        return ChainReport(
            False, count, "the end of the journal", "entries after the last one are missing"
        )
    return ChainReport(True, count)
