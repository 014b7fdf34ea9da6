"""The public functions: `simulate(seed, steps)` runs one seed's workload with every check
and, on a violation, shrinks the trace to the few steps that still reproduce it;
`swarm(seeds, steps)` runs many seeds over processes (each seed's run is deterministic whichever
process runs it, so the summary is the same however many processes there are)."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ledger.sim.run import Violation, run_steps
from ledger.sim.shrink import shrink
from ledger.sim.world import Config, Step, generate


@dataclass(frozen=True, slots=True)
class SimResult:
    """One seed's run.

    Attributes:
        seed, steps, store: what was run (`steps` generated; `executed` of them ran).
        ok: no check failed.
        violations: what the failing step broke (empty when ok).
        trace: one line per step run, with its outcome (byte-identical for the same seed).
        shrunk: the shrunk trace of a failure (its header, its steps and their violations).
        shrunk_steps: the original indices of the shrunk trace's steps.
        faults: faults injected, by kind.
    """

    seed: int
    steps: int
    store: str
    ok: bool
    executed: int
    violations: tuple[Violation, ...]
    trace: tuple[str, ...]
    faults: dict[str, int]
    seconds: float
    shrunk: tuple[str, ...] = ()
    shrunk_steps: tuple[int, ...] = field(default=())

    @property
    def failed_step(self) -> int | None:
        return self.violations[0].step if self.violations else None

    def trace_text(self) -> str:
        return "\n".join(self.trace) + "\n"

    def report(self) -> str:
        """What a failure prints: the seed, the step, the shrunk trace and how to re-run it."""
        if self.ok:
            return f"seed {self.seed}: {self.executed} steps, no violation"
        first = self.violations[0]
        lines = [
            f"seed {self.seed} FAILED at step #{first.step} of {self.steps} ({self.store} store)",
            f"  {first.text()}",
        ]
        lines += [f"  {v.text()}" for v in self.violations[1:5]]
        if self.shrunk:
            lines.append(f"shrunk trace ({len(self.shrunk_steps)} steps):")
            lines += [f"  {line}" for line in self.shrunk]
            only = ",".join(str(i) for i in self.shrunk_steps)
            again = (
                f"tollgate simulate --seed {self.seed} --steps {self.steps} --store {self.store}"
            )
            lines.append(f"re-run: {again}")
            lines.append(f"replay the shrunk trace alone: {again} --only {only}")
        return "\n".join(lines)


def simulate(
    seed: int,
    steps: int,
    store: str = "memory",
    directory: Path | None = None,
    *,
    shrink_failure: bool = True,
    only: Sequence[int] | None = None,
    audit_every: int | None = None,
    keep_going: bool = False,
) -> SimResult:
    """Run seed `seed` for `steps` steps on a fresh `store` ("memory" or "sqlite"; SQLite files
    go in `directory`, a temporary one by default). `only` replays just those step indices.
    A run stops at the first step whose checks fail (`keep_going`: runs every step, collects
    every violation, and shrinks nothing)."""
    started = time.perf_counter()
    config, generated = generate(seed, steps)
    chosen = generated if only is None else [s for s in generated if s.index in set(only)]
    kwargs = {} if audit_every is None else {"audit_every": audit_every}
    out = run_steps(config, chosen, store, directory, keep_going=keep_going, **kwargs)
    shrunk: tuple[str, ...] = ()
    shrunk_steps: tuple[int, ...] = ()
    if out.violations and shrink_failure and not keep_going:
        shrunk_steps, shrunk = _shrunk(config, chosen, out.violations[0], store, directory)
    return SimResult(
        seed=seed,
        steps=steps,
        store=store,
        ok=not out.violations,
        executed=out.executed,
        violations=tuple(out.violations),
        trace=tuple(out.trace),
        faults=dict(sorted(out.faults.items())),
        seconds=time.perf_counter() - started,
        shrunk=shrunk,
        shrunk_steps=shrunk_steps,
    )


def _shrunk(
    config: Config,
    steps: Sequence[Step],
    first: Violation,
    store: str,
    directory: Path | None,
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    failing = [s for s in steps if s.index <= first.step]
    small, out = shrink(config, failing, first.category, store, directory)
    lines = [*out.trace, *(f"  !! {v.text()}" for v in out.violations)]
    return tuple(s.index for s in small), tuple(lines)


@dataclass(frozen=True, slots=True)
class SwarmSummary:
    """Seeds run, steps executed, faults injected by kind, and the failing seeds (each with its
    first violation; the first failing seed also with its shrunk trace)."""

    seeds: tuple[int, ...]
    steps: int
    store: str
    executed: int
    faults: dict[str, int]
    failures: tuple[SimResult, ...]
    seconds: float
    stopped_early: bool = False
    seeds_run: tuple[int, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def steps_per_second(self) -> float:
        return self.executed / self.seconds if self.seconds else 0.0

    def report(self) -> str:
        lines = [
            f"swarm: {len(self.seeds_run)} seeds x {self.steps} steps on {self.store}: "
            f"{self.executed:,} steps in {self.seconds:.1f} s "
            f"({self.steps_per_second:,.0f} steps/s)",
            "faults injected: "
            + (", ".join(f"{k} {v:,}" for k, v in self.faults.items()) or "none"),
        ]
        if self.ok:
            lines.append("violations: none")
        else:
            lines.append(f"violations: {len(self.failures)} failing seed(s)")
            for r in self.failures[:10]:
                lines.append(f"  seed {r.seed} step #{r.failed_step}: {r.violations[0].message}")
            if len(self.failures) > 10:
                lines.append(f"  ... and {len(self.failures) - 10} more")
            first = self.failures[0]
            if first.shrunk:
                lines.append(first.report())
        if self.stopped_early:
            lines.append("(stopped at the first failing seed)")
        return "\n".join(lines)


def _one(job: tuple[int, int, str, str | None]) -> SimResult:
    seed, steps, store, directory = job
    return simulate(
        seed, steps, store, Path(directory) if directory else None, shrink_failure=False
    )


def swarm(
    seeds: Iterable[int],
    steps: int,
    store: str = "memory",
    *,
    directory: Path | None = None,
    processes: int | None = None,
    stop_at_first: bool = False,
    shrink_first: bool = True,
) -> SwarmSummary:
    """Run every seed; `processes` defaults to the machine's cores (2 in CI). With
    `stop_at_first`, stop at the first failing seed (the lowest failing seed among those run)."""
    started = time.perf_counter()
    seed_list = list(seeds)
    jobs = [(s, steps, store, str(directory) if directory else None) for s in seed_list]
    count = processes or os.cpu_count() or 1
    results: list[SimResult] = []
    stopped = False
    for result in _results(jobs, count):
        results.append(result)
        if stop_at_first and not result.ok:
            stopped = True
            break
    results.sort(key=lambda r: r.seed)
    failures = [r for r in results if not r.ok]
    if stop_at_first and failures:
        failures = failures[:1]
    if failures and shrink_first:
        first = failures[0]
        failures[0] = simulate(first.seed, steps, store, directory)
    faults: Counter[str] = Counter()
    for r in results:
        faults.update(r.faults)
    return SwarmSummary(
        seeds=tuple(seed_list),
        steps=steps,
        store=store,
        executed=sum(r.executed for r in results),
        faults=dict(sorted(faults.items())),
        failures=tuple(failures),
        seconds=time.perf_counter() - started,
        stopped_early=stopped,
        seeds_run=tuple(sorted(r.seed for r in results)),
    )


def _results(jobs: list[tuple[int, int, str, str | None]], processes: int) -> Iterator[SimResult]:
    if processes <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _one(job)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(processes) as pool:
        yield from pool.imap(_one, jobs)
