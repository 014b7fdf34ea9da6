"""`Meter.decide_many`: the same decisions as `decide` called once per request, in order, with
each request's error in its place, and the hold-free decisions recorded in one transaction
(group commit) that, if it fails, gives back everything its decisions took.

Run on a `MemoryStore` and on SQLite (the database a server batches for).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.metering import (
    DecideRequest,
    Decision,
    IdempotencyConflictError,
    InvalidRequestError,
    Meter,
    UnknownCustomerError,
    plan_from_data,
    price_book_from_data,
)
from ledger.store.base import Store
from ledger.store.memory import MemoryStore
from ledger.store.sqlite import SqliteStore

from .fixtures import CREDITS, HOUR, T0, book_data, feature, plan_data, window, windows_layer

F = "codex.task"
LIMIT = 5  # window units: the sixth unit of a customer goes to credits (a hold)
PRICE = 7


def _meter(store: Store) -> Meter:
    meter = Meter(store)
    layers = feature(windows_layer(window("5h", "5h", LIMIT)), CREDITS)
    meter.publish_plan(plan_from_data(plan_data({F: layers})))
    meter.publish_prices(price_book_from_data(book_data({F: PRICE})))
    for name in ("alice", "bob"):
        meter.add_customer(name, "pro", T0)
        meter.purchase(name, 1_000, f"{name}-p", T0)
    return meter


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two fresh stores of the same kind: one for decide, one for decide_many."""
    if request.param == "memory":
        yield MemoryStore(), MemoryStore()
        return
    one = SqliteStore(tmp_path / "one.db", synchronous="NORMAL")
    many = SqliteStore(tmp_path / "many.db", synchronous="NORMAL")
    yield one, many
    one.close()
    many.close()


def _requests() -> list[DecideRequest]:
    """Windows-only decisions, then holds once the window is full, a repeat inside the batch,
    a conflicting repeat, an unknown customer and bad units in the middle."""
    q = [DecideRequest("alice", F, 1, f"a{i}", T0 + i) for i in range(LIMIT + 2)]
    q += [DecideRequest("bob", F, 2, "b0", T0 + 10)]
    q += [DecideRequest("alice", F, 1, "a1", T0 + 11)]  # a repeat: the same decision
    q += [DecideRequest("alice", F, 3, "a2", T0 + 12)]  # the key with other units: a conflict
    q += [DecideRequest("mallory", F, 1, "m0", T0 + 13)]
    q += [DecideRequest("bob", F, 0, "b1", T0 + 14)]
    q += [DecideRequest("bob", F, 2, "b2", T0 + 15, timeout=60)]
    return q


def _one_by_one(meter: Meter, requests: list[DecideRequest]) -> list[Decision | Exception]:
    out: list[Decision | Exception] = []
    for q in requests:
        try:
            out.append(
                meter.decide(q.customer, q.feature, q.units, q.key, q.now, timeout=q.timeout)
            )
        except Exception as error:
            out.append(error)
    return out


def _shape(result: Decision | Exception) -> Any:
    return result if isinstance(result, Decision) else (type(result), str(result))


def test_a_batch_decides_as_decide_does_one_by_one(stores: tuple[Store, Store]) -> None:
    one, many = _meter(stores[0]), _meter(stores[1])
    requests = _requests()
    expected = _one_by_one(one, requests)
    got = many.decide_many(requests)
    assert [_shape(r) for r in got] == [_shape(r) for r in expected]
    kinds = [type(r) for r in got]
    assert kinds[-5:] == [Decision, IdempotencyConflictError, UnknownCustomerError,
                          InvalidRequestError, Decision]  # fmt: skip
    held = [r for r in got if isinstance(r, Decision) and any(p.transfer_id for p in r.parts)]
    assert held, "the batch has decisions that hold credits"
    # What was recorded, and what the windows and the ledger hold, is the same too.
    for meter in (one, many):
        assert meter.decision(got[1].decision_id) == got[1]  # type: ignore[union-attr]
    assert many.balances("alice") == one.balances("alice")
    assert many.balances("bob") == one.balances("bob")


