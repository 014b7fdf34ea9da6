"""What every Z3 obligation is built from: the inductive invariant, the sum lemmas, and the
three kernel steps run symbolically (`create_transfer`, `create_account`, `expire_pending`).

The invariant is a list of named conjuncts, each universally quantified over one index (an
account id, a transfer id or a ledger) or over none. Obligations stay quantifier-free: a goal
about the post-state is stated at a fresh *witness* (Skolemised), and the pre-state invariant is
assumed only at the witnesses and at the indices the step touches (a sound under-approximation of
the real, quantified hypothesis; formal-methods.md section 3.2).

Sums over unbounded maps are uninterpreted functions (`ledger_sum`, `pending_sum`), related only
by ground instances of the lemmas in proofs/z3proofs.py's docstring (the trusted base).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import z3

from ledger.core.limits import ID_MAX, TIMESTAMP_MAX_NS
from ledger.core.types import PendingStatus
from proofs.z3ops import (
    Z3,
    account_wellformed,
    as_bool,
    symbolic_account,
    symbolic_state,
    symbolic_transfer,
    transfer_wellformed,
)

NONE, PENDING = int(PendingStatus.NONE), int(PendingStatus.PENDING)
POSTED, VOIDED, EXPIRED = (
    int(PendingStatus.POSTED),
    int(PendingStatus.VOIDED),
    int(PendingStatus.EXPIRED),
)
TOTALS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
GHOSTS = tuple(f"ledger_{name}" for name in TOTALS)

# Skolem witnesses: "some account / transfer / ledger / index where the goal fails".
ACCOUNT_W = z3.Int("w.account")
TRANSFER_W = z3.Int("w.transfer")
LEDGER_W = z3.Int("w.ledger")
INDEX_W = z3.Int("w.index")

_INT_ARRAY = z3.ArraySort(z3.IntSort(), z3.IntSort())
LEDGER_SUM = z3.Function("ledger_sum", _INT_ARRAY, _INT_ARRAY, z3.IntSort(), z3.IntSort())
"""ledger_sum(account_ledger, totals, L) = sum over accounts k with account_ledger[k] == L of
totals[k]."""
PENDING_SUM = z3.Function(
    "pending_sum", _INT_ARRAY, _INT_ARRAY, _INT_ARRAY, z3.IntSort(), z3.IntSort()
)
"""pending_sum(status, account_id, amount, k) = sum over transfers j with status[j] == PENDING
and account_id[j] == k of amount[j]."""


@dataclass(frozen=True)
class Obligation:
    """One proof obligation: `hypotheses => goal`, checked as "negation unsat".

    Attributes:
        name: stable dotted name, e.g. "L1.debits_must_not_exceed_credits.create_transfer".
        requirement: the spec ids it supports.
        hypotheses: Z3 Bools assumed.
        goal: the Z3 Bool to prove.
        sanity: (label, formula) pairs; each must be SAT together with the hypotheses, or the
            obligation is vacuous (the first is always the hypotheses alone).
        watch: (label, term) pairs evaluated in a counterexample.
    """

    name: str
    requirement: tuple[str, ...]
    hypotheses: tuple[Any, ...]
    goal: Any
    sanity: tuple[tuple[str, Any], ...]
    watch: tuple[tuple[str, Any], ...] = ()


# --- sums -------------------------------------------------------------------------------------


def ledger_contribution(account_ledger: Any, totals: Any, k: Any, ledger: Any) -> Any:
    return z3.If(account_ledger[k] == ledger, totals[k], 0)


def pending_contribution(status: Any, account_id: Any, amount: Any, j: Any, k: Any) -> Any:
    return z3.If(z3.And(status[j] == PENDING, account_id[j] == k), amount[j], 0)


def distinct_indices(indices: Sequence[Any]) -> list[Any]:
    """The indices without syntactic repeats (equal-valued ones are handled by the lemma)."""
    kept: list[Any] = []
    for i in indices:
        if not any(z3.eq(z3.IntVal(i) if isinstance(i, int) else i, k) for k in kept):
            kept.append(z3.IntVal(i) if isinstance(i, int) else i)
    return kept


def sum_after_writes(
    total_pre: Any,
    total_post: Any,
    touched: Sequence[Any],
    contribution_pre: Callable[[Any], Any],
    contribution_post: Callable[[Any], Any],
) -> Any:
    """Ground instance of the store lemma (trusted base, lemma SUM-FRAME): when the post maps
    equal the pre maps off `touched`, the sum changes by the contributions at the touched
    indices; an index equal in value to an earlier one is counted once."""
    delta: Any = z3.IntVal(0)
    seen: list[Any] = []
    for i in distinct_indices(touched):
        change = contribution_post(i) - contribution_pre(i)
        first = z3.And(*[i != j for j in seen]) if seen else z3.BoolVal(True)
        delta = delta + z3.If(first, change, 0)
        seen.append(i)
    return total_post == total_pre + delta


# --- the invariant ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Conjunct:
    """One conjunct of the inductive invariant, quantified over `index` ("account",
    "transfer", "ledger" or "global")."""

    name: str
    index: str
    requirement: tuple[str, ...]
    holds: Callable[[Any, Any], Any]


def invariant(spec: ModuleType) -> list[Conjunct]:
    """The conjuncts: L1, L2, L7 from specs/ledger.py, plus the supporting ones ("S.*") that
    make them inductive."""
    return [
        *_account_conjuncts(spec),
        *_transfer_conjuncts(),
        *_ledger_conjuncts(spec),
        Conjunct("S.reserved_ids_unused", "global", ("L4",), _reserved_ids_unused),
    ]


def _totals(s: Any, k: Any) -> tuple[Any, Any, Any, Any]:
    return (s.debits_pending[k], s.debits_posted[k], s.credits_pending[k], s.credits_posted[k])


def _account_conjuncts(spec: ModuleType) -> list[Conjunct]:
    def debits_guard(s: Any, k: Any) -> Any:
        return as_bool(spec.no_overdraft(Z3, s.account_debits_guard[k], False, *_totals(s, k)))

    def credits_guard(s: Any, k: Any) -> Any:
        return as_bool(spec.no_overdraft(Z3, False, s.account_credits_guard[k], *_totals(s, k)))

    def bounds(s: Any, k: Any) -> Any:
        return as_bool(spec.totals_in_bounds(Z3, *_totals(s, k)))

    def unknown_is_empty(s: Any, k: Any) -> Any:
        return z3.Implies(z3.Not(s.account_exists[k]), z3.And(*[t == 0 for t in _totals(s, k)]))

    def debits_pending_sum(s: Any, k: Any) -> Any:
        args = (s.transfer_status, s.transfer_debit_account_id, s.transfer_amount)
        return s.debits_pending[k] == PENDING_SUM(*args, k)

    def credits_pending_sum(s: Any, k: Any) -> Any:
        args = (s.transfer_status, s.transfer_credit_account_id, s.transfer_amount)
        return s.credits_pending[k] == PENDING_SUM(*args, k)

    return [
        Conjunct("L1.debits_must_not_exceed_credits", "account", ("L1",), debits_guard),
        Conjunct("L1.credits_must_not_exceed_debits", "account", ("L1",), credits_guard),
        Conjunct("L7.totals_in_bounds", "account", ("L7",), bounds),
        Conjunct("S.unknown_account_is_empty", "account", ("L1", "L2"), unknown_is_empty),
        Conjunct("S.debits_pending_is_sum_of_pending", "account", ("L5", "L7"), debits_pending_sum),
        Conjunct(
            "S.credits_pending_is_sum_of_pending", "account", ("L5", "L7"), credits_pending_sum
        ),
    ]


def _transfer_conjuncts() -> list[Conjunct]:
    def names_existing_accounts(s: Any, j: Any) -> Any:
        dr, cr = s.transfer_debit_account_id[j], s.transfer_credit_account_id[j]
        return z3.Implies(
            s.transfer_exists[j], z3.And(s.account_exists[dr], s.account_exists[cr], dr != cr)
        )

    def ledger_matches(s: Any, j: Any) -> Any:
        dr, cr = s.transfer_debit_account_id[j], s.transfer_credit_account_id[j]
        ledger = s.transfer_ledger[j]
        return z3.Implies(
            s.transfer_exists[j],
            z3.And(s.account_ledger[dr] == ledger, s.account_ledger[cr] == ledger),
        )

    def unknown_has_no_status(s: Any, j: Any) -> Any:
        return z3.Implies(z3.Not(s.transfer_exists[j]), s.transfer_status[j] == NONE)

    def status_in_range(s: Any, j: Any) -> Any:
        return z3.And(s.transfer_status[j] >= NONE, s.transfer_status[j] <= EXPIRED)

    def pending_amount_positive(s: Any, j: Any) -> Any:
        return z3.Implies(s.transfer_status[j] == PENDING, s.transfer_amount[j] > 0)

    return [
        Conjunct(
            "S.transfer_names_existing_accounts",
            "transfer",
            ("L1", "L2", "L5"),
            names_existing_accounts,
        ),
        Conjunct("S.transfer_ledger_matches_accounts", "transfer", ("L2",), ledger_matches),
        Conjunct("S.unknown_transfer_has_no_status", "transfer", ("L5",), unknown_has_no_status),
        Conjunct("S.status_in_range", "transfer", ("L5",), status_in_range),
        Conjunct("S.pending_amount_positive", "transfer", ("L5", "L7"), pending_amount_positive),
    ]


def _ledger_conjuncts(spec: ModuleType) -> list[Conjunct]:
    def double_entry(s: Any, ledger: Any) -> Any:
        ghosts = [getattr(s, name)[ledger] for name in GHOSTS]
        return as_bool(spec.double_entry(Z3, *ghosts))

    def ghost_is_sum(total: str) -> Callable[[Any, Any], Any]:
        def holds(s: Any, ledger: Any) -> Any:
            ghost = getattr(s, f"ledger_{total}")[ledger]
            return ghost == LEDGER_SUM(s.account_ledger, getattr(s, total), ledger)

        return holds

    return [
        Conjunct("L2.double_entry", "ledger", ("L2",), double_entry),
        *[
            Conjunct(f"L2.ghost_{total}_is_sum", "ledger", ("L2",), ghost_is_sum(total))
            for total in TOTALS
        ],
    ]


def _reserved_ids_unused(s: Any, _: Any) -> Any:
    return z3.And(
        z3.Not(s.account_exists[0]),
        z3.Not(s.account_exists[ID_MAX]),
        z3.Not(s.transfer_exists[0]),
        z3.Not(s.transfer_exists[ID_MAX]),
    )


WITNESS = {"account": ACCOUNT_W, "transfer": TRANSFER_W, "ledger": LEDGER_W, "global": None}


@dataclass(frozen=True)
class Indices:
    """Where the pre-state invariant is instantiated (besides the witnesses)."""

    accounts: list[Any] = field(default_factory=list)
    transfers: list[Any] = field(default_factory=list)
    ledgers: list[Any] = field(default_factory=list)


def instantiate(conjuncts: Sequence[Conjunct], s: Any, at: Indices) -> list[Any]:
    """Every conjunct at the witnesses and at the given indices (ground instances)."""
    where = {
        "account": [ACCOUNT_W, *at.accounts],
        "transfer": [TRANSFER_W, *at.transfers],
        "ledger": [LEDGER_W, *at.ledgers],
        "global": [None],
    }
    facts = []
    for c in conjuncts:
        facts += [c.holds(s, i) for i in distinct_or_none(where[c.index])]
    return facts


def distinct_or_none(indices: list[Any]) -> list[Any]:
    return indices if indices == [None] else distinct_indices(indices)


def sum_lemmas(pre: Any, post: Any, touched: dict[str, list[Any]]) -> list[Any]:
    """Store-lemma instances relating the post-state sums at the witnesses to the pre-state
    sums, for exactly the indices the step may write (its frame, proved separately)."""
    facts = []
    for total in TOTALS:
        writes = touched.get("account_ledger", []) + touched.get(total, [])
        before, after = _ledger_sum_of(pre, total), _ledger_sum_of(post, total)
        facts.append(sum_after_writes(before[0], after[0], writes, before[1], after[1]))
    for side in ("transfer_debit_account_id", "transfer_credit_account_id"):
        writes = [
            *touched.get("transfer_status", []),
            *touched.get(side, []),
            *touched.get("transfer_amount", []),
        ]
        before, after = _pending_sum_of(pre, side), _pending_sum_of(post, side)
        facts.append(sum_after_writes(before[0], after[0], writes, before[1], after[1]))
    return facts


def _ledger_sum_of(s: Any, total: str) -> tuple[Any, Callable[[Any], Any]]:
    """The ledger sum of `total` at the ledger witness, and its contribution at an account."""
    table = getattr(s, total)

    def contribution(k: Any) -> Any:
        return ledger_contribution(s.account_ledger, table, k, LEDGER_W)

    return LEDGER_SUM(s.account_ledger, table, LEDGER_W), contribution


def _pending_sum_of(s: Any, side: str) -> tuple[Any, Callable[[Any], Any]]:
    """The pending sum on `side` at the account witness, and its contribution at a transfer."""
    args = _pending_args(s, side)

    def contribution(j: Any) -> Any:
        return pending_contribution(*args, j, ACCOUNT_W)

    return PENDING_SUM(*args, ACCOUNT_W), contribution


def _pending_args(s: Any, side: str) -> tuple[Any, Any, Any]:
    return (s.transfer_status, getattr(s, side), s.transfer_amount)


def pending_covers(s: Any, transfers: Sequence[Any]) -> list[Any]:
    """Instances of lemma SUM-POSITIVE: a sum of non-negative contributions (Inv's
    S.pending_amount_positive) is at least any one of them; at each transfer's own account."""
    facts = []
    for j in distinct_indices(transfers):
        for side in ("transfer_debit_account_id", "transfer_credit_account_id"):
            args = _pending_args(s, side)
            k = getattr(s, side)[j]
            facts.append(PENDING_SUM(*args, k) >= pending_contribution(*args, j, k))
    return facts


