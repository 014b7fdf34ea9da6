"""Z3 proofs of the transition kernel itself (ledger/core/kernel.py run on Z3 terms), and of the
waterfall's allocation (ledger/metering/allocate.py run on Z3 terms).

`run()` builds every kernel obligation from the kernel functions `create_account`,
`create_transfer`, `expire_pending` and `apply_chain`, called with `Z3Ops` on fully symbolic states
(every map an SMT array, so the number of accounts and transfer ids is unbounded), and discharges
each one: the negated goal must be unsat within the time-out (`unknown` is a failure), and each
sanity formula must be sat together with the hypotheses (otherwise the obligation would hold
vacuously). The allocation obligations are discharged the same way.

Obligations (see the modules for the statements):
- proofs/obligations_invariants.py: Init => Inv and Inv(s) and Step => Inv(s') for every conjunct
  (L1 both guards, L2 double entry and ghost == sum, L7 bounds, and the supporting conjuncts
  S.*), per step kind; one frame obligation per step kind.
- proofs/obligations_functional.py: the functional spec (accepted exactly when; effect; frame;
  a rejection changes only `failed`) for each step kind.
- proofs/obligations_transitions.py: L4 idempotency, L5 two-phase transitions, L6 linked chains.
- proofs/obligations_allocation.py: M3 waterfall order, proved of ledger/metering/allocate.py's
  `allocate` and `fill` run on Z3 terms, for every layer count 1..8 (its own small trusted base
  is in that module's docstring: no lemma, only the Ops shim, unbounded ints and the solver).

The obligations come in two families that share no code under test: "kernel"
(ledger/core/kernel.py against specs/ledger.py, everything above but the last item) and
"allocation" (ledger/metering/allocate.py against specs/metering.py). A seeded mutant of one
family's files cannot change the other family's obligations, so proofs/mutants.py discharges only
its own family.

Trusted base of the kernel family (assumed, not proved here):
- Lemma SUM-FRAME (the store lemma). For each sum below and any key x: if every argument map of
  the post-state equals the pre-state's outside a finite index set T, then
  sum(post, x) = sum(pre, x) + (sum over distinct i in T of c_post(i, x) - c_pre(i, x)).
  Assumed only as ground instances, for exactly the indices a step declares as touched and at the
  witness key; the premise is proved by the `frame.<step>` obligations.
- Lemma SUM-POSITIVE. If every contribution of pending_sum(status, ids, amount, .) is >= 0, then
  pending_sum(status, ids, amount, ids[j]) >= c(j, ids[j]) for any transfer j. Assumed as ground
  instances on the pre-state only, where every contribution is >= 0 by conjunct
  S.pending_amount_positive (Inv(pre) holds for all j, not only at the instantiated ones).
- Lemma SUM-ZERO. A sum whose contributions are all zero is zero (used for Init only).
- The sums are
    ledger_sum(account_ledger, totals, L) = sum over accounts k with account_ledger[k] == L of
        totals[k],
    pending_sum(status, account_id, amount, k) = sum over transfers j with status[j] == PENDING
        and account_id[j] == k of amount[j];
  both are finite because every reachable state is Init (constant arrays) plus finitely many
  stores.
- `Z3Ops` means what `ConcreteOps` means (If/And/Or/Not/Select/Store on Bool/Int/arrays versus
  Python's bool/int/TotalMap); Python ints are unbounded like Z3 Ints; z3-solver 5.3.3.0 is sound.
- The batch driver's promises: events passed `validate.check_batch` (every integer field within
  its column), each step gets a timestamp later than the state's and at most TIMESTAMP_MAX_NS,
  and an expiry is asked only for an id (0..ID_MAX) the driver read from the state.

Not proved by the kernel family (covered by the Hypothesis and differential tests, or the auditor):
- L3 for posted totals (totals == fold of the journal): the kernel keeps no journal. Only the
  pending part is proved (S.*_pending_is_sum_of_pending: pending totals == sum of live holds).
- The batch driver (reference.py, engine.py): chain splitting, LINKED_EVENT_CHAIN_OPEN, the expiry
  sweep (which ids, in which order), timestamp assignment and strictly increasing timestamps,
  `check_batch` itself, and the engine's equivalence to the kernel.
- Chains longer than three events (apply_chain is a loop; proved for 2 and 3 transfers and an
  account followed by a transfer). Inv across a chain follows from the per-step obligations, the
  "committed chain is its steps in sequence" obligation, and the rollback obligation (no conjunct
  reads `failed` or `timestamp`), an argument made here rather than by one more Z3 check.
- Which rejection code is returned: only OK versus not OK, EXISTS* on a replay, and whether the
  code is transient are specified; the precedence among failure codes is not.
- Consistency of the stored `account_flags` integer with the decoded guard/closed maps (the
  kernel reads only the decoded maps).
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from pathlib import Path
from types import ModuleType
from typing import Any

import z3

from ledger.core.results import Result
from proofs.obligations_allocation import allocation_obligations
from proofs.obligations_base import (
    Obligation,
    account_step,
    expire_step,
    invariant,
    transfer_step,
)
from proofs.obligations_functional import functional_obligations
from proofs.obligations_invariants import (
    frame_obligation,
    init_obligations,
    preservation_obligations,
)
from proofs.obligations_transitions import transition_obligations
from proofs.report import Outcome
from proofs.z3ops import initial_state, map_fields

TIMEOUT_MS = 20_000
"""Per solver call; a time-out is `unknown`, which is a failure."""


FAMILIES = ("kernel", "allocation")
"""The obligation families, in report order (see the module docstring)."""


def _default_modules(
    kernel_module: ModuleType | None, spec_module: ModuleType | None
) -> tuple[ModuleType, ModuleType]:
    from ledger.core import kernel
    from specs import ledger as spec

    return kernel_module or kernel, spec_module or spec


def obligations(
    kernel_module: ModuleType | None = None,
    spec_module: ModuleType | None = None,
    allocate_module: ModuleType | None = None,
    metering_spec_module: ModuleType | None = None,
    families: Collection[str] = FAMILIES,
) -> list[Obligation]:
    """Every obligation of the chosen families, built from the given modules (default: the real
    ones: ledger.core.kernel, specs.ledger, ledger.metering.allocate, specs.metering)."""
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown obligation families {sorted(unknown)}; known: {FAMILIES}")
    found: list[Obligation] = []
    if "kernel" in families:
        found += kernel_obligations(kernel_module, spec_module)
    if "allocation" in families:
        found += allocation_obligations(allocate_module, metering_spec_module)
    names = [o.name for o in found]
    assert len(names) == len(set(names)), "obligation names must be unique"
    return found


def kernel_obligations(
    kernel_module: ModuleType | None = None, spec_module: ModuleType | None = None
) -> list[Obligation]:
    """The kernel family: invariants, functional spec and transitions of ledger/core/kernel.py."""
    kernel, spec = _default_modules(kernel_module, spec_module)
    conjuncts = invariant(spec)
    steps = [
        transfer_step(kernel, conjuncts),
        account_step(kernel, conjuncts),
        expire_step(kernel, conjuncts),
    ]
    found = init_obligations(initial_state(kernel), conjuncts)
    for step in steps:
        found += preservation_obligations(step, conjuncts)
    found += [frame_obligation(step, map_fields(kernel)) for step in steps]
    found += functional_obligations(kernel, spec, steps)
    found += transition_obligations(kernel, steps)
    return found


def run(
    smt_dir: Path | None = None,
    kernel_module: ModuleType | None = None,
    spec_module: ModuleType | None = None,
    timeout_ms: int = TIMEOUT_MS,
    allocate_module: ModuleType | None = None,
    metering_spec_module: ModuleType | None = None,
    families: Collection[str] = FAMILIES,
) -> list[Outcome]:
    """Discharge every obligation of the chosen families; one `Outcome` each, in a stable order.
    The module arguments (default: the real ones) let seeded mutants run the same obligations;
    `smt_dir` receives each check's SMT-LIB."""
    if smt_dir is not None:
        smt_dir.mkdir(parents=True, exist_ok=True)
    found = obligations(kernel_module, spec_module, allocate_module, metering_spec_module, families)
    sanity_cache: dict[Any, str] = {}
    return [discharge(o, smt_dir, timeout_ms, sanity_cache) for o in found]


