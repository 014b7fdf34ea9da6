"""How PostgreSQL plans a statement once it keeps a generic plan: the plan a server caches for a
prepared statement after a few executions and keeps until the tables are analysed again. Tests
use it to check that a hot statement probes indexes whatever the statistics said when it was
planned (a join planned on a nearly empty table scans the whole table once it has grown)."""

from __future__ import annotations

import re
from collections.abc import Sequence


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
