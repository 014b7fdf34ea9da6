"""The journal's hash chain: after a finished run, any row modified, deleted, inserted or moved
behind the store's back makes `verify_chain()` fail and name the first entry that no longer
matches (the tampered row, or for a deleted row the one after the gap).

Stores that keep rows are tampered with through raw SQL on their own database (SQLite: the file
through `sqlite3`; PostgreSQL: the database through psycopg); the in-memory chain is checked
through `chain.verify` on crafted rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ledger import Account, Expiry, Ledger, Transfer
from ledger.core.engine import transfer_record
from ledger.core.types import TransferRecord
from ledger.store import MemoryStore, SqliteStore, Store, chain
from ledger.store.chain import GENESIS, ChainReport, describe
from ledger.store.sql import TRANSFER_COLUMNS
from tests.store import crash_child as workload
from tests.store.crash_child import violations

SEED, BATCHES = 11, 8
END = "the end of the journal"


def finished_run(store: Store) -> list[Account | Transfer | Expiry]:
    """Batches 1..BATCHES of the crash test's workload: accounts, transfers, holds posted,
    voided and expired, failures, linked chains. Returns the journal it left."""
    for k in range(1, BATCHES + 1):
        store.apply(workload.batch(SEED, k), workload.now_of(k))
    journal = list(store.journal())
    assert store.verify_chain() == ChainReport(True, len(journal))
    kinds = {type(e) for e in journal}
    assert kinds == {Account, Transfer, Expiry}, "the run must leave every kind of entry"
    return journal


# --- raw access to each store's rows ------------------------------------------------------------


class Tamper:
    """Runs raw SQL on a store's database, behind the store's back, in one transaction."""

    placeholder = "?"

    def execute(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        raise NotImplementedError

    def sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)


class SqliteTamper(Tamper):
    def __init__(self, path: Path) -> None:
        self.path = path

    def execute(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            for text, params in statements:
                db.execute(text, params)
            db.execute("COMMIT")
        finally:
            db.close()


class PostgresTamper(Tamper):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        self.url = url

    def execute(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        import psycopg

        with psycopg.connect(self.url) as conn, conn.cursor() as cur:
            for text, params in statements:
                cur.execute(self.sql(text), params)


@pytest.fixture(params=["sqlite", "postgres"])
def tamperable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Tamper]]:
    """A store that keeps rows, and raw access to them."""
    store: Store
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        store, tamper = SqliteStore(path), SqliteTamper(path)
    else:
        from ledger.store.postgres import PostgresStore

        url = request.getfixturevalue("postgres_database")()
        store, tamper = PostgresStore(url), PostgresTamper(url)
    try:
        yield store, tamper
    finally:
        store.close()


# --- each kind of tampering ---------------------------------------------------------------------


def pick(journal: Sequence[Any], kind: type, nth: int = 0) -> int:
    """Index in the journal of the nth entry of a kind in the middle of the run."""
    middle = [i for i, e in enumerate(journal) if len(journal) // 4 < i < len(journal) - 2]
    return [i for i in middle if type(journal[i]) is kind][nth]


def where(entry: Any) -> tuple[str, str, int]:
    """The table, key column and key of an entry's row."""
    if type(entry) is Transfer:
        return "transfers", "id", entry.id
    if type(entry) is Account:
        return "accounts", "id", entry.id
    return "expiries", "pending_id", entry.pending_id


Case = Callable[[list[Any], Tamper], str]
"""Tampers with a finished run's rows; returns what `first_bad` must name."""


def modify_amount(journal: list[Any], tamper: Tamper) -> str:
    t = journal[pick(journal, Transfer, 3)]
    tamper.execute([("UPDATE transfers SET amount = amount + 1 WHERE id = ?", (t.id,))])
    return describe(t)


def modify_debit_account(journal: list[Any], tamper: Tamper) -> str:
    t = journal[pick(journal, Transfer, 5)]
    other = workload.BANK if t.debit_account_id != workload.BANK else workload.PLAIN[0]
    tamper.execute([("UPDATE transfers SET debit_account_id = ? WHERE id = ?", (other, t.id))])
    return describe(t)


def modify_account_user_data(journal: list[Any], tamper: Tamper) -> str:
    a = journal[pick(journal, Account, 1)]
    tamper.execute([("UPDATE accounts SET user_data = user_data + 1 WHERE id = ?", (a.id,))])
    return describe(a)


