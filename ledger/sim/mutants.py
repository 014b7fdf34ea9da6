"""Seeded bugs in the access engine (metering and settlement) that the simulator must find.

Each mutant is one source-text replacement in a file of ledger/metering/, as in proofs/mutants.py:
the original text must occur exactly once in the current source (checked before loading), so a
mutant can never silently become a no-op. A mutant is installed in a fresh interpreter, before
anything imports `ledger.metering`: an import hook hands out the mutated text as the module, so
every module that imports it gets the bug.

`hunt(name, seeds, steps)` runs the swarm with one mutant installed (a metering mutant here, or a
kernel mutant of proofs/mutants.py, which the reference ledger then runs) and returns the first
failing seed; `python -m ledger.sim.mutants NAME [--seeds A..B] [--steps K] [--store S]
[--shrink yes]` does it in a fresh process and prints one JSON line. This module imports
nothing of `ledger.metering` at import time (it would be too late to install a mutant then).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import time
import types
from collections.abc import Sequence

from ledger.seeded import ROOT, Mutant, MutantError, mutated_source

METER = "ledger/metering/meter.py"
SETTLEMENT = "ledger/metering/settlement.py"
COMPLETION = "ledger/metering/completion.py"
REGISTRY = "ledger/metering/registry.py"
WINDOWS = "ledger/metering/windows.py"


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "hold_id_from_time",
        "a reservation's transfer id is derived from the time as well as the decision, so a "
        "retried or replayed decision would name a new transfer (the model checks every id is "
        "the one derived from the decision and the layer)",
        METER,
        'derive_id("hold", r.decision_id, m.layer),',
        'derive_id("hold", r.decision_id, m.layer, r.now),',
    ),
    Mutant(
        "write_off_not_recorded",
        "what no layer covers is monetized as a write-off but no write-off transfer is booked",
        COMPLETION,
        """            self.events.append(
                self._transfer(
                    "write_off", "write_off", write_off, uncovered, TransferCode.WRITE_OFF
                )
            )""",
        "            pass",
    ),
    Mutant(
        "grants_burnt_out_of_order",
        "promotional grants are burnt latest-expiring first instead of soonest first",
        REGISTRY,
        "return sorted(live, key=lambda g: g.burn_order)",
        "return sorted(live, key=lambda g: g.burn_order, reverse=True)",
    ),
    Mutant(
        "reservation_never_voided",
        "a completion that keeps nothing of a hold skips its release: the void is never "
        "booked, the money stays held until the hold times out",
        COMPLETION,
        "        d, mid = self.d, self.ids[part.layer]",
        "        if not keep:\n            return\n        d, mid = self.d, self.ids[part.layer]",
    ),
    Mutant(
        "late_event_priced_today",
        "a completion is priced at the price in force when it is settled, not the price "
        "locked in its decision",
        SETTLEMENT,
        "    book = Book(d)",
        "    book = Book(d._replace(price=meter._terms(d.plan, d.feature, now).price))",
    ),
    Mutant(
        "lapsed_hold_not_charged",
        "what an expired hold would have posted is dropped instead of going through the "
        "waterfall again",
        SETTLEMENT,
        "            excess += keep  # the hold lapsed: what it would have posted is charged"
        " afresh",
        "            pass",
    ),
    Mutant(
        "redelivery_settles_again",
        "a usage event settled before is booked again when it is delivered again",
        SETTLEMENT,
        "_Settling(u, d, None if done else _book(meter, statuses, funds, d, u.units, now))",
        "_Settling(u, d, _book(meter, {**statuses, **{p.transfer_id: view.pending_status("
        "p.transfer_id) for p in d.parts if p.transfer_id}}, funds, d, u.units, now))",
    ),
    Mutant(
        "released_from_first_layer",
        "units a completion did not use are given back from the first layers (free window "
        "room) instead of the last (money is voided last, so the customer pays for them)",
        COMPLETION,
        """    for part in reversed(parts):
        give = min(release, part.units)
        kept.append(part.units - give)
        release -= give
    kept.reverse()""",
        """    for part in parts:
        give = min(release, part.units)
        kept.append(part.units - give)
        release -= give""",
    ),
    Mutant(
        "decision_clock_runs_backwards",
        "a decision stamped earlier than the latest seen for its customer is evaluated at its "
        "own, earlier time",
        METER,
        "at = max(q.now, record.last_seen, self._latest(q.customer, batch))",
        "at = q.now",
    ),
    Mutant(
        "expired_grant_still_serves",
        "a promotional grant keeps serving decisions after its expiry",
        REGISTRY,
        "return now < self.expires_at and (self.features is None or feature in self.features)",
        "return self.features is None or feature in self.features",
    ),
)


def by_name(name: str) -> Mutant:
    for m in MUTANTS:
        if m.name == name:
            return m
    raise MutantError(f"no metering mutant named {name!r}; see ledger/sim/mutants.py")


class _Loader(importlib.abc.Loader):
    def __init__(self, m: Mutant) -> None:
        self.m = m

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        filename = str(ROOT / self.m.file)
        exec(compile(mutated_source(self.m), filename, "exec"), module.__dict__)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, m: Mutant) -> None:
        self.m = m

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.m.module:
            return None
        return importlib.util.spec_from_loader(
            fullname, _Loader(self.m), origin=str(ROOT / self.m.file)
        )


def install(name: str) -> str:
    """Install a mutant in this interpreter: a metering mutant (before `ledger.metering` is
    imported) or a kernel mutant of proofs/mutants.py (the reference ledger runs it). Returns
    the mutant's family: "metering" or "kernel"."""
    if any(m.name == name for m in MUTANTS):
        m = by_name(name)
        mutated_source(m)  # refuse a stale mutant before anything else
        if m.module in sys.modules or "ledger.metering" in sys.modules:
            raise MutantError(f"{name}: ledger.metering is already imported; use a fresh process")
        sys.meta_path.insert(0, _Finder(m))
        return "metering"
    from ledger.core import reference
    from proofs import mutants as kernel_mutants

    found = [k for k in kernel_mutants.MUTANTS if k.name == name]
    if not found or found[0].file != kernel_mutants.KERNEL:
        raise MutantError(f"no metering or kernel mutant named {name!r}")
    setattr(reference, "kernel", kernel_mutants.load(found[0]))  # noqa: B010
    return "kernel"


