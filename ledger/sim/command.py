"""What `tollgate simulate` does, apart from parsing its options (ledger/cli.py does that):
run one seed (`--seed N`) or a swarm (`--seeds A..B`), print the summary, and on a violation
the seed, the step, the shrunk trace and how to re-run it. Exit codes: 0 no violation,
1 a violation, 2 bad arguments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

STORES = ("memory", "sqlite")


class UsageProblem(Exception):
    """The options do not make a run; the message says what to give instead."""


def parse_seeds(text: str) -> range:
    """`A..B` (inclusive) as a range; a single number is one seed."""
    first, dots, last = text.partition("..")
    try:
        start = int(first)
        end = int(last) if dots else start
    except ValueError:
        raise UsageProblem(f"--seeds takes A..B (e.g. 0..199), not {text!r}") from None
    if start < 0 or end < start:
        raise UsageProblem(f"--seeds {text}: give 0 <= A <= B")
    return range(start, end + 1)


def parse_only(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UsageProblem(f"--only takes step numbers like 3,17,42, not {text!r}") from None


def run(
    *,
    seed: int | None,
    seeds: str | None,
    steps: int,
    store: str,
    only: str | None,
    trace: Path | None,
    processes: int | None,
    echo: Callable[[str], None],
) -> int:
    """Run what the options ask for; returns the exit code."""
    try:
        if (seed is None) == (seeds is None):
            raise UsageProblem("give --seed N (one seed) or --seeds A..B (a swarm)")
        if store not in STORES:
            raise UsageProblem(f"--store is memory or sqlite, not {store!r}")
        if steps < 1:
            raise UsageProblem("--steps must be at least 1")
        if seeds is not None and (only is not None or trace is not None):
            raise UsageProblem("--only and --trace go with --seed N, not with a swarm")
        chosen = parse_seeds(seeds) if seeds is not None else None
        replay = parse_only(only) if only is not None else None
    except UsageProblem as problem:
        echo(f"error: {problem}")
        return 2
    if chosen is not None:
        return _swarm(chosen, steps, store, processes, echo)
    assert seed is not None
    return _one(seed, steps, store, replay, trace, echo)


def _one(
    seed: int,
    steps: int,
    store: str,
    only: list[int] | None,
    trace: Path | None,
    echo: Callable[[str], None],
) -> int:
    from ledger.sim.api import simulate

    result = simulate(seed, steps, store, only=only)
    rate = result.executed / result.seconds if result.seconds else 0.0
    echo(
        f"seed {seed}: {result.executed:,} of {steps:,} steps on {store} in "
        f"{result.seconds:.1f} s ({rate:,.0f} steps/s)"
    )
    echo("faults injected: " + (", ".join(f"{k} {v}" for k, v in result.faults.items()) or "none"))
    if trace is not None:
        trace.write_text(result.trace_text(), encoding="utf-8")
        echo(f"trace written to {trace}")
    if result.ok:
        echo("violations: none")
        return 0
    echo(result.report())
    return 1


def _swarm(
    seeds: range, steps: int, store: str, processes: int | None, echo: Callable[[str], None]
) -> int:
    from ledger.sim.api import swarm

    summary = swarm(seeds, steps, store, processes=processes)
    echo(summary.report())
    return 0 if summary.ok else 1
