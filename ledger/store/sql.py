"""What SQLite and PostgreSQL stores share: the schema's shape, loading the rows a batch can
read, and writing back what the core changed, with the hash chain, in one transaction.

A dialect (`ledger.store.sqlite`, `ledger.store.postgres`) supplies the connection, the
placeholder, how to begin a write transaction (taking the ledger's clock row first, so batches
are applied one after another in timestamp order) and how to match a list of ids.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from ledger.core.engine import Changes, Ledger, account_from_row, transfer_from_row
from ledger.core.flags import TransferFlags
from ledger.core.limits import ID_MAX, NS_PER_SECOND
from ledger.core.results import Result
from ledger.core.types import (
    Account,
    AccountBalance,
    Expiry,
    PendingStatus,
    Transfer,
    TransferRecord,
)
from ledger.core.validate import check_batch
from ledger.store import chain
from ledger.store.base import Build, Rollback, Snapshot, Store, T, Then
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
_STATUSES = tuple(PendingStatus)  # by stored number
assert [int(s) for s in _STATUSES] == list(range(len(_STATUSES)))
E = TypeVar("E", Transfer, TransferRecord)  # how a journal read builds its transfers

Cursor = Any  # a DB-API cursor of the dialect's driver


CLOCK_ROW = "SELECT timestamp, head FROM clock WHERE id = 1"


def _clock_of(row: Sequence[Any]) -> tuple[int, bytes]:
    return int(row[0]), bytes(row[1])


class SqlStore(Store):
    """A store on a SQL database; subclasses supply the dialect."""

    placeholder = "?"

    # --- what a dialect supplies --------------------------------------------------------------

    @abstractmethod
    def _write_transaction(self) -> Any:
        """A context manager giving a cursor inside a write transaction that holds the clock
        row, whose last statement read that row (`timestamp, head`: fetch it); commits on
        success, rolls back on any exception."""

    @abstractmethod
    def _read_cursor(self) -> Any:
        """A context manager giving a cursor for a consistent read."""

    @abstractmethod
    def _statement_rows(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """The rows of one statement run outside any transaction block: it reads a snapshot
        of its own, and on PostgreSQL it costs one round trip instead of three (BEGIN, the
        statement, COMMIT)."""

    @abstractmethod
    def _matching(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        """A WHERE condition that `column` is one of `ids`, and its parameters."""

    # --- applying a batch ---------------------------------------------------------------------

    def apply(
        self, events: Sequence[Account | Transfer], now: int, *, then: Then | None = None
    ) -> list[Result]:
        check_batch(events, now)  # refuse malformed input before touching the database
        return self._transact(now, lambda view: (events, then), checked=True)

    def transact(self, now: int, build: Build) -> list[Result]:
        check_batch([], now)  # a bad `now` is refused before the database is touched
        return self._transact(now, build, checked=False)

    def _transact(self, now: int, build: Build, *, checked: bool) -> list[Result]:
        results: list[Result] = []
        try:
            with self._write_transaction() as cur:
                clock = _clock_of(cur.fetchone())
                view = _View(self, cur, max(now, clock[0] + 1))
                events, then = build(view)
                if not checked:
                    check_batch(events, now)
                results = self._apply_in(cur, events, now, clock, view.account_rows)
                if then is not None:
                    then(results, cur)
        except Rollback:
            pass  # the transaction context rolled everything back
        return results

    def expire_due(self, now: int) -> None:
        """A read first: the write transaction, with its lock on the clock row (and on
        PostgreSQL a commit to flush), only when a pending transfer is due."""
        check_batch([], now)
        if self.read(lambda cur: self._any_due(cur, now)):
            self.apply([], now)

    def _any_due(self, cur: Cursor, now: int) -> bool:
        """Whether a batch at `now` would expire a pending transfer: one due by the batch's
        time, max(now, clock + 1), as `_transact` reckons it."""
        return bool(self._read_all(cur, [self._due_query(now)])[0])

    def _due_query(self, now: int) -> tuple[str, list[Any]]:
        p = self.placeholder
        return (
            "SELECT 1 FROM transfers WHERE status = 1 AND expires_at <= "
            f"(SELECT CASE WHEN timestamp + 1 > {p} THEN timestamp + 1 ELSE {p} END "
            "FROM clock WHERE id = 1) LIMIT 1",
            [now, now],
        )

    def accounts_at(self, ids: Sequence[int], now: int) -> list[Account]:
        """One read for both (sent together where the dialect can) when nothing is due."""
        check_batch([], now)
        wanted = _storable(ids)
        queries = [self._due_query(now), self._select_ids(ACCOUNT_COLUMNS, "accounts", wanted)]
        due, rows = self.read(lambda cur: self._read_all(cur, queries))
        if due:
            self.apply([], now)
            return self.lookup_accounts(ids)
        found = {r[0]: account_from_row(r) for r in rows}
        return [found[i] for i in ids if i in found]

    def _apply_in(
        self,
        cur: Cursor,
        events: Sequence[Account | Transfer],
        now: int,
        clock: tuple[int, bytes],
        read: Mapping[int, Sequence[int]],
    ) -> list[Result]:
        """Run the core on the rows `events` can read and write back what changed. `clock` is
        the clock row as the transaction read it under its lock (only `_persist` writes it);
        `read`, account rows this transaction already read (unchanged since: it holds that
        lock)."""
        timestamp, head = clock
        loaded = self._load(cur, events, max(now, timestamp + 1), timestamp, read)
        results = loaded.ledger.apply_checked(events, now)
        changes = loaded.ledger.take_changes()
        if changes.timestamp != timestamp:
            self._persist(cur, changes, loaded.account_ids, head)
        return results

    def read(self, fn: Callable[[Any], T]) -> T:
        with self._read_cursor() as cur:
            return fn(cur)

    def _clock(self, cur: Cursor) -> tuple[int, bytes]:
        cur.execute(CLOCK_ROW)
        return _clock_of(cur.fetchone())

    def _load(
        self,
        cur: Cursor,
        events: Sequence[Account | Transfer],
        cutoff: int,
        timestamp: int,
        read: Mapping[int, Sequence[int]],
    ) -> _Loaded:
        """Load every row the batch can read: its transfers and the pending transfers they name,
        the pending transfers due to expire, the accounts of all of these (those not in `read`
        already), and which of the batch's ids are remembered as failed. The accounts the
        events name are read with the transfers, those that only loaded transfers name after."""
        transfer_ids = {e.id for e in events if type(e) is Transfer}
        transfer_ids |= {e.pending_id for e in events if type(e) is Transfer and e.pending_id}
        account_ids = {e.id for e in events if type(e) is Account}
        for e in events:
            if type(e) is Transfer:
                account_ids.add(e.debit_account_id)
                account_ids.add(e.credit_account_id)
        account_ids.discard(0)
        failed_ids = sorted(e.id for e in events if type(e) is Transfer)
        transfers, accounts, failed = self._read_all(
            cur,
            [
                self._transfers_and_due(sorted(transfer_ids), cutoff),
                self._select_ids(ACCOUNT_COLUMNS, "accounts", sorted(account_ids - read.keys())),
                self._select_ids("id", "failed", failed_ids),
            ],
        )
        named = {row[1] for row in transfers} | {row[2] for row in transfers}
        named -= account_ids | {0}
        accounts += self._account_rows(cur, sorted(named - read.keys()))
        accounts += [read[i] for i in (account_ids | named) & read.keys()]
        ledger = Ledger.load_rows(
            account_rows=accounts,
            transfer_rows=transfers,
            failed=[row[0] for row in failed],
            timestamp=timestamp,
        )
        return _Loaded(ledger, frozenset(row[0] for row in accounts))

    def _read_all(
        self, cur: Cursor, queries: Sequence[tuple[str, list[Any]] | None]
    ) -> list[list[Sequence[Any]]]:
        """Each query's rows (none for None), in order; a dialect may send them together."""
        found: list[list[Sequence[Any]]] = []
        for query in queries:
            if query is not None:
                cur.execute(*query)
            found.append([] if query is None else list(cur.fetchall()))
        return found

    def _select_ids(
        self, columns: str, table: str, ids: Sequence[int]
    ) -> tuple[str, list[Any]] | None:
        """SELECT `columns` of the rows of `table` among `ids` (None: no ids, no query)."""
        if not ids:
            return None
        where, params = self._matching("id", ids)
        return f"SELECT {columns} FROM {table} WHERE {where}", params

    def _account_rows(self, cur: Cursor, ids: Sequence[int]) -> list[Sequence[int]]:
        """Accounts as ACCOUNT_ROW tuples (the engine loads them as they are)."""
        return self._read_all(cur, [self._select_ids(ACCOUNT_COLUMNS, "accounts", ids)])[0]

    def _transfer_rows(self, cur: Cursor, ids: Sequence[int]) -> list[Sequence[int]]:
        """Transfers as TRANSFER_ROW tuples followed by their pending status."""
        return self._read_all(cur, [self._transfers_query(ids)])[0]

    def _transfers_query(self, ids: Sequence[int]) -> tuple[str, list[Any]] | None:
        return self._select_ids(f"{TRANSFER_COLUMNS}, status", "transfers", ids)

    def _transfers_and_due(self, ids: Sequence[int], cutoff: int) -> tuple[str, list[Any]]:
        """A query of the transfers among `ids` and the pending transfers due by `cutoff` (a
        transfer may come twice), as `_transfer_rows` gives them."""
        due = f"SELECT {TRANSFER_COLUMNS}, status FROM transfers WHERE status = 1 AND "
        due += f"expires_at <= {self.placeholder}"
        by_id = self._select_ids(f"{TRANSFER_COLUMNS}, status", "transfers", ids)
        if by_id is None:
            return due, [cutoff]
        return f"{by_id[0]} UNION ALL {due}", [*by_id[1], cutoff]

    # --- writing what changed -----------------------------------------------------------------

    def _persist(
        self, cur: Cursor, changes: Changes, loaded_accounts: frozenset[int], head: bytes
    ) -> None:
        created = [a for a in changes.account_rows if a[0] not in loaded_accounts]
        updated = [a for a in changes.account_rows if a[0] in loaded_accounts]
        head, hashes = _chain(head, created, changes.transfer_rows, changes.expiries)
        p = self.placeholder
        self._insert_accounts(cur, created, hashes)
        self._update_accounts(cur, updated)
        self._insert_transfers(cur, changes.transfer_rows, hashes)
        # After the inserts: a pending transfer may be created and resolved in one batch.
        self._update_statuses(cur, changes.statuses)
        expiries = [
            (e.pending_id, e.amount, e.timestamp, hashes[e.timestamp]) for e in changes.expiries
        ]
        if expiries:  # an empty executemany still costs PostgreSQL a round trip
            cur.executemany(
                f"INSERT INTO expiries (pending_id, amount, timestamp, hash) "
                f"VALUES ({p}, {p}, {p}, {p})",
                expiries,
            )
        if changes.failed:
            cur.executemany(f"INSERT INTO failed (id) VALUES ({p})", [(i,) for i in changes.failed])
        self._insert_history(cur, changes.history)
        cur.execute(
            f"UPDATE clock SET timestamp = {p}, head = {p} WHERE id = 1",
            (changes.timestamp, head),
        )

    def _update_accounts(self, cur: Cursor, rows: Sequence[Sequence[int]]) -> None:
        """Write the totals of accounts that existed before the batch (a dialect may do it in
        one statement)."""
        p = self.placeholder
        cur.executemany(
            f"UPDATE accounts SET debits_pending = {p}, debits_posted = {p}, "
            f"credits_pending = {p}, credits_posted = {p} WHERE id = {p}",
            [(a[5], a[6], a[7], a[8], a[0]) for a in rows],
        )

    def _update_statuses(self, cur: Cursor, statuses: Mapping[int, PendingStatus]) -> None:
        """Write the new status of pending transfers posted, voided or expired."""
        p = self.placeholder
        cur.executemany(
            f"UPDATE transfers SET status = {p} WHERE id = {p}",
            [(int(status), i) for i, status in statuses.items()],
        )

    def _insert_accounts(
        self, cur: Cursor, accounts: Sequence[Sequence[int]], hashes: dict[int, bytes]
    ) -> None:
        if not accounts:
            return
        p = ", ".join([self.placeholder] * 11)
        cur.executemany(
            f"INSERT INTO accounts ({ACCOUNT_COLUMNS}, hash) VALUES ({p})",
            [(*a, hashes[a[9]]) for a in accounts],
        )

    def _insert_transfers(
        self, cur: Cursor, transfers: Sequence[Sequence[int]], hashes: dict[int, bytes]
    ) -> None:
        if not transfers:
            return
        p = ", ".join([self.placeholder] * 14)
        cur.executemany(
            f"INSERT INTO transfers ({TRANSFER_COLUMNS}, status, expires_at, hash) VALUES ({p})",
            [_transfer_values(t, hashes[t[10]]) for t in transfers],
        )

    def _insert_history(self, cur: Cursor, history: Sequence[AccountBalance]) -> None:
        if not history:
            return
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

    def query(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """The rows of one statement (in this dialect's placeholders), read in a snapshot of
        its own: for reads that one statement answers whole."""
        return self._statement_rows(sql, params)

    def _queried(self, query: tuple[str, list[Any]] | None) -> list[Sequence[Any]]:
        return self.query(*query) if query is not None else []

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]:
        rows = self._queried(self._select_ids(ACCOUNT_COLUMNS, "accounts", _storable(ids)))
        found = {r[0]: account_from_row(r) for r in rows}
        return [found[i] for i in ids if i in found]

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]:
        rows = self._queried(self._transfers_query(_storable(ids)))
        found = {r[0]: transfer_from_row(r) for r in rows}
        return [found[i] for i in ids if i in found]

    def pending_status(self, transfer_id: int) -> PendingStatus:
        found = self._queried(self._transfers_query(_storable([transfer_id])))
        return PendingStatus(found[0][11]) if found else PendingStatus.NONE

    def account_history(self, account_id: int) -> list[AccountBalance]:
        if not _storable([account_id]):
            return []
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

    def statuses(self) -> dict[int, PendingStatus]:
        with self._read_cursor() as cur:
            cur.execute("SELECT id, status FROM transfers WHERE status <> 0")
            return {int(i): _STATUSES[s] for i, s in cur.fetchall()}

    def failed_ids(self) -> frozenset[int]:
        with self._read_cursor() as cur:
            return self._failed_ids(cur)

    def _failed_ids(self, cur: Cursor) -> frozenset[int]:
        cur.execute("SELECT id FROM failed")
        return frozenset(row[0] for row in cur.fetchall())

    def journal(self) -> Iterator[Account | Transfer | Expiry]:
        with self._read_cursor() as cur:
            rows, _ = self._journal_rows(cur, transfer_from_row)
        for entry, _ in rows:
            yield entry

    def _journal_rows(
        self, cur: Cursor, transfer: Callable[[Sequence[int]], E]
    ) -> tuple[list[tuple[Account | E | Expiry, bytes]], dict[int, PendingStatus]]:
        """Every journal entry with its stored hash, in timestamp order (each transfer built
        by `transfer` from its row), and the transfers' stored statuses (read with them: one
        pass over the table)."""
        cur.execute(f"SELECT {ACCOUNT_COLUMNS}, hash FROM accounts")
        rows: list[tuple[Account | E | Expiry, bytes]] = [
            (account_from_row(r), bytes(r[10])) for r in cur.fetchall()
        ]
        cur.execute(f"SELECT {TRANSFER_COLUMNS}, hash, status FROM transfers")
        transfers = cur.fetchall()
        rows += [(transfer(r), bytes(r[11])) for r in transfers]
        statuses = {r[0]: _STATUSES[r[12]] for r in transfers if r[12]}
        cur.execute("SELECT pending_id, amount, timestamp, hash FROM expiries")
        rows += [
            (Expiry(pending_id=r[0], amount=r[1], timestamp=r[2]), bytes(r[3]))
            for r in cur.fetchall()
        ]
        rows.sort(key=lambda row: row[0].timestamp)
        return rows, statuses

    def verify_chain(self) -> ChainReport:
        with self._read_cursor() as cur:  # the head and the rows from one snapshot
            _, head = self._clock(cur)
            rows, _ = self._journal_rows(cur, _record)
        return chain.verify(rows, head)

    def snapshot(self, also: Callable[[Cursor, Snapshot], T]) -> tuple[Snapshot, T]:
        with self._read_cursor() as cur:
            _, head = self._clock(cur)
            rows, statuses = self._journal_rows(cur, _record)
            journal = [entry for entry, _ in rows]
            ledger = Snapshot(
                journal, statuses, self._failed_ids(cur), partial(chain.verify, rows, head)
            )
            return ledger, also(cur, ledger)