def kernel_mutant_names() -> list[str]:
    """The seeded bugs of proofs/mutants.py that mutate the transition kernel."""
    from proofs import mutants as kernel_mutants

    return [m.name for m in kernel_mutants.MUTANTS if m.file == kernel_mutants.KERNEL]


def hunt(
    name: str, seeds: range, steps: int, store: str = "memory", *, shrunk: bool = False
) -> dict[str, object]:
    """Install mutant `name` here and run the swarm until the first failing seed (with
    `shrunk`, also shrink that seed's trace)."""
    started = time.perf_counter()
    family = install(name)
    from ledger.sim.api import simulate, swarm

    summary = swarm(seeds, steps, store, stop_at_first=True, shrink_first=False)
    first = summary.failures[0] if summary.failures else None
    shrunk_steps: list[int] = []
    if shrunk and first is not None:
        shrunk_steps = list(simulate(first.seed, steps, store).shrunk_steps)
    return {
        "mutant": name,
        "family": family,
        "found": first is not None,
        "seed": None if first is None else first.seed,
        "step": None if first is None else first.failed_step,
        "violation": None if first is None else first.violations[0].text(),
        "shrunk_steps": shrunk_steps,
        "seeds_run": len(summary.seeds_run),
        "seconds": round(time.perf_counter() - started, 2),
    }


USAGE = (
    "usage: python -m ledger.sim.mutants NAME [--seeds A..B] [--steps K] [--store S] [--shrink yes]"
)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.exit(USAGE)
    name, options = args[0], dict(zip(args[1::2], args[2::2], strict=False))
    first, _, last = options.get("--seeds", "0..199").partition("..")
    seeds = range(int(first), int(last) + 1)
    steps, store = int(options.get("--steps", "2000")), options.get("--store", "memory")
    result = hunt(name, seeds, steps, store, shrunk=options.get("--shrink") == "yes")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
