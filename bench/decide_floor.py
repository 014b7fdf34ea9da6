"""How fast plain Python can make bench/decide.py's decisions at all: a floor for the target.

Prints one JSON object (shared BENCH conventions):
  decide.floor   decisions/s of a bare loop doing only the essential work of a windows-only
                 decision on bench/decide.py's request stream (100,000 customers, 5h limit
                 1000 and 7d limit 5000, one unit each): look the key up, derive the decision
                 id as the engine does (blake2b), evict and check both rolling logs (a deque and
                 a running total each), append to both, build the returned record (the engine's
                 Decision with a Part and a Consulted layer) and keep it as a flat tuple under
                 its key. No validation, no lock, no plan or price lookup, no time
                 per customer, no give-back on failure: what `Meter.decide` does besides.

It is not a competitor: it shows what the 200,000 decisions/s target leaves for everything else
on this machine's CPython (bench/RESULTS.md). Default GC settings, one process, median of runs.

    python bench/decide_floor.py [--customers 100000] [--decisions 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import platform
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decide import WINDOWS, Workload

from ledger.metering.decision import Consulted, Decision, Part

NS = 10**9
LENGTH_NS = {"hours": 3600 * NS, "days": 86400 * NS}


class Bare:
    def __init__(self) -> None:
        self.windows = [
            (f"|{n}", length * LENGTH_NS[unit], limit) for n, length, unit, limit in WINDOWS
        ]
        self.logs: dict[str, list[Any]] = {}
        self.keys: dict[str, dict[str, int]] = {}
        self.kept: list[tuple[Any, ...]] = []

    def decide(
        self, customer: str, feature: str, units: int, key: str, now: int
    ) -> Decision | None:
        keys = self.keys.get(customer)
        if keys is None:
            keys = self.keys[customer] = {}
        elif key in keys:
            return None
        parts = repr(("decision", customer, key)).encode()
        digest = hashlib.blake2b(parts, digest_size=8, person=b"tollgate-id").digest()
        decision_id = int.from_bytes(digest, "big")
        room, taken = 1 << 62, []
        for suffix, length, limit in self.windows:
            log = self.logs.get(customer + suffix)
            if log is None:
                log = self.logs[customer + suffix] = [deque(), 0]
            entries, cutoff = log[0], now - length
            while entries and entries[0][0] <= cutoff:
                log[1] -= entries.popleft()[1]
            if log[1] + units > limit:
                return None
            room = min(room, limit - log[1])
            taken.append(log)
        for log in taken:
            log[0].append((now, units, decision_id))
            log[1] += units
        part, consulted = Part("windows", units), Consulted("windows", room, units)
        record = Decision(
            decision_id, customer, feature, key, units, True, now, "pro", 1, 1, 1000, 3600,
            (part,), (consulted,),
        )  # fmt: skip
        keys[key] = len(self.kept)
        self.kept.append((*record[:12], None, None, *part, *consulted))
        return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    w, bare = Workload(args.customers), Bare()
    for request in w.requests(0, args.decisions // 2):
        bare.decide(*request)  # warm-up, as bench/decide.py
    rates, first = [], args.decisions // 2
    for _ in range(args.runs):
        requests = w.requests(first, args.decisions)
        first += args.decisions
        gc.collect()
        started = time.perf_counter_ns()
        refused = sum(bare.decide(*r) is None for r in requests)
        rates.append(args.decisions * 10**9 / (time.perf_counter_ns() - started))
        assert refused == 0, "every request of the stream fits"
    figure = {
        "name": "decide.floor",
        "value": round(statistics.median(rates)),
        "unit": "decisions/s",
        "params": {
            **w.params(),
            "decisions": args.decisions,
            "runs_values": [round(r) for r in rates],
            "python": platform.python_version(),
            "gc": "default",
            "what": "a bare loop doing only the essential work of a windows-only decision "
            "(see the script's docstring); not a usable engine",
        },
    }
    print(json.dumps(figure))


if __name__ == "__main__":
    main()