def test_a_batch_records_its_hold_free_decisions_in_one_transaction(
    stores: tuple[Store, Store],
) -> None:
    meter = _meter(stores[1])
    writes: list[int] = []
    put = meter.tables.put_decisions

    def counting(cur: Any, ds: Any) -> None:
        writes.append(len(ds))
        put(cur, ds)

    meter.tables.put_decisions = counting  # type: ignore[method-assign]
    requests = [DecideRequest(c, F, 1, f"k{i}", T0 + i) for i in range(4) for c in ("alice", "bob")]
    got = meter.decide_many(requests)
    assert all(isinstance(d, Decision) and d.allowed for d in got)
    assert writes == [len(requests)]
    meter.tables.put_decisions = put  # type: ignore[method-assign]
    for d in got:
        assert meter.decision(d.decision_id) == d  # type: ignore[union-attr]


def test_a_failed_group_commit_gives_back_what_its_decisions_took(
    stores: tuple[Store, Store],
) -> None:
    meter = _meter(stores[1])
    window_key = [(f"alice|{F}|5h", 5 * HOUR)]

    def failing(cur: Any, ds: Any) -> None:
        raise OSError("disk full")

    meter.tables.put_decisions = failing  # type: ignore[method-assign]
    requests = [DecideRequest("alice", F, 1, f"k{i}", T0 + i) for i in range(3)]
    requests.append(DecideRequest("alice", F, 1, "k0", T0 + 5))  # a repeat inside the batch
    requests.append(DecideRequest("alice", F, 0, "bad", T0 + 6))
    got = meter.decide_many(requests)
    assert [type(r) for r in got] == [OSError] * 4 + [InvalidRequestError]
    assert meter.windows.used(window_key, T0 + 10) == [0]
    del meter.tables.put_decisions  # the class's method again
    assert meter.decision(meter.decide("alice", F, 1, "k0", T0 + 20).decision_id) is not None
    assert meter.windows.used(window_key, T0 + 20) == [1]  # the retry took once, not twice


def test_a_malformed_request_is_refused_alone(stores: tuple[Store, Store]) -> None:
    """A key that is not a name (here a list) is that request's error, before anything of
    the batch is read: it must not fail the batch's up-front read for the others."""
    meter = _meter(stores[1])
    requests = [
        DecideRequest("alice", F, 1, "k0", T0),
        DecideRequest("alice", F, 1, ["k1"], T0 + 1),  # type: ignore[arg-type]
        DecideRequest("bob", F, 1, "k2", T0 + 2),
    ]
    got = meter.decide_many(requests)
    assert [type(r) for r in got] == [Decision, InvalidRequestError, Decision]
    assert getattr(got[1], "field", None) == "idempotency_key"


def test_on_a_shared_database_decide_reads_what_it_needs_in_one_statement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision made earlier under the key and the customer's latest time: one statement
    for a new decision (a batch of one), no read for a replay the cache holds."""
    with SqliteStore(tmp_path / "shared.db", synchronous="NORMAL") as store:
        meter = _meter(store)
        reads: list[int] = []
        read, query = store.read, store.query

        def counting(real: Any) -> Any:
            def counted(*args: Any) -> Any:
                reads.append(1)
                return real(*args)

            return counted

        monkeypatch.setattr(store, "read", counting(read))
        monkeypatch.setattr(store, "query", counting(query))
        first = meter.decide("alice", F, 1, "k1", T0 + 1)
        assert first.allowed and len(reads) == 1
        assert meter.decide("alice", F, 1, "k1", T0 + 2) == first and len(reads) == 1
        later = meter.decide("alice", F, 1, "k2", T0 + 3)
        assert later.allowed and later != first and len(reads) == 2


def test_a_decision_that_cannot_be_recorded_raises_and_takes_nothing(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "shared.db", synchronous="NORMAL") as store:
        meter = _meter(store)

        def failing(cur: Any, ds: Any) -> None:
            raise OSError("disk full")

        meter.tables.put_decisions = failing  # type: ignore[method-assign]
        with pytest.raises(OSError, match="disk full"):
            meter.decide("alice", F, 1, "k1", T0 + 1)
        assert meter.windows.used([(f"alice|{F}|5h", 5 * HOUR)], T0 + 2) == [0]
        del meter.tables.put_decisions
        assert meter.decide("alice", F, 1, "k1", T0 + 3).allowed
        assert meter.windows.used([(f"alice|{F}|5h", 5 * HOUR)], T0 + 4) == [1]