# --- discharging one obligation ---------------------------------------------------------------


def discharge(
    o: Obligation,
    smt_dir: Path | None = None,
    timeout_ms: int = TIMEOUT_MS,
    sanity_cache: dict[Any, str] | None = None,
) -> Outcome:
    """Prove `o`: its negation unsat, then each sanity formula sat (non-vacuity). Obligations
    of one step share hypotheses and sanity formulas; `sanity_cache` checks each pair once."""
    start = time.perf_counter()
    solver = _solver(timeout_ms, o.hypotheses, z3.Not(o.goal))
    _save(smt_dir, o.name, solver)
    result = solver.check()
    if result == z3.sat:
        return _outcome(o, start, False, "counterexample: " + describe(solver.model(), o.watch))
    if result != z3.unsat:
        return _outcome(o, start, False, f"unknown ({solver.reason_unknown()}): not proved")
    cache = {} if sanity_cache is None else sanity_cache
    for label, extra in o.sanity:
        key = (tuple(h.get_id() for h in o.hypotheses), extra.get_id())
        if key not in cache:
            cache[key] = _satisfiable(o, label, extra, smt_dir, timeout_ms)
        if cache[key] != "sat":
            return _outcome(o, start, False, f"vacuous: sanity check '{label}' is {cache[key]}")
    labels = ", ".join(label for label, _ in o.sanity)
    return _outcome(o, start, True, f"unsat; non-vacuous: {labels} sat")