def _record(row: Sequence[int]) -> TransferRecord:
    return TransferRecord._make(row[:11])


class _Loaded:
    __slots__ = ("account_ids", "ledger")

    def __init__(self, ledger: Ledger, account_ids: frozenset[int]) -> None:
        self.ledger = ledger
        self.account_ids = account_ids


class _View:
    """The state inside a write transaction, for `transact`'s build function."""

    def __init__(self, store: SqlStore, cur: Cursor, now: int) -> None:
        self._store = store
        self.cursor = cur
        self._now = now
        self.account_rows: dict[int, Sequence[int]] = {}  # read here, so not read again

    def accounts(self, ids: Sequence[int]) -> list[Account]:
        rows = self._store._account_rows(self.cursor, _storable(ids))
        self.account_rows.update((r[0], r) for r in rows)
        found = {r[0]: account_from_row(r) for r in rows}
        return [found[i] for i in ids if i in found]

    def pending_status(self, transfer_id: int) -> PendingStatus:
        return self.pending_statuses([transfer_id])[transfer_id]

    def pending_statuses(self, ids: Sequence[int]) -> dict[int, PendingStatus]:
        found = {i: PendingStatus.NONE for i in ids}
        storable = _storable(ids)
        if storable:
            where, params = self._store._matching("id", storable)
            self.cursor.execute(
                f"SELECT id, status, expires_at FROM transfers WHERE {where}", params
            )
            for transfer_id, status, expires_at in self.cursor.fetchall():
                found[transfer_id] = _status_at(PendingStatus(status), expires_at, self._now)
        return found


