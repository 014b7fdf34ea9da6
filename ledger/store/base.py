"""The store interface: durable ledger state behind one small API, and the store's errors.

The core decides, the store persists: every store applies a batch by running the core's
`Ledger` on the rows that batch can read and writing back exactly what `take_changes` reports,
in one transaction. So every store gives the core's results, event for event.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TypeVar

from ledger.core.engine import transfer_record
from ledger.core.errors import LedgerError
from ledger.core.results import Result
from ledger.core.types import (
    Account,
    AccountBalance,
    Expiry,
    PendingStatus,
    Transfer,
    TransferRecord,
)
from ledger.store.chain import ChainReport


class StoreError(LedgerError):
    """The store cannot be opened or used as asked; the message names it and says what to do."""


class NotATollgateDatabaseError(StoreError):
    """The file or database exists but was not written by Tollgate; nothing was written to it."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer Tollgate; upgrade Tollgate to open it."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached or opened (path, permissions, server, URL)."""


class Rollback(Exception):
    """Raised by an `apply(..., then=...)` callback to roll the whole transaction back: neither
    the batch nor anything the callback wrote is kept. `apply` returns the batch's results."""


Then = Callable[[list[Result], Any], None]
"""Runs inside `apply`'s transaction with the batch's results and the transaction's cursor (None
for the memory store); what it writes commits or rolls back with the batch."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The ledger as one read saw it: the journal in timestamp order (transfers as
    `TransferRecord`s), the stored status of every pending transfer, the ids remembered as
    failed, and `verify_chain`, which checks the hash chain of the journal as read (the stored
    hashes and head are kept with it), when called: the work can wait, or be done elsewhere."""

    journal: list[Account | TransferRecord | Expiry]
    statuses: dict[int, PendingStatus]
    failed: frozenset[int]
    verify_chain: Callable[[], ChainReport]


class TxView(Protocol):
    """What `Store.transact`'s build function may read: the state inside the transaction,
    after every batch before it and before its own (writers are serialised)."""

    cursor: Any  # the transaction's DB-API cursor (None for the memory store)

    def accounts(self, ids: Sequence[int]) -> list[Account]: ...

    def pending_status(self, transfer_id: int) -> PendingStatus:
        """As the batch will find it: a pending transfer due by the batch's time has expired."""
        ...

    def pending_statuses(self, ids: Sequence[int]) -> dict[int, PendingStatus]:
        """`pending_status` of each of `ids` (NONE for unknown ids), in one read."""
        ...


Build = Callable[[TxView], tuple[Sequence[Account | Transfer], Then | None]]
Release = Callable[[], None]
"""Gives up a lock `Store.hold_lock` granted; calling it again does nothing."""


def check_lock_name(name: str) -> None:
    if not (name and len(name) <= 32 and name.isascii() and name.replace("-", "").isalnum()):
        raise ValueError(f"a lock's name is 1 to 32 letters, digits or '-', not {name!r}")


class Store(ABC):
    """Durable ledger state. Every method is safe to call from one thread at a time."""

    @abstractmethod
    def apply(
        self, events: Sequence[Account | Transfer], now: int, *, then: Then | None = None
    ) -> list[Result]:
        """Apply one batch in one transaction; one result per event. Malformed input raises a
        `LedgerError` and writes nothing. `then` runs in the same transaction (see `Then`); it
        may raise `Rollback`. On PostgreSQL a transaction the server rolled back is run again
        whole, so `then` must only write, never act outside the database."""

    @abstractmethod
    def transact(self, now: int, build: Build) -> list[Result]:
        """One write transaction at `now`: `build(view)` reads the current state and returns
        the batch and its `then`; both commit together. `build` may raise `Rollback`."""

    def expire_due(self, now: int) -> None:
        """Expire the pending transfers due by `now`, releasing what they hold, as an empty
        batch at `now` does. A store that can tell from a read that none is due writes nothing."""
        self.apply([], now)

    def accounts_at(self, ids: Sequence[int], now: int) -> list[Account]:
        """`lookup_accounts` once the pending transfers due by `now` have expired (as
        `expire_due`): what a batch at `now` would find. A store that can tell from the same
        read that none is due writes nothing."""
        self.expire_due(now)
        return self.lookup_accounts(ids)

    @abstractmethod
    def read(self, fn: Callable[[Any], T]) -> T:
        """`fn(cursor)` in one consistent read transaction (cursor None for the memory store)."""

    @abstractmethod
    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]:
        """The accounts that exist among `ids`, in the order asked."""

    @abstractmethod
    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]:
        """The transfers that exist among `ids`, in the order asked."""

    @abstractmethod
    def pending_status(self, transfer_id: int) -> PendingStatus:
        """Where a pending transfer stands (NONE for an unknown id or a non-pending transfer)."""

    @abstractmethod
    def account_history(self, account_id: int) -> list[AccountBalance]:
        """Balances after each change, for an account created with the history flag."""

    @abstractmethod
    def journal(self) -> Iterator[Account | Transfer | Expiry]:
        """Every created account, transfer and expiry, in timestamp order (accounts with the
        totals they have now)."""

    @abstractmethod
    def failed_ids(self) -> frozenset[int]:
        """Ids remembered as failed with a transient result."""

    def statuses(self) -> dict[int, PendingStatus]:
        """The stored status of every transfer that has one (pending transfers)."""
        found = {
            e.id: self.pending_status(e.id)
            for e in self.journal()
            if isinstance(e, Transfer) and e.flags & 2
        }
        return {i: s for i, s in found.items() if s is not PendingStatus.NONE}

    def snapshot(self, also: Callable[[Any, Snapshot], T]) -> tuple[Snapshot, T]:
        """What an audit reads of the ledger, then `also(cursor, that snapshot)`, all from one
        consistent read where the store can: a check of one against the other then never sees
        a write that happened in between."""

        def read(cur: Any) -> tuple[Snapshot, T]:
            chain = self.verify_chain()
            ledger = Snapshot(
                [_record(e) for e in self.journal()],
                self.statuses(),
                self.failed_ids(),
                lambda: chain,
            )
            return ledger, also(cur, ledger)

        return self.read(read)

    @abstractmethod
    def verify_chain(self) -> ChainReport:
        """Recompute the journal's hash chain; names the first entry that does not match."""

    def hold_lock(self, name: str, *, shared: bool) -> Release | None:
        """Take the lock `name` on this database until the returned release is called, the
        store is closed or the process ends, however it ends; None, holding nothing, when it
        cannot be had: another holder has it exclusively, or it is asked exclusively and anyone
        holds it. Not a write lock: for processes that must know who else works on the same
        database (`tollgate serve`). The memory store, which no other process can reach, grants
        every lock."""
        check_lock_name(name)
        return lambda: None

    @abstractmethod
    def close(self) -> None:
        """Release the connection; the store cannot be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _record(entry: Account | Transfer | Expiry) -> Account | TransferRecord | Expiry:
    return transfer_record(entry) if isinstance(entry, Transfer) else entry
