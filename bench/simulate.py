"""simulate.steps: the deterministic simulator's throughput on the memory store.

Each run simulates seeds 0..S-1 for K steps each (every check after every step: the reference
ledger, the metering model, the windows; the audit every 250 steps and at the end), in one
process unless --processes says otherwise; steps/s is steps run over wall time. A warm-up run
comes first; the figure is the median of --runs runs. The runs go on past a violation
(`keep_going`), so every run executes the same number of steps whatever it finds.

    python bench/simulate.py [--seeds 5] [--steps 2000] [--runs 3] [--processes 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger.sim.api import simulate, swarm  # noqa: E402


def one_run(seeds: int, steps: int, processes: int) -> float:
    started = time.perf_counter()
    if processes == 1:
        executed = sum(simulate(seed, steps, keep_going=True).executed for seed in range(seeds))
    else:
        executed = swarm(range(seeds), steps, processes=processes, shrink_first=False).executed
    return executed / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    one_run(1, min(args.steps, 500), 1)  # warm-up: imports, caches
    rates = []
    for run in range(args.runs):
        rate = one_run(args.seeds, args.steps, args.processes)
        print(f"run {run + 1}: {rate:,.0f} steps/s", file=sys.stderr)
        rates.append(rate)
    params = {
        "seeds": args.seeds,
        "steps": args.steps,
        "store": "memory",
        "processes": args.processes,
        "runs": args.runs,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    figure = {"name": "simulate.steps", "value": round(statistics.median(rates), 1)}
    print(json.dumps({**figure, "unit": "steps/s", "params": params}))


if __name__ == "__main__":
    main()