def init_lemmas(init: Any) -> list[Any]:
    """Instances of lemma SUM-ZERO: a sum whose every contribution is zero is zero."""
    facts = [LEDGER_SUM(init.account_ledger, getattr(init, t), LEDGER_W) == 0 for t in TOTALS]
    for side in ("transfer_debit_account_id", "transfer_credit_account_id"):
        facts.append(PENDING_SUM(*_pending_args(init, side), ACCOUNT_W) == 0)
    return facts


# --- the steps, run symbolically --------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One kernel step on a symbolic pre-state.

    Attributes:
        kind: "create_transfer", "create_account" or "expire_pending".
        pre, post: the states before and after (post built by the kernel itself on Z3 terms).
        event: the symbolic event (the pending id for an expiry).
        ts: the timestamp the step is given.
        code: the result code term (None for an expiry).
        accepted: the step took effect (code == OK, or the expiry was due).
        touched: per map field, the indices the step may write (its frame).
        assumptions: well-formed event, timestamp after the state's.
        hypotheses: assumptions, Inv(pre) at the touched indices and witnesses, and lemmas.
        view: named terms of the step (effective ids, amounts) for obligations and messages.
    """

    kind: str
    pre: Any
    post: Any
    event: Any
    ts: Any
    code: Any
    accepted: Any
    touched: dict[str, list[Any]]
    assumptions: list[Any]
    hypotheses: list[Any]
    view: dict[str, Any]


def timestamp_assumptions(s: Any, ts: Any) -> list[Any]:
    """The batch driver hands a step a timestamp after the state's, within the column."""
    return [s.timestamp >= 0, ts > s.timestamp, ts <= TIMESTAMP_MAX_NS]