def _satisfiable(
    o: Obligation, label: str, extra: Any, smt_dir: Path | None, timeout_ms: int
) -> str:
    """ "sat", "unsat" or "unknown (reason)" for the hypotheses of `o` and `extra`."""
    check = _solver(timeout_ms, o.hypotheses, extra)
    _save(smt_dir, f"{o.name}.sanity-{label}", check)
    verdict = check.check()
    if verdict == z3.unknown:
        return f"unknown ({check.reason_unknown()})"
    return str(verdict)


def _solver(timeout_ms: int, hypotheses: tuple[Any, ...], extra: Any) -> Any:
    # Every obligation is quantifier-free arrays + UF + linear integer arithmetic. Naming the
    # logic selects Z3's preprocessing for it, about 100x faster here than the generic solver.
    solver = z3.SolverFor("QF_AUFLIA")
    solver.set("timeout", timeout_ms)
    solver.add(*hypotheses)
    solver.add(extra)
    return solver


def _outcome(o: Obligation, start: float, holds: bool, detail: str) -> Outcome:
    return Outcome(o.name, "z3", holds, time.perf_counter() - start, detail, o.requirement)


def _save(smt_dir: Path | None, name: str, solver: Any) -> None:
    if smt_dir is not None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        (smt_dir / f"{safe}.smt2").write_text(solver.to_smt2())


def describe(model: Any, watch: tuple[tuple[str, Any], ...]) -> str:
    """The watched values in a model, e.g. "code=EXCEEDS_CREDITS; dr=3; amount=5"."""
    parts = []
    for label, term in watch:
        if label.startswith("?"):  # shown only when the pair differs (a frame violation)
            before, after = (_value(model, t) for t in term)
            if before != after:
                parts.append(f"{label[1:]}={before}->{after}")
            continue
        parts.append(f"{label}={_show(model, label, term)}")
    return "; ".join(parts)


def _show(model: Any, label: str, term: Any) -> str:
    if isinstance(term, tuple):
        return "->".join(_show(model, label, t) for t in term)
    value = _value(model, term)
    if label == "code" or label.startswith("codes["):
        try:
            return Result(int(value)).name
        except ValueError:
            return value
    return value


def _value(model: Any, term: Any) -> str:
    if isinstance(term, (bool, int)):
        return str(term)
    return str(model.eval(term, model_completion=True))
