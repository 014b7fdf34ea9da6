"""Deterministic simulation of the whole engine, with faults.

From a seed alone, `ledger.sim.world` draws a workload (customers, plans and price changes,
bursts, completions, asynchronous usage, grants, purchases) and faults (API nodes killed, clock
skew, redelivered and reordered usage, duplicated requests, stalled settlement workers, store
transactions that fail before commit). `ledger.sim.run` runs it against the real engine and checks
every step against a reference ledger and a metering model; `ledger.sim.shrink` shrinks a
failing trace. Example:

>>> from ledger.sim import simulate, swarm
>>> result = simulate(7, 2000)                       # one seed on the memory store
>>> print(result.report())
>>> summary = swarm(range(200), 2000, "memory")      # many seeds, on every core
>>> print(summary.report())

The names are loaded on first use, so that `ledger.sim.mutants` can install a seeded bug before
anything imports `ledger.metering`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.sim.api import SimResult, SwarmSummary, simulate, swarm

__all__ = ["SimResult", "SwarmSummary", "simulate", "swarm"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ledger.sim import api

        return getattr(api, name)
    raise AttributeError(f"module 'ledger.sim' has no attribute {name!r}")