def transfer_view(s: Any, t: Any) -> dict[str, Any]:
    """The accounts, ledger and code a transfer event names, stated by the spec's own rule
    ("zero on a post or void means as the pending transfer"), not read from the kernel."""
    p = t.pending_id
    resolving = z3.Or(t.post_pending, t.void_pending)

    def inherit(given: Any, table: Any) -> Any:
        return z3.If(z3.And(resolving, given == 0), table[p], given)

    return {
        "id": t.id,
        "p": p,
        "resolving": resolving,
        "dr": inherit(t.debit_account_id, s.transfer_debit_account_id),
        "cr": inherit(t.credit_account_id, s.transfer_credit_account_id),
        "ledger": inherit(t.ledger, s.transfer_ledger),
        "code": inherit(t.code, s.transfer_code),
    }


def transfer_step(kernel: ModuleType, conjuncts: Sequence[Conjunct], prefix: str = "") -> Step:
    pre = symbolic_state(kernel, f"{prefix}pre")
    t = symbolic_transfer(kernel, f"{prefix}t")
    ts = z3.Int(f"{prefix}ts")
    post, code = kernel.create_transfer(pre, t, ts, Z3)
    view = transfer_view(pre, t)
    dr, cr, p, i = view["dr"], view["cr"], view["p"], t.id
    touched: dict[str, list[Any]] = {
        "debits_pending": [dr],
        "debits_posted": [dr],
        "credits_pending": [cr],
        "credits_posted": [cr],
        **{ghost: [view["ledger"]] for ghost in GHOSTS},
        **{name: [i] for name in kernel.MAP_FIELDS if name.startswith("transfer_")},
        "transfer_status": [p, i],
        "failed": [i],
    }
    assumptions = transfer_wellformed(t) + timestamp_assumptions(pre, ts)
    at = Indices(
        accounts=[
            dr,
            cr,
            t.debit_account_id,
            t.credit_account_id,
            *_transfer_accounts(pre, [p, i, TRANSFER_W]),
        ],
        transfers=[i, p],
        ledgers=[view["ledger"], t.ledger, pre.account_ledger[dr], pre.account_ledger[cr]],
    )
    hypotheses = (
        assumptions
        + instantiate(conjuncts, pre, at)
        + sum_lemmas(pre, post, touched)
        + pending_covers(pre, [p, i, TRANSFER_W])
    )
    return Step(
        "create_transfer", pre, post, t, ts, code, code == 0, touched, assumptions, hypotheses, view
    )