def modify_expiry_amount(journal: list[Any], tamper: Tamper) -> str:
    e = journal[pick(journal, Expiry)]
    tamper.execute(
        [("UPDATE expiries SET amount = amount + 1 WHERE pending_id = ?", (e.pending_id,))]
    )
    return describe(e)


def modify_a_hash(journal: list[Any], tamper: Tamper) -> str:
    t = journal[pick(journal, Transfer, 2)]
    tamper.execute([("UPDATE transfers SET hash = ? WHERE id = ?", (bytes(32), t.id))])
    return describe(t)


def delete_transfer(journal: list[Any], tamper: Tamper) -> str:
    i = pick(journal, Transfer, 4)
    tamper.execute([("DELETE FROM transfers WHERE id = ?", (journal[i].id,))])
    return describe(journal[i + 1])  # the entry after the gap no longer links


def delete_account(journal: list[Any], tamper: Tamper) -> str:
    i = pick(journal, Account, 2)
    tamper.execute([("DELETE FROM accounts WHERE id = ?", (journal[i].id,))])
    return describe(journal[i + 1])


def delete_expiry(journal: list[Any], tamper: Tamper) -> str:
    i = pick(journal, Expiry)
    tamper.execute([("DELETE FROM expiries WHERE pending_id = ?", (journal[i].pending_id,))])
    return describe(journal[i + 1])


def delete_the_last_entry(journal: list[Any], tamper: Tamper) -> str:
    table, key, value = where(journal[-1])
    tamper.execute([(f"DELETE FROM {table} WHERE {key} = ?", (value,))])
    return END  # nothing follows it: the recorded head no longer matches


def _forged(journal: list[Any], after: int) -> Transfer:
    """A plausible transfer squeezed in between two batches (timestamps leave gaps there)."""
    model = next(e for e in journal if type(e) is Transfer and e.flags == 0)
    timestamp = journal[after].timestamp + 1
    assert journal[after + 1].timestamp > timestamp, "pick a place between two batches"
    return replace(model, id=999_999, amount=7, timestamp=timestamp)


def _insert(tamper: Tamper, t: Transfer, digest: bytes) -> None:
    columns = f"{TRANSFER_COLUMNS}, status, expires_at, hash"
    values = (
        t.id, t.debit_account_id, t.credit_account_id, t.amount, t.pending_id, t.timeout,
        t.ledger, t.code, t.user_data, t.flags, t.timestamp, 0, None, digest,
    )  # fmt: skip
    tamper.execute([(f"INSERT INTO transfers ({columns}) VALUES ({', '.join('?' * 14)})", values)])


