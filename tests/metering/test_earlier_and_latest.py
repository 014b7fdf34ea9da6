"""`MeterTables.earlier_and_latest`: what a batch of decisions reads up front, the decisions
already made under its keys and its customers' latest times, on memory, SQLite and PostgreSQL;
on the databases in one statement whose plan probes an index per pair and per customer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.metering import Meter, plan_from_data, price_book_from_data

from .fixtures import CREDITS, NS, T0, book_data, feature, plan_data, reopener
from .pg import pg_cluster, pg_databases

__all__ = ["pg_cluster", "pg_databases"]  # fixtures used by this module


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def meter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Meter]:
    """Decisions of ann (keys a, b, c), bob (a, d) and cy (none) at different times."""
    with reopener(request.param, request, tmp_path) as make:
        m = Meter(make())
        m.publish_plan(plan_from_data(plan_data({"f": feature(CREDITS)})))
        m.publish_prices(price_book_from_data(book_data({"f": 1})))
        for name in ("ann", "bob", "cy"):
            m.add_customer(name, "pro", T0)
            m.purchase(name, 1_000, "p", T0)
        for i, (customer, key) in enumerate([("ann", "a"), ("bob", "a"), ("ann", "b"),
                                             ("bob", "d"), ("ann", "c")]):  # fmt: skip
            assert m.decide(customer, "f", 1 + i, key, T0 + i * NS).allowed
        yield m


DECIDED = {  # (customer, key): (units, now), as the fixture decided them
    ("ann", "a"): (1, T0),
    ("bob", "a"): (2, T0 + NS),
    ("ann", "b"): (3, T0 + 2 * NS),
    ("bob", "d"): (4, T0 + 3 * NS),
    ("ann", "c"): (5, T0 + 4 * NS),
}
LATEST = {"ann": T0 + 4 * NS, "bob": T0 + 3 * NS}

CASES = {
    "found and not": ([("ann", "a"), ("bob", "d"), ("ann", "z"), ("cy", "a")], ["ann", "cy"]),
    # ann's key d and bob's key b exist only as the other's: no decision is someone else's.
    "crossed keys": ([("ann", "d"), ("bob", "b")], ["ann", "bob"]),
    "one customer": ([("bob", "a")], ["bob"]),
    "no pairs": ([], ["ann", "cy"]),
    "no customers": ([("ann", "c")], []),
    "nothing": ([], []),
    "odd names": ([("ann", "a'); --"), ("ann", 'ü"x')], ["ann", "'"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_it_reads_the_decisions_under_the_pairs_and_the_latest_times(
    meter: Meter, case: tuple[list[tuple[str, str]], list[str]]
) -> None:
    pairs, customers = case
    earlier, latest = meter.tables.earlier_and_latest(meter.store, pairs, customers)
    found = {pair: (d.units, d.now) for pair, d in earlier.items()}
    assert found == {pair: DECIDED[pair] for pair in pairs if pair in DECIDED}
    assert all((d.customer, d.key) == pair for pair, d in earlier.items())
    assert latest == {c: LATEST[c] for c in customers if c in LATEST}


def sent_statement(meter: Meter, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[Any]]:
    """The statement `earlier_and_latest` sends for two pairs and two customers."""
    sent: list[tuple[str, list[Any]]] = []
    real = meter.store.query  # type: ignore[attr-defined]

    def recording(sql: str, params: Any) -> Any:
        sent.append((sql, list(params)))
        return real(sql, params)

    monkeypatch.setattr(meter.store, "query", recording)
    meter.tables.earlier_and_latest(meter.store, [("ann", "a"), ("bob", "z")], ["ann", "cy"])
    assert len(sent) == 1, "one statement"
    return sent[0]


def test_on_sqlite_each_pair_and_customer_is_one_index_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    with reopener("sqlite", request, tmp_path) as make:
        m = Meter(make())
        sql, params = sent_statement(m, monkeypatch)
        plan = [row[3] for row in m.store.query("EXPLAIN QUERY PLAN " + sql, params)]  # type: ignore[attr-defined]
    probes = [line for line in plan if line.startswith(("SEARCH d", "SCAN d"))]
    assert probes == [
        "SEARCH d USING INDEX sqlite_autoindex_decisions_2 (customer=? AND key=?)",
        "SEARCH d USING COVERING INDEX decisions_by_time (customer=?)",
    ], plan
    assert sum(line.startswith("CORRELATED SCALAR SUBQUERY") for line in plan) == 2, plan
