"""`Store.transact` and `apply(..., then=...)`: a batch and the rows written with it commit or
roll back together; a build function reads the state inside the transaction."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.core import Account, AccountFlags, PendingStatus, Result, Transfer, TransferFlags
from ledger.store import Rollback, Store, TxView
from tests.store.conftest import MakeStore

S = 10**9
FUNDS = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)


def _accounts(store: Store) -> None:
    store.apply([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1, flags=FUNDS)], S)
    store.apply(
        [Transfer(id=10, debit_account_id=1, credit_account_id=2, amount=100, ledger=1, code=1)],
        2 * S,
    )


def _hold(store: Store, transfer_id: int) -> None:
    """40 of the 100 in account 2 held for 5 s from 3 s."""
    hold = Transfer(
        id=transfer_id,
        debit_account_id=2,
        credit_account_id=1,
        amount=40,
        ledger=1,
        code=1,
        timeout=5,
        flags=int(TransferFlags.PENDING),
    )
    assert store.apply([hold], 3 * S) == [Result.OK]


def _side_rows(cur: Any, seen: list[object]) -> None:
    """Write a row in the transaction (SQL) or remember the call (memory)."""
    if cur is None:
        seen.append("memory")
        return
    cur.execute("CREATE TABLE IF NOT EXISTS side (n INTEGER)")
    cur.execute("INSERT INTO side (n) VALUES (1)")
    seen.append("sql")


def _side_count(store: Store) -> int:
    def count(cur: Any) -> int:
        if cur is None:
            return 0
        cur.execute("SELECT COUNT(*) FROM side")
        return int(cur.fetchone()[0])

    return store.read(count)


def test_then_commits_with_the_batch(make_store: MakeStore) -> None:
    store = make_store()
    _accounts(store)
    seen: list[object] = []
    transfer = Transfer(id=11, debit_account_id=2, credit_account_id=1, amount=30, ledger=1, code=1)
    results = store.apply([transfer], 3 * S, then=lambda r, cur: _side_rows(cur, seen))
    assert results == [Result.OK] and seen
    assert store.lookup_transfers([11])
    if seen == ["sql"]:
        assert _side_count(store) == 1


def test_rollback_keeps_neither_the_batch_nor_the_rows(make_store: MakeStore) -> None:
    store = make_store()
    _accounts(store)
    too_much = Transfer(
        id=12, debit_account_id=2, credit_account_id=1, amount=1_000, ledger=1, code=1
    )

    def then(results: list[Result], cur: Any) -> None:
        assert results == [Result.EXCEEDS_CREDITS]
        if cur is not None:
            cur.execute("CREATE TABLE side2 (n INTEGER)")
        raise Rollback

    assert store.apply([too_much], 3 * S, then=then) == [Result.EXCEEDS_CREDITS]
    # The transient failure was not remembered: the same id can succeed once funds exist.
    assert 12 not in store.failed_ids()
    store.apply(
        [Transfer(id=13, debit_account_id=1, credit_account_id=2, amount=1_000, ledger=1, code=1)],
        4 * S,
    )
    assert store.apply([too_much], 5 * S) == [Result.OK]


def test_build_reads_the_state_inside_the_transaction(make_store: MakeStore) -> None:
    store = make_store()
    _accounts(store)
    _hold(store, 20)

    def build(view: TxView) -> tuple[list[Transfer], None]:
        [funds] = view.accounts([2])
        assert funds.available == 60
        return [
            Transfer(
                id=21,
                debit_account_id=2,
                credit_account_id=1,
                amount=funds.available,
                ledger=1,
                code=1,
            )
        ], None

    assert store.transact(4 * S, build) == [Result.OK]
    [funds] = store.lookup_accounts([2])
    assert funds.available == 0 and funds.debits_pending == 40


def test_view_sees_a_due_hold_as_expired(make_store: MakeStore) -> None:
    store = make_store()
    _accounts(store)
    _hold(store, 30)
    statuses: list[PendingStatus] = []

    def build(view: TxView) -> tuple[list[Transfer], None]:
        statuses.append(view.pending_status(30))
        return [], None

    store.transact(3 * S + 5 * S - 1, build)
    store.transact(3 * S + 6 * S, build)
    assert statuses == [PendingStatus.PENDING, PendingStatus.EXPIRED]


def test_rollback_from_build_writes_nothing(make_store: MakeStore) -> None:
    store = make_store()
    _accounts(store)
    before = list(store.journal())

    def build(view: TxView) -> tuple[list[Transfer], None]:
        raise Rollback

    assert store.transact(3 * S, build) == []
    assert list(store.journal()) == before


def test_memory_store_refuses_to_roll_back_accepted_events() -> None:
    from ledger.store import MemoryStore, StoreError

    store = MemoryStore()
    _accounts(store)

    def then(results: list[Result], cur: Any) -> None:
        raise Rollback

    ok = Transfer(id=40, debit_account_id=2, credit_account_id=1, amount=1, ledger=1, code=1)
    with pytest.raises(StoreError, match="cannot roll back accepted events"):
        store.apply([ok], 3 * S, then=then)