def _batch_end(journal: list[Any]) -> int:
    """Index of the last entry of a batch in the middle of the run."""
    gaps = [
        i for i in range(len(journal) - 1) if journal[i + 1].timestamp - journal[i].timestamp > 1
    ]
    return gaps[len(gaps) // 2]


def insert_with_a_made_up_hash(journal: list[Any], tamper: Tamper) -> str:
    forged = _forged(journal, _batch_end(journal))
    _insert(tamper, forged, bytes(range(32)))
    return describe(forged)


def insert_with_a_recomputed_hash(journal: list[Any], tamper: Tamper) -> str:
    """The best a forger without the later rows can do: the forged row links to the one
    before it, so the chain breaks at the next genuine entry."""
    after = _batch_end(journal)
    forged = _forged(journal, after)
    hashes = _hashes(journal)
    _insert(tamper, forged, chain.link(hashes[after], forged))
    return describe(journal[after + 1])


def append_with_a_recomputed_hash(journal: list[Any], tamper: Tamper) -> str:
    """A row appended after the last one, linked correctly: only the recorded head shows it."""
    last = journal[-1]
    model = next(e for e in journal if type(e) is Transfer and e.flags == 0)
    forged = replace(model, id=999_998, timestamp=last.timestamp + 1)
    _insert(tamper, forged, chain.link(_hashes(journal)[-1], forged))
    return END


def _hashes(journal: list[Any]) -> list[bytes]:
    out, head = [], GENESIS
    for entry in journal:
        head = chain.link(head, entry)
        out.append(head)
    return out


def _swap_timestamps(tamper: Tamper, first: Any, second: Any) -> None:
    """Swap two rows' timestamps (through a free value: timestamps are unique)."""
    t1, k1, v1 = where(first)
    t2, k2, v2 = where(second)
    tamper.execute(
        [
            (f"UPDATE {t1} SET timestamp = ? WHERE {k1} = ?", (10**18 + first.timestamp, v1)),
            (f"UPDATE {t2} SET timestamp = ? WHERE {k2} = ?", (first.timestamp, v2)),
            (f"UPDATE {t1} SET timestamp = ? WHERE {k1} = ?", (second.timestamp, v1)),
        ]
    )


def swap_two_transfers(journal: list[Any], tamper: Tamper) -> str:
    i = pick(journal, Transfer, 2)
    j = pick(journal, Transfer, 9)
    _swap_timestamps(tamper, journal[i], journal[j])
    return describe(replace(journal[j], timestamp=journal[i].timestamp))  # now first of the two


def swap_neighbours(journal: list[Any], tamper: Tamper) -> str:
    i = pick(journal, Transfer, 6)
    _swap_timestamps(tamper, journal[i], journal[i + 1])
    return describe(replace(journal[i + 1], timestamp=journal[i].timestamp))


def swap_account_and_transfer(journal: list[Any], tamper: Tamper) -> str:
    i = pick(journal, Account, 1)
    j = next(n for n in range(i + 3, len(journal)) if type(journal[n]) is Transfer)
    _swap_timestamps(tamper, journal[i], journal[j])
    return describe(replace(journal[j], timestamp=journal[i].timestamp))


def change_the_recorded_head(journal: list[Any], tamper: Tamper) -> str:
    tamper.execute([("UPDATE clock SET head = ? WHERE id = 1", (bytes(32),))])
    return END


CASES: list[Case] = [
    modify_amount,
    modify_debit_account,
    modify_account_user_data,
    modify_expiry_amount,
    modify_a_hash,
    delete_transfer,
    delete_account,
    delete_expiry,
    delete_the_last_entry,
    insert_with_a_made_up_hash,
    insert_with_a_recomputed_hash,
    append_with_a_recomputed_hash,
    swap_two_transfers,
    swap_neighbours,
    swap_account_and_transfer,
    change_the_recorded_head,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_tampering_is_detected_and_named(tamperable: tuple[Store, Tamper], case: Case) -> None:
    store, tamper = tamperable
    journal = finished_run(store)
    expected = case(journal, tamper)
    report = store.verify_chain()
    assert not report.ok
    assert report.first_bad == expected, report
    assert report.problem
    assert any(p.startswith("verify_chain") for p in violations(store))


def test_the_named_entry_reads_plainly(tamperable: tuple[Store, Tamper]) -> None:
    store, tamper = tamperable
    journal = finished_run(store)
    t = journal[pick(journal, Transfer, 3)]
    tamper.execute([("UPDATE transfers SET amount = amount + 1 WHERE id = ?", (t.id,))])
    report = store.verify_chain()
    assert report.first_bad == f"transfer {t.id} (timestamp {t.timestamp})"
    assert report.problem == "its hash does not match its contents and position"
    assert 0 < report.entries <= len(journal)


def test_totals_are_outside_the_chain_but_the_replay_catches_them(
    tamperable: tuple[Store, Tamper],
) -> None:
    """An account's totals are derived, not chained: changing them leaves the chain intact and
    breaks L3 (replay equals state), which the auditor checks beside the chain."""
    store, tamper = tamperable
    journal = finished_run(store)
    a = journal[pick(journal, Account, 1)]
    tamper.execute(
        [("UPDATE accounts SET credits_posted = credits_posted + 5 WHERE id = ?", (a.id,))]
    )
    assert store.verify_chain().ok
    assert any(p.startswith("L3") for p in violations(store))


def test_an_untouched_run_verifies_after_reopening(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "ledger.db") as store:
        journal = finished_run(store)
    with SqliteStore(tmp_path / "ledger.db") as store:
        assert store.verify_chain() == ChainReport(True, len(journal))


# --- the chain itself, on crafted rows (what the memory store verifies) -------------------------


@pytest.fixture
def rows() -> list[tuple[Any, bytes]]:
    ledger = Ledger()
    for k in range(1, BATCHES + 1):
        ledger.apply(workload.batch(SEED, k), workload.now_of(k))
    journal = ledger.journal()
    return list(zip(journal, _hashes(journal), strict=True))


def test_memory_store_chain_matches_the_crafted_rows(rows: list[tuple[Any, bytes]]) -> None:
    store = MemoryStore()
    for k in range(1, BATCHES + 1):
        store.apply(workload.batch(SEED, k), workload.now_of(k))
    assert store.verify_chain() == ChainReport(True, len(rows))
    assert chain.verify(rows, rows[-1][1]) == ChainReport(True, len(rows))
    assert chain.verify([], GENESIS) == ChainReport(True, 0)


def test_transfer_records_chain_as_their_transfers(rows: list[tuple[Any, bytes]]) -> None:
    """The audit reads transfers as `TransferRecord`s: the same bytes, the same names."""
    records = [(transfer_record(e) if isinstance(e, Transfer) else e, h) for e, h in rows]
    assert sum(isinstance(e, TransferRecord) for e, _ in records) > 10
    for (entry, _), (record, _) in zip(rows, records, strict=True):
        assert chain.canonical(record) == chain.canonical(entry)
        assert describe(record) == describe(entry)
    assert chain.verify(records, rows[-1][1]) == ChainReport(True, len(rows))


def crafted(rows: list[tuple[Any, bytes]], i: int, **changes: int) -> list[tuple[Any, bytes]]:
    out = list(rows)
    out[i] = (replace(rows[i][0], **changes), rows[i][1])
    return out


def test_verify_names_a_modified_entry(rows: list[tuple[Any, bytes]]) -> None:
    head = rows[-1][1]
    i = next(n for n in range(10, len(rows)) if type(rows[n][0]) is Transfer)
    report = chain.verify(crafted(rows, i, amount=rows[i][0].amount + 1), head)
    assert (report.ok, report.first_bad, report.entries) == (False, describe(rows[i][0]), i + 1)
    j = next(n for n in range(10, len(rows)) if type(rows[n][0]) is Expiry)
    assert chain.verify(crafted(rows, j, amount=1 + rows[j][0].amount), head).first_bad == describe(
        rows[j][0]
    )


def test_verify_names_the_entry_after_a_deleted_one(rows: list[tuple[Any, bytes]]) -> None:
    head = rows[-1][1]
    for i in (0, 7, len(rows) // 2):
        report = chain.verify(rows[:i] + rows[i + 1 :], head)
        assert (report.ok, report.first_bad) == (False, describe(rows[i + 1][0]))
    report = chain.verify(rows[:-1], head)
    assert (report.ok, report.first_bad) == (False, END)


def test_verify_names_an_inserted_entry(rows: list[tuple[Any, bytes]]) -> None:
    head = rows[-1][1]
    i = len(rows) // 2
    while rows[i + 1][0].timestamp - rows[i][0].timestamp < 2:  # between two batches
        i += 1
    model = next(e for e, _ in rows if type(e) is Transfer)
    forged = replace(model, id=424_242, timestamp=rows[i][0].timestamp + 1)
    made_up = chain.verify([*rows[: i + 1], (forged, bytes(32)), *rows[i + 1 :]], head)
    assert (made_up.ok, made_up.first_bad) == (False, describe(forged))
    linked = (forged, chain.link(rows[i][1], forged))
    recomputed = chain.verify([*rows[: i + 1], linked, *rows[i + 1 :]], head)
    assert (recomputed.ok, recomputed.first_bad) == (False, describe(rows[i + 1][0]))
    duplicate = chain.verify([*rows[: i + 1], rows[i], *rows[i + 1 :]], head)
    assert (duplicate.ok, duplicate.first_bad) == (False, describe(rows[i][0]))
    assert duplicate.problem == "timestamps are not increasing"


def test_verify_names_the_first_of_two_reordered_entries(rows: list[tuple[Any, bytes]]) -> None:
    head = rows[-1][1]
    i, j = 5, len(rows) // 2
    swapped = list(rows)
    swapped[i], swapped[j] = rows[j], rows[i]  # rows moved, timestamps kept
    report = chain.verify(swapped, head)
    assert (report.ok, report.first_bad) == (False, describe(rows[j][0]))
    # The same two rows with their timestamps exchanged, so the order still looks increasing.
    a, b = rows[i][0], rows[j][0]
    exchanged = list(rows)
    exchanged[i] = (replace(b, timestamp=a.timestamp), rows[j][1])
    exchanged[j] = (replace(a, timestamp=b.timestamp), rows[i][1])
    report = chain.verify(exchanged, head)
    assert (report.ok, report.first_bad) == (False, describe(exchanged[i][0]))
    assert report.problem == "its hash does not match its contents and position"


def test_verify_checks_the_recorded_head(rows: list[tuple[Any, bytes]]) -> None:
    report = chain.verify(rows, GENESIS)
    assert (report.ok, report.first_bad, report.entries) == (False, END, len(rows))
