"""What SQLite and PostgreSQL stores share: the schema's shape, loading the rows a batch can
read, and writing back what the core changed, with the hash chain, in one transaction.

A dialect (`ledger.store.sqlite`, `ledger.store.postgres`) supplies the connection, the
placeholder, how to begin a write transaction (taking the ledger's clock row first, so batches
are applied one after another in timestamp order) and how to match a list of ids.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ledger.core.engine import Changes, Ledger
from ledger.core.flags import TransferFlags
from ledger.core.limits import NS_PER_SECOND
from ledger.core.results import Result
from ledger.core.types import Account, AccountBalance, Expiry, PendingStatus, Transfer
from ledger.core.validate import check_batch
from ledger.store import chain
from ledger.store.base import Store
from ledger.store.chain import ChainReport

SCHEMA_VERSION = 1
APPLICATION = "tollgate"

ACCOUNT_COLUMNS = (
    "id, ledger, code, flags, user_data, debits_pending, debits_posted, credits_pending, "
    "credits_posted, timestamp"
)
TRANSFER_COLUMNS = (
    "id, debit_account_id, credit_account_id, amount, pending_id, timeout, ledger, code, "
    "user_data, flags, timestamp"
)
_PENDING = int(TransferFlags.PENDING)
_RESOLVING = int(TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING)

Cursor = Any  # a DB-API cursor of the dialect's driver


def account_row(row: Sequence[int]) -> Account:
    return Account(
        id=row[0],
        ledger=row[1],
        code=row[2],
        flags=row[3],
        user_data=row[4],
        debits_pending=row[5],
        debits_posted=row[6],
        credits_pending=row[7],
        credits_posted=row[8],
        timestamp=row[9],
    )


def transfer_row(row: Sequence[int]) -> Transfer:
    return Transfer(
        id=row[0],
        debit_account_id=row[1],
        credit_account_id=row[2],
        amount=row[3],
        pending_id=row[4],
        timeout=row[5],
        ledger=row[6],
        code=row[7],
        user_data=row[8],
        flags=row[9],
        timestamp=row[10],
    )


class SqlStore(Store):
    """A store on a SQL database; subclasses supply the dialect."""

    placeholder = "?"

    # --- what a dialect supplies --------------------------------------------------------------

    @abstractmethod
    def _write_transaction(self) -> Any:
        """A context manager giving a cursor inside a write transaction that holds the clock
        row; commits on success, rolls back on any exception."""

    @abstractmethod
    def _read_cursor(self) -> Any:
        """A context manager giving a cursor for a consistent read."""

    @abstractmethod
    def _matching(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        """A WHERE condition that `column` is one of `ids`, and its parameters."""

    # --- applying a batch ---------------------------------------------------------------------

    def apply(self, events: Sequence[Account | Transfer], now: int) -> list[Result]:
        check_batch(events, now)  # refuse malformed input before touching the database
        with self._write_transaction() as cur:
            timestamp, head = self._clock(cur)
            loaded = self._load(cur, events, max(now, timestamp + 1), timestamp)
            results = loaded.ledger.apply(events, now)
            changes = loaded.ledger.take_changes()
            if changes.timestamp != timestamp:
                self._persist(cur, changes, loaded.account_ids, head)
        return results

    def _clock(self, cur: Cursor) -> tuple[int, bytes]:
        cur.execute("SELECT timestamp, head FROM clock WHERE id = 1")
        timestamp, head = cur.fetchone()
        return int(timestamp), bytes(head)

    def _load(
        self, cur: Cursor, events: Sequence[Account | Transfer], cutoff: int, timestamp: int
    ) -> _Loaded:
        """Load every row the batch can read: its transfers and the pending transfers they name,
        the pending transfers due to expire, the accounts of all of these, and which of the
        batch's ids are remembered as failed."""
        transfer_ids = {e.id for e in events if type(e) is Transfer}
        transfer_ids |= {e.pending_id for e in events if type(e) is Transfer and e.pending_id}
        transfers = self._transfers(cur, sorted(transfer_ids))
        transfers += self._due(cur, cutoff)
        account_ids = {e.id for e in events if type(e) is Account}
        for e in events:
            if type(e) is Transfer:
                account_ids |= {e.debit_account_id, e.credit_account_id}
        for t, _ in transfers:
            account_ids |= {t.debit_account_id, t.credit_account_id}
        account_ids.discard(0)
        accounts = self._accounts(cur, sorted(account_ids))
        failed = self._failed(cur, sorted(e.id for e in events if type(e) is Transfer))
        ledger = Ledger.load(
            accounts=accounts, transfers=transfers, failed=failed, timestamp=timestamp
        )
        return _Loaded(ledger, frozenset(a.id for a in accounts))

    def _accounts(self, cur: Cursor, ids: Sequence[int]) -> list[Account]:
        if not ids:
            return []
        where, params = self._matching("id", ids)
        cur.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {where}", params)
        return [account_row(row) for row in cur.fetchall()]

    def _transfers(self, cur: Cursor, ids: Sequence[int]) -> list[tuple[Transfer, PendingStatus]]:
        if not ids:
            return []
        where, params = self._matching("id", ids)
        cur.execute(f"SELECT {TRANSFER_COLUMNS}, status FROM transfers WHERE {where}", params)
        return [(transfer_row(row), PendingStatus(row[11])) for row in cur.fetchall()]

    def _due(self, cur: Cursor, cutoff: int) -> list[tuple[Transfer, PendingStatus]]:
        p = self.placeholder
        cur.execute(
            f"SELECT {TRANSFER_COLUMNS}, status FROM transfers "
            f"WHERE status = 1 AND expires_at <= {p} ORDER BY expires_at, timestamp",
            (cutoff,),
        )
        return [(transfer_row(row), PendingStatus.PENDING) for row in cur.fetchall()]

    def _failed(self, cur: Cursor, ids: Sequence[int]) -> list[int]:
        if not ids:
            return []
        where, params = self._matching("id", ids)
        cur.execute(f"SELECT id FROM failed WHERE {where}", params)
        return [row[0] for row in cur.fetchall()]

    # --- writing what changed -----------------------------------------------------------------

    def _persist(
        self, cur: Cursor, changes: Changes, loaded_accounts: frozenset[int], head: bytes
    ) -> None:
        created = [a for a in changes.accounts if a.id not in loaded_accounts]
        updated = [a for a in changes.accounts if a.id in loaded_accounts]
        entries: list[Account | Transfer | Expiry] = [*created, *changes.transfers]
        entries += changes.expiries
        entries.sort(key=lambda entry: entry.timestamp)
        hashes: dict[int, bytes] = {}
        for entry in entries:
            head = chain.link(head, entry)
            hashes[entry.timestamp] = head
        p = self.placeholder
        self._insert_accounts(cur, created, hashes)
        cur.executemany(
            f"UPDATE accounts SET debits_pending = {p}, debits_posted = {p}, "
            f"credits_pending = {p}, credits_posted = {p} WHERE id = {p}",
            [
                (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted, a.id)
                for a in updated
            ],
        )
        self._insert_transfers(cur, changes.transfers, hashes)
        cur.executemany(
            f"UPDATE transfers SET status = {p} WHERE id = {p}",
            [(int(status), i) for i, status in changes.statuses.items()],
        )
        cur.executemany(
            f"INSERT INTO expiries (pending_id, amount, timestamp, hash) VALUES ({p}, {p}, {p}, {p})",
            [(e.pending_id, e.amount, e.timestamp, hashes[e.timestamp]) for e in changes.expiries],
        )
        cur.executemany(f"INSERT INTO failed (id) VALUES ({p})", [(i,) for i in changes.failed])
        self._insert_history(cur, changes.history)
        cur.execute(
            f"UPDATE clock SET timestamp = {p}, head = {p} WHERE id = 1",
            (changes.timestamp, head),
        )

    def _insert_accounts(
        self, cur: Cursor, accounts: Sequence[Account], hashes: dict[int, bytes]
    ) -> None:
        p = ", ".join([self.placeholder] * 11)
        cur.executemany(
            f"INSERT INTO accounts ({ACCOUNT_COLUMNS}, hash) VALUES ({p})",
            [
                (
                    a.id,
                    a.ledger,
                    a.code,
                    a.flags,
                    a.user_data,
                    a.debits_pending,
                    a.debits_posted,
                    a.credits_pending,
                    a.credits_posted,
                    a.timestamp,
                    hashes[a.timestamp],
                )
                for a in accounts
            ],
        )

    def _insert_transfers(
        self, cur: Cursor, transfers: Sequence[Transfer], hashes: dict[int, bytes]
    ) -> None:
        p = ", ".join([self.placeholder] * 14)
        cur.executemany(
            f"INSERT INTO transfers ({TRANSFER_COLUMNS}, status, expires_at, hash) VALUES ({p})",
            [_transfer_values(t, hashes[t.timestamp]) for t in transfers],
        )

    def _insert_history(self, cur: Cursor, history: Sequence[AccountBalance]) -> None:
        p = ", ".join([self.placeholder] * 6)
        cur.executemany(
            "INSERT INTO history (account_id, timestamp, debits_pending, debits_posted, "
            f"credits_pending, credits_posted) VALUES ({p})",
            [
                (
                    h.account_id,
                    h.timestamp,
                    h.debits_pending,
                    h.debits_posted,
                    h.credits_pending,
                    h.credits_posted,
                )
                for h in history
            ],
        )

    # --- reads --------------------------------------------------------------------------------

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]:
        with self._read_cursor() as cur:
            found = {a.id: a for a in self._accounts(cur, list(ids))}
        return [found[i] for i in ids if i in found]

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]:
        with self._read_cursor() as cur:
            found = {t.id: t for t, _ in self._transfers(cur, list(ids))}
        return [found[i] for i in ids if i in found]

    def pending_status(self, transfer_id: int) -> PendingStatus:
        with self._read_cursor() as cur:
            found = self._transfers(cur, [transfer_id])
        return found[0][1] if found else PendingStatus.NONE

    def account_history(self, account_id: int) -> list[AccountBalance]:
        p = self.placeholder
        with self._read_cursor() as cur:
            cur.execute(
                "SELECT account_id, timestamp, debits_pending, debits_posted, credits_pending, "
                f"credits_posted FROM history WHERE account_id = {p} ORDER BY timestamp",
                (account_id,),
            )
            rows = cur.fetchall()
        return [
            AccountBalance(
                account_id=r[0],
                timestamp=r[1],
                debits_pending=r[2],
                debits_posted=r[3],
                credits_pending=r[4],
                credits_posted=r[5],
            )
            for r in rows
        ]

    def failed_ids(self) -> frozenset[int]:
        with self._read_cursor() as cur:
            cur.execute("SELECT id FROM failed")
            return frozenset(row[0] for row in cur.fetchall())

    def journal(self) -> Iterator[Account | Transfer | Expiry]:
        for entry, _ in self._journal_with_hashes():
            yield entry

    def _journal_with_hashes(self) -> Iterator[tuple[Account | Transfer | Expiry, bytes]]:
        with self._read_cursor() as cur:
            cur.execute(f"SELECT {ACCOUNT_COLUMNS}, hash FROM accounts")
            rows: list[tuple[Account | Transfer | Expiry, bytes]] = [
                (account_row(r), bytes(r[10])) for r in cur.fetchall()
            ]
            cur.execute(f"SELECT {TRANSFER_COLUMNS}, hash FROM transfers")
            rows += [(transfer_row(r), bytes(r[11])) for r in cur.fetchall()]
            cur.execute("SELECT pending_id, amount, timestamp, hash FROM expiries")
            rows += [
                (Expiry(pending_id=r[0], amount=r[1], timestamp=r[2]), bytes(r[3]))
                for r in cur.fetchall()
            ]
        rows.sort(key=lambda row: row[0].timestamp)
        yield from rows

    def verify_chain(self) -> ChainReport:
        with self._read_cursor() as cur:
            _, head = self._clock(cur)
        return chain.verify(self._journal_with_hashes(), head)


class _Loaded:
    __slots__ = ("account_ids", "ledger")

    def __init__(self, ledger: Ledger, account_ids: frozenset[int]) -> None:
        self.ledger = ledger
        self.account_ids = account_ids


def _transfer_values(t: Transfer, digest: bytes) -> tuple[Any, ...]:
    pending = t.flags & _PENDING
    status = int(PendingStatus.PENDING) if pending else int(PendingStatus.NONE)
    expires_at = t.timestamp + t.timeout * NS_PER_SECOND if pending and t.timeout else None
    return (
        t.id,
        t.debit_account_id,
        t.credit_account_id,
        t.amount,
        t.pending_id,
        t.timeout,
        t.ledger,
        t.code,
        t.user_data,
        t.flags,
        t.timestamp,
        status,
        expires_at,
        digest,
    )


def chunks(ids: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