def _transfer_accounts(s: Any, transfers: Sequence[Any]) -> list[Any]:
    accounts = []
    for j in transfers:
        accounts += [s.transfer_debit_account_id[j], s.transfer_credit_account_id[j]]
    return accounts


def account_step(kernel: ModuleType, conjuncts: Sequence[Conjunct], prefix: str = "") -> Step:
    pre = symbolic_state(kernel, f"{prefix}pre")
    a = symbolic_account(kernel, f"{prefix}a")
    ts = z3.Int(f"{prefix}ts")
    post, code = kernel.create_account(pre, a, ts, Z3)
    touched = {name: [a.id] for name in kernel.MAP_FIELDS if name.startswith("account_")}
    assumptions = account_wellformed(a) + timestamp_assumptions(pre, ts)
    at = Indices(
        accounts=[a.id, *_transfer_accounts(pre, [TRANSFER_W])],
        transfers=[],
        ledgers=[a.ledger, pre.account_ledger[a.id]],
    )
    hypotheses = assumptions + instantiate(conjuncts, pre, at) + sum_lemmas(pre, post, touched)
    return Step(
        "create_account",
        pre,
        post,
        a,
        ts,
        code,
        code == 0,
        touched,
        assumptions,
        hypotheses,
        {"id": a.id},
    )


