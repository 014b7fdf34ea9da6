"""The in-memory store: the core's `Ledger` plus the journal's hash chain. Not durable; for
tests, proofs and simulation, and the twin every durable store is checked against."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ledger.core.engine import Changes, Ledger
from ledger.core.results import Result
from ledger.core.types import Account, AccountBalance, Expiry, PendingStatus, Transfer
from ledger.store import chain
from ledger.store.base import Build, Rollback, Store, StoreError, T, Then
from ledger.store.chain import GENESIS, ChainReport


class MemoryStore(Store):
    """A ledger in this process's memory."""

    def __init__(self) -> None:
        self._ledger = Ledger()
        self._hashes: dict[int, bytes] = {}  # journal entry timestamp -> its chain hash
        self._head = GENESIS
        self._closed = False
        self.extensions: dict[str, object] = {}  # what layers above keep with the store

    def apply(
        self, events: Sequence[Account | Transfer], now: int, *, then: Then | None = None
    ) -> list[Result]:
        return self.transact(now, lambda view: (events, then))

    def transact(self, now: int, build: Build) -> list[Result]:
        self._check_open()
        try:
            events, then = build(_View(self._ledger, now))
        except Rollback:
            return []
        results = self._ledger.apply(events, now)
        changes = self._ledger.take_changes()
        if then is not None:
            try:
                then(results, None)
            except Rollback:
                # Only a batch that changed nothing but failure memos can be undone here.
                if any(r is Result.OK for r in results):
                    raise StoreError("the memory store cannot roll back accepted events") from None
                self._ledger.forget_failures(changes.failed)
        self._chain(changes)
        return results

    def _chain(self, changes: Changes) -> None:
        """Link what a batch created (accounts, transfers, expiries) into the hash chain."""
        created = [a for a in changes.accounts if a.timestamp not in self._hashes]
        entries: list[Account | Transfer | Expiry] = [*created, *changes.transfers]
        entries += changes.expiries
        for entry in sorted(entries, key=lambda e: e.timestamp):
            self._head = chain.link(self._head, entry)
            self._hashes[entry.timestamp] = self._head

    def read(self, fn: Callable[[Any], T]) -> T:
        self._check_open()
        return fn(None)

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]:
        self._check_open()
        found = (self._ledger.lookup_account(i) for i in ids)
        return [a for a in found if a is not None]

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]:
        self._check_open()
        found = (self._ledger.lookup_transfer(i) for i in ids)
        return [t for t in found if t is not None]

    def pending_status(self, transfer_id: int) -> PendingStatus:
        self._check_open()
        return self._ledger.pending_status(transfer_id)

    def account_history(self, account_id: int) -> list[AccountBalance]:
        self._check_open()
        return self._ledger.history(account_id)

    def failed_ids(self) -> frozenset[int]:
        self._check_open()
        return self._ledger.failed_ids()

    def journal(self) -> Iterator[Account | Transfer | Expiry]:
        self._check_open()
        return iter(self._ledger.journal())

    def verify_chain(self) -> ChainReport:
        self._check_open()
        rows = ((e, self._hashes.get(e.timestamp, b"")) for e in self._ledger.journal())
        return chain.verify(rows, self._head)

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("this store is closed; open a new one")


class _View:
    cursor = None

    def __init__(self, ledger: Ledger, now: int) -> None:
        self._ledger = ledger
        self._now = now

    def accounts(self, ids: Sequence[int]) -> list[Account]:
        found = (self._ledger.lookup_account(i) for i in ids)
        return [a for a in found if a is not None]

    def pending_status(self, transfer_id: int) -> PendingStatus:
        return self._ledger.pending_status_at(transfer_id, self._now)

    def pending_statuses(self, ids: Sequence[int]) -> dict[int, PendingStatus]:
        return {i: self._ledger.pending_status_at(i, self._now) for i in ids}
