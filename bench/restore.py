"""How fast a meter rebuilds its memory windows from the database when it opens.

Prints one JSON object (shared BENCH conventions):
  restore.windows   decisions/s that `Meter(SqliteStore(path))` reads and takes again into its
                    windows when it opens a database a week of use wrote: the demo's workload
                    (`tollgate demo`'s plan: a 5-hour and a weekly window per feature, a daily
                    allowance, grants, credits, pools; --users users over --hours hours), run
                    once on a SQLite file before timing. Each run opens the file afresh and
                    times the whole construction (set-up, registry, rebuild); median of runs.
  restore.open_s    seconds that the same construction takes once the file also holds --old
                    decisions made before the windows' horizon (copies of the week's, 60 days
                    earlier, none of them settled): what a long-lived database adds to a
                    restart; median of runs.

    python bench/restore.py [--users 200] [--hours 168] [--seed 1] [--runs 3] [--old 200000]
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger.demo import DemoConfig, open_demo_store, run, workload  # noqa: E402
from ledger.metering import Meter  # noqa: E402
from ledger.store.sqlite import SqliteStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--hours", type=int, default=168)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--old", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "restore.db"
        config = DemoConfig(users=args.users, hours=args.hours, seed=args.seed)
        with open_demo_store(path) as store:
            run(Meter(store), workload(config))
        Meter(SqliteStore(path)).store.close()  # warm-up: file cache, imports
        opened = [_open(path) for _ in range(args.runs)]
        restored = opened[0][1]
        assert restored, "the workload left nothing for the windows to count"
        rates = [count / seconds for seconds, count in opened]
        params = {"users": args.users, "hours": args.hours, "seed": args.seed}
        _emit(
            "restore.windows",
            round(statistics.median(rates)),
            "decisions/s",
            {**params, "decisions": restored, "runs_values": [round(r) for r in rates]},
        )
        old = _add_old_decisions(path, args.old)
        Meter(SqliteStore(path)).store.close()  # warm-up again
        times = [_open(path)[0] for _ in range(args.runs)]
        _emit(
            "restore.open_s",
            round(statistics.median(times), 4),
            "s",
            {
                **params,
                "decisions": restored,
                "old_decisions": old,
                "runs_values": [round(t, 4) for t in times],
            },
        )


def _open(path: Path) -> tuple[float, int]:
    """(seconds to construct a Meter on the file, decisions it rebuilt)"""
    started = time.perf_counter()
    meter = Meter(SqliteStore(path))
    seconds = time.perf_counter() - started
    meter.store.close()
    return seconds, meter.restored or 0


def _add_old_decisions(path: Path, wanted: int) -> int:
    """Copies of the file's decisions, 60 days earlier, under new ids and keys, until about
    `wanted` were added; returns how many were."""
    sixty_days = 60 * 24 * 3600 * 10**9
    with sqlite3.connect(path) as db:
        (week,) = db.execute("SELECT COUNT(*) FROM decisions").fetchone()
        for copy in range(1, wanted // week + 1):
            db.execute(
                "INSERT INTO decisions (decision_id, customer, key, feature, now, allowed, "
                "units, rooms, took, body) SELECT -(rowid + ? * 1000000000), customer, "
                "key || ':old' || ?, feature, now - ?, allowed, units, rooms, took, body "
                "FROM decisions WHERE decision_id > 0",  # derived ids are positive
                (copy, copy, sixty_days),
            )
        (total,) = db.execute("SELECT COUNT(*) FROM decisions").fetchone()
    return int(total - week)


def _emit(name: str, value: float, unit: str, params: dict[str, object]) -> None:
    store = "SQLite file, the demo's workload"
    params = {**params, "store": store, "python": platform.python_version()}
    print(json.dumps({"name": name, "value": value, "unit": unit, "params": params}))


if __name__ == "__main__":
    main()
