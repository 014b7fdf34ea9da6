"""How fast a meter rebuilds its memory windows from the database when it opens.

Prints one JSON object (shared BENCH conventions):
  restore.windows   decisions/s that `Meter(SqliteStore(path))` reads and takes again into its
                    windows when it opens a database a week of use wrote: the demo's workload
                    (`tollgate demo`'s plan: a 5-hour and a weekly window per feature, a daily
                    allowance, grants, credits, pools; --users users over --hours hours), run
                    once on a SQLite file before timing. Each run opens the file afresh and
                    times the whole construction (set-up, registry, rebuild); median of runs.

    python bench/restore.py [--users 200] [--hours 168] [--seed 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import platform
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "restore.db"
        config = DemoConfig(users=args.users, hours=args.hours, seed=args.seed)
        with open_demo_store(path) as store:
            run(Meter(store), workload(config))
        Meter(SqliteStore(path)).store.close()  # warm-up: file cache, imports
        rates, restored = [], 0
        for _ in range(args.runs):
            started = time.perf_counter()
            meter = Meter(SqliteStore(path))
            seconds = time.perf_counter() - started
            meter.store.close()
            restored = meter.restored or 0
            rates.append(restored / seconds)
    assert restored, "the workload left nothing for the windows to count"
    print(
        json.dumps(
            {
                "name": "restore.windows",
                "value": round(statistics.median(rates)),
                "unit": "decisions/s",
                "params": {
                    "decisions": restored,
                    "users": args.users,
                    "hours": args.hours,
                    "seed": args.seed,
                    "runs_values": [round(r) for r in rates],
                    "store": "SQLite file, the demo's workload",
                    "python": platform.python_version(),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