def expire_step(kernel: ModuleType, conjuncts: Sequence[Conjunct], prefix: str = "") -> Step:
    pre = symbolic_state(kernel, f"{prefix}pre")
    p = z3.Int(f"{prefix}pending_id")
    ts = z3.Int(f"{prefix}ts")
    post, due = kernel.expire_pending(pre, p, ts, Z3)
    dr, cr = pre.transfer_debit_account_id[p], pre.transfer_credit_account_id[p]
    ledger = pre.transfer_ledger[p]
    touched: dict[str, list[Any]] = {
        "debits_pending": [dr],
        "credits_pending": [cr],
        "ledger_debits_pending": [ledger],
        "ledger_credits_pending": [ledger],
        "transfer_status": [p],
    }
    # Expiry ids come from the state (the driver sweeps due pending transfers), not from input.
    assumptions = [p >= 0, p <= ID_MAX, *timestamp_assumptions(pre, ts)]
    at = Indices(
        accounts=[dr, cr, *_transfer_accounts(pre, [TRANSFER_W])],
        transfers=[p],
        ledgers=[ledger],
    )
    hypotheses = (
        assumptions
        + instantiate(conjuncts, pre, at)
        + sum_lemmas(pre, post, touched)
        + pending_covers(pre, [p, TRANSFER_W])
    )
    view = {"p": p, "dr": dr, "cr": cr, "ledger": ledger}
    return Step(
        "expire_pending",
        pre,
        post,
        p,
        ts,
        None,
        as_bool(due),
        touched,
        assumptions,
        hypotheses,
        view,
    )


