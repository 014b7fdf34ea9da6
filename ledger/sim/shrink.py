"""Shrinking a failing trace: the smallest subsequence of its steps that still fails the same
way when replayed deterministically on a fresh engine.

Delta debugging (Zeller's ddmin over complements), then single-step removal until no one step
can go (1-minimal). A candidate "still fails the same way" when its run ends in a violation of
the same category as the original's first (e.g. `model.completion`, `ledger`, `windows`): the
message may differ (ids, amounts), the kind of breakage may not. Steps keep their original
indices and times, so the shrunk trace names the steps of the full one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ledger.sim.run import Outcome, run_steps
from ledger.sim.world import Config, Step

Check = Callable[[Sequence[Step]], Outcome | None]


def shrink(
    config: Config,
    steps: Sequence[Step],
    category: str,
    store: str = "memory",
    directory: Path | None = None,
    *,
    max_runs: int = 600,
    max_seconds: float = 120.0,
) -> tuple[list[Step], Outcome]:
    """(the shrunk steps, their failing run). `steps` must end at the failing step."""
    started = time.perf_counter()
    runs = 0
    cache: dict[tuple[int, ...], Outcome | None] = {}

    def fails(candidate: Sequence[Step]) -> Outcome | None:
        nonlocal runs
        key = tuple(s.index for s in candidate)
        if key in cache:
            return cache[key]
        if runs >= max_runs or time.perf_counter() - started > max_seconds:
            return None
        runs += 1
        out = run_steps(config, candidate, store, directory)
        found = out if out.violations and out.violations[0].category == category else None
        cache[key] = found
        return found

    current = list(steps)
    last = fails(current)
    if last is None:
        raise ValueError("the trace does not fail when replayed; nothing to shrink")
    # Whatever follows the first failing step of a replay is not needed.
    current = _cut(current, last)
    granularity = 2
    while len(current) >= 2:
        chunks = _chunks(current, granularity)
        reduced = False
        for i in range(len(chunks)):
            complement = [s for j, chunk in enumerate(chunks) if j != i for s in chunk]
            found = fails(complement)
            if found is not None:
                current, last = _cut(complement, found), found
                granularity = max(granularity - 1, 2)
                reduced = True
                break
        if not reduced:
            if granularity >= len(current):
                break
            granularity = min(granularity * 2, len(current))
    changed = True
    while changed:
        changed = False
        for i in range(len(current) - 1, -1, -1):
            candidate = current[:i] + current[i + 1 :]
            found = fails(candidate)
            if found is not None:
                current, last = _cut(candidate, found), found
                changed = True
                break
    return current, last


def _cut(steps: list[Step], out: Outcome) -> list[Step]:
    failing = out.violations[0].step
    return [s for s in steps if s.index <= failing]


def _chunks(steps: list[Step], n: int) -> list[list[Step]]:
    size, extra = divmod(len(steps), n)
    chunks, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        if end > start:
            chunks.append(steps[start:end])
        start = end
    return chunks