def _status_at(status: PendingStatus, expires_at: int | None, now: int) -> PendingStatus:
    """A pending transfer due by `now` has expired (the batch at `now` expires it first)."""
    if status is PendingStatus.PENDING and expires_at is not None and expires_at <= now:
        return PendingStatus.EXPIRED
    return status


def _transfer_values(t: Sequence[int], digest: bytes) -> tuple[Any, ...]:
    """A TRANSFER_ROW with its status, expiry time and hash, as the transfers table holds it."""
    flags, timeout, timestamp = t[9], t[5], t[10]
    pending = flags & _PENDING
    status = int(PendingStatus.PENDING) if pending else int(PendingStatus.NONE)
    expires_at = timestamp + timeout * NS_PER_SECOND if pending and timeout else None
    return (*t, status, expires_at, digest)


def _chain(
    head: bytes,
    accounts: Sequence[Sequence[int]],
    transfers: Sequence[Sequence[int]],
    expiries: Sequence[Expiry],
) -> tuple[bytes, dict[int, bytes]]:
    """Link the batch's new journal entries in timestamp order; returns the new head and each
    entry's hash by timestamp."""
    entries = [(a[9], chain.account_bytes(a)) for a in accounts]
    entries += [(t[10], chain.transfer_bytes(t)) for t in transfers]
    entries += [(e.timestamp, chain.canonical(e)) for e in expiries]
    entries.sort()
    hashes: dict[int, bytes] = {}
    for timestamp, entry_bytes in entries:
        head = chain.link_bytes(head, entry_bytes)
        hashes[timestamp] = head
    return head, hashes


def _storable(ids: Sequence[int]) -> list[int]:
    """The ids that could be stored at all (1..ID_MAX); any other id is simply not found."""
    return [i for i in ids if type(i) is int and 0 < i <= ID_MAX]