def step_watch(step: Step) -> list[tuple[str, Any]]:
    """The values that explain a counterexample of this step."""
    pre, post = step.pre, step.post
    watch: list[tuple[str, Any]] = []
    if step.code is not None:
        watch.append(("code", step.code))
    watch.append(("accepted", step.accepted))
    for name in ("id", "p", "dr", "cr", "ledger"):
        if name in step.view:
            watch.append((name, step.view[name]))
    if step.kind == "create_transfer":
        t = step.event
        watch += [
            (f"t.{f}", getattr(t, f))
            for f in (
                "amount",
                "pending",
                "post_pending",
                "void_pending",
                "balancing_debit",
                "balancing_credit",
                "debit_account_id",
                "credit_account_id",
                "pending_id",
            )
        ]
    if step.kind == "create_account":
        a = step.event
        watch += [(f"a.{f}", getattr(a, f)) for f in ("ledger", "debits_guard", "credits_guard")]
    if "p" in step.view:
        p = step.view["p"]
        watch += [
            ("pre.status[p]", pre.transfer_status[p]),
            ("post.status[p]", post.transfer_status[p]),
            ("pre.amount[p]", pre.transfer_amount[p]),
        ]
    for side in ("dr", "cr"):
        if side in step.view:
            watch += account_watch(f"{side}", step.view[side], pre, post)
    return watch


def account_watch(label: str, k: Any, pre: Any, post: Any) -> list[tuple[str, Any]]:
    watch = [
        (f"{label}.exists", pre.account_exists[k]),
        (f"{label}.debits_guard", pre.account_debits_guard[k]),
        (f"{label}.credits_guard", pre.account_credits_guard[k]),
    ]
    for total in TOTALS:
        watch.append(
            (f"{label}.{total} pre->post", (getattr(pre, total)[k], getattr(post, total)[k]))
        )
    return watch


def witness_watch(index: str, pre: Any, post: Any) -> list[tuple[str, Any]]:
    """The witness of a failed ∀-conjunct and its values before and after."""
    if index == "account":
        return [("w.account", ACCOUNT_W), *account_watch("w.account", ACCOUNT_W, pre, post)]
    if index == "transfer":
        j = TRANSFER_W
        return [
            ("w.transfer", j),
            ("w.transfer exists pre->post", (pre.transfer_exists[j], post.transfer_exists[j])),
            ("w.transfer status pre->post", (pre.transfer_status[j], post.transfer_status[j])),
            ("w.transfer amount pre->post", (pre.transfer_amount[j], post.transfer_amount[j])),
        ]
    if index == "ledger":
        watch: list[tuple[str, Any]] = [("w.ledger", LEDGER_W)]
        for total in TOTALS:
            ghost = f"ledger_{total}"
            watch.append(
                (
                    f"w.ledger {ghost} pre->post",
                    (getattr(pre, ghost)[LEDGER_W], getattr(post, ghost)[LEDGER_W]),
                )
            )
        return watch
    return []


def step_sanity(step: Step) -> tuple[tuple[str, Any], ...]:
    """Non-vacuity for a step obligation: the hypotheses are satisfiable, and under them both an
    accepted and a rejected step are possible."""
    return (
        ("hypotheses", z3.BoolVal(True)),
        ("accepting step", step.accepted),
        ("rejecting step", z3.Not(step.accepted)),
    )


def guard_sanity(step: Step, conjunct: str) -> tuple[tuple[str, Any], ...]:
    """For L1 on transfers, also: a transfer on a guarded account is possible both within and
    beyond what the guard allows, so the guard is really exercised."""
    if step.kind != "create_transfer" or not conjunct.startswith("L1."):
        return ()
    pre, t, v = step.pre, step.event, step.view
    if conjunct == "L1.debits_must_not_exceed_credits":
        k, guard, mine, other = v["dr"], pre.account_debits_guard, "debits", "credits"
    else:
        k, guard, mine, other = v["cr"], pre.account_credits_guard, "credits", "debits"
    used = getattr(pre, f"{mine}_pending")[k] + getattr(pre, f"{mine}_posted")[k]
    limit = getattr(pre, f"{other}_posted")[k]
    new_money = z3.And(guard[k], z3.Not(v["resolving"]))
    return (
        (f"{mine} guard: accepted within the limit", z3.And(new_money, step.accepted)),
        (f"{mine} guard: a request beyond the limit", z3.And(new_money, used + t.amount > limit)),
    )
