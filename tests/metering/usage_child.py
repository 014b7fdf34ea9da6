"""The usage reporter process of the fault-injection test (test_settlement_faults.py).

    python -m tests.metering.usage_child URL REPORTS LOG START [BATCH_MAX]

REPORTS is a JSON list of usage reports, `[customer, feature, units, key, decision_id,
occurred_at]`, already shuffled and holding its duplicates (the same key and body again). The
reporter opens the store, builds `Meter(store)` and delivers them in order from index START at
the wall clock (`time.time_ns`): in runs of a random size from 1 to BATCH_MAX (default 1), a
run of one with `meter.report_usage(...)`, a longer one with `meter.report_usage_batch(...)`
(one transaction). Once a run has returned it writes "I new" or "I dup" for each report I of
it to LOG (flushed at once), and "done" at the end; any refusal ends it with an error. A kill
may land anywhere, even between a commit and its lines: the parent restarts it a little before
the last line it saw, so some reports are delivered again, and must come back as duplicates.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from ledger.metering import Meter
from ledger.store import store_from_url

FIELDS = ("customer", "feature", "units", "key", "decision_id", "occurred_at")


def main(argv: Sequence[str]) -> int:
    url, reports_path, log_path, start = argv[0], argv[1], argv[2], int(argv[3])
    batch_max = int(argv[4]) if len(argv) > 4 else 1
    rng = random.Random(start)
    with open(reports_path) as f:
        reports = json.load(f)
    store = store_from_url(url)
    meter = Meter(store)
    with open(log_path, "a", buffering=1) as log:
        log.write(f"start {start}\n")
        i = start
        while i < len(reports):
            run = reports[i : i + rng.randint(1, batch_max)]
            if len(run) == 1:
                customer, feature, units, key, decision_id, occurred_at = run[0]
                report = meter.report_usage(
                    customer, feature, units, key, decision_id, occurred_at, time.time_ns()
                )
                outcomes: list[Any] = [report]
            else:
                bodies = [dict(zip(FIELDS, r, strict=True)) for r in run]
                outcomes = meter.report_usage_batch(bodies, time.time_ns())
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome
            log.write(
                "".join(
                    f"{i + k} {'dup' if o.duplicate else 'new'}\n" for k, o in enumerate(outcomes)
                )
            )
            i += len(run)
        log.write("done\n")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
