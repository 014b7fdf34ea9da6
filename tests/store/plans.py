"""How PostgreSQL plans a statement once it keeps a generic plan: the plan a server caches for a
prepared statement after a few executions and keeps until the tables are analysed again. Tests
use it to check that a hot statement probes indexes whatever the statistics said when it was
planned (a join planned on a nearly empty table scans the whole table once it has grown)."""

from __future__ import annotations

import re
from collections.abc import Sequence


def generic_plan(url: str, statement: str, types: Sequence[str]) -> str:
    """EXPLAIN of `statement` (psycopg `%s` placeholders, one per type in `types`, all array
    types) prepared with `plan_cache_mode = force_generic_plan`, run with one-element arrays."""
    import psycopg

    numbered = iter(range(1, len(types) + 1))
    prepared = re.sub("%s", lambda _: f"${next(numbered)}", statement)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE probe({', '.join(types)}) AS {prepared}", prepare=False)
        arrays = ", ".join(["'{1}'"] * len(types))
        rows = conn.execute(f"EXPLAIN EXECUTE probe({arrays})", prepare=False)
        return "\n".join(row[0] for row in rows)
