"""How PostgreSQL plans a statement once it keeps a generic plan: the plan a server caches for a
prepared statement after a few executions and keeps until the tables are analysed again. Tests
use it to check that a hot statement probes indexes whatever the statistics said when it was
planned (a join planned on a nearly empty table scans the whole table once it has grown)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

# Tables a statement may read whole: the queue of unsettled events (a backlog count reads it; it
# is as long as the backlog, not the history) and the one-row bookkeeping tables.
READ_WHOLE = frozenset({"outbox", "clock", "meter_schema", "meter_stamp", "tollgate_meta"})
PLANNED = ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE")


def generic_plan(url: str, statement: str, types: Sequence[str] | None = None) -> str:
    """EXPLAIN of `statement` (psycopg `%s` placeholders) prepared with `plan_cache_mode =
    force_generic_plan`. With `types` (one per placeholder, all array types) it is run with
    one-element arrays; without, the server infers the types and it is run with NULLs (a
    generic plan does not depend on the values)."""
    import psycopg

    count = statement.count("%s")
    numbered = iter(range(1, count + 1))
    prepared = re.sub("%s", lambda _: f"${next(numbered)}", statement).replace("%%", "%")
    declared = f"({', '.join(types)})" if types is not None else ""
    values = ["'{1}'" if types is not None else "NULL"] * count
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE probe{declared} AS {prepared}", prepare=False)
        run = f"EXECUTE probe({', '.join(values)})" if count else "EXECUTE probe"
        rows = conn.execute(f"EXPLAIN {run}", prepare=False)
        return "\n".join(row[0] for row in rows)


def record_statements(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """From now on, every statement text sent through a psycopg cursor, with its count."""
    import psycopg

    sent: Counter[str] = Counter()
    for name in ("execute", "executemany"):
        real = getattr(psycopg.Cursor, name)

        def recording(self: Any, query: Any, *args: Any, _real: Any = real, **kw: Any) -> Any:
            if isinstance(query, str):
                sent[query] += 1
            return _real(self, query, *args, **kw)

        monkeypatch.setattr(psycopg.Cursor, name, recording)
    return sent


def planned(sent: Counter[str]) -> list[str]:
    """The statements the server plans (not DDL, transaction control or COPY)."""
    return [q for q in sent if q.split(None, 1)[0].upper() in PLANNED]


def whole_table_reads(url: str, statements: Sequence[str]) -> dict[str, tuple[list[str], str]]:
    """Each statement whose generic plan on `url` reads a table whole other than READ_WHOLE:
    the tables and the plan."""
    found = {}
    for statement in statements:
        plan = generic_plan(url, statement)
        scanned = set(re.findall(r"Seq Scan on (\w+)", plan)) - READ_WHOLE
        if scanned:
            found[statement] = (sorted(scanned), plan)
    return found


def statements_sent(
    url: str, exercise: Callable[[Any], None], monkeypatch: pytest.MonkeyPatch
) -> Counter[str]:
    """The planned statements `exercise(meter)` sends, with their counts, on a meter opened on
    `url` (what opening the meter reads, once and not per request, is left out)."""
    from ledger.metering import Meter
    from ledger.store.postgres import PostgresStore

    with PostgresStore(url) as store:
        meter = Meter(store)
        sent = record_statements(monkeypatch)
        exercise(meter)
    return Counter({q: sent[q] for q in planned(sent)})


def whole_table_reads_when_empty(
    url: str, statements: Sequence[str]
) -> dict[str, tuple[list[str], str]]:
    """`whole_table_reads` on `url`, an empty database, once a meter has made its tables and
    indexes: as when the plans get cached."""
    from ledger.metering import Meter
    from ledger.store.postgres import PostgresStore

    with PostgresStore(url) as store:
        Meter(store)
    return whole_table_reads(url, statements)
