"""Properties of transitions rather than of states: L4 idempotency, L5 two-phase transfers and
L6 linked chains, each proved on the kernel functions run on Z3 terms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import z3

from ledger.core.limits import TIMESTAMP_MAX_NS
from ledger.core.results import EXISTS_RESULTS, TRANSIENT_RESULTS, Result
from proofs.obligations_base import (
    EXPIRED,
    NONE,
    PENDING,
    POSTED,
    TRANSFER_W,
    VOIDED,
    Obligation,
    Step,
    step_sanity,
    step_watch,
    timestamp_assumptions,
    witness_watch,
)
from proofs.obligations_functional import unchanged
from proofs.z3ops import (
    Z3,
    account_wellformed,
    symbolic_account,
    symbolic_state,
    symbolic_transfer,
    transfer_wellformed,
)

OK, EXISTS = int(Result.OK), int(Result.EXISTS)
RESOLVED = (POSTED, VOIDED, EXPIRED)


def transition_obligations(kernel: ModuleType, steps: Sequence[Step]) -> list[Obligation]:
    by_kind = {s.kind: s for s in steps}
    transfer, account, expiry = (
        by_kind[k] for k in ("create_transfer", "create_account", "expire_pending")
    )
    return [
        *idempotency(kernel, transfer, account),
        *two_phase(transfer, account, expiry),
        *chains(kernel),
    ]


# --- L4 idempotency ---------------------------------------------------------------------------


def idempotency(kernel: ModuleType, transfer: Step, account: Step) -> list[Obligation]:
    found = []
    for step in (transfer, account):
        found.append(_replay(step, kernel.MAP_FIELDS))
        found.append(_twice(kernel, step))
    i = transfer.event.id
    failed_before = transfer.pre.failed[i]
    found.append(
        Obligation(
            name="L4.failed_id_stays_rejected.create_transfer",
            requirement=("L4",),
            hypotheses=(*transfer.hypotheses, failed_before),
            goal=z3.And(z3.Not(transfer.accepted), transfer.post.failed[i]),
            sanity=(("hypotheses", z3.BoolVal(True)),),
            watch=tuple(step_watch(transfer)),
        )
    )
    return found


def _replay(step: Step, map_fields: Sequence[str]) -> Obligation:
    """An event whose id exists gets an EXISTS* code and changes no map."""
    e = step.event
    exists = step.pre.transfer_exists if step.kind == "create_transfer" else step.pre.account_exists
    replay = [exists[e.id], e.timestamp == 0, z3.Not(e.reserved_flags)]
    return Obligation(
        name=f"L4.replay_of_existing_id.{step.kind}",
        requirement=("L4",),
        hypotheses=(*step.hypotheses, *replay),
        goal=z3.And(
            z3.Or(*[step.code == int(r) for r in EXISTS_RESULTS]), unchanged(step, map_fields)
        ),
        sanity=(
            ("hypotheses", z3.BoolVal(True)),
            ("same body", step.code == EXISTS),
            ("different body", step.code != EXISTS),
        ),
        watch=tuple(step_watch(step)),
    )


def _twice(kernel: ModuleType, step: Step) -> Obligation:
    """step(step(s, e), e) == step(s, e) on every map; after an accepted step, EXISTS."""
    ts2 = z3.Int(f"{step.kind}.ts2")
    fn = kernel.create_transfer if step.kind == "create_transfer" else kernel.create_account
    again, code2 = fn(step.post, step.event, ts2, Z3)
    same = z3.And(*[getattr(again, f) == getattr(step.post, f) for f in kernel.MAP_FIELDS])
    return Obligation(
        name=f"L4.step_twice_is_step_once.{step.kind}",
        requirement=("L4",),
        hypotheses=(*step.hypotheses, ts2 > step.ts, ts2 <= TIMESTAMP_MAX_NS),
        goal=z3.And(same, z3.Implies(step.accepted, code2 == EXISTS)),
        sanity=step_sanity(step),
        watch=(*step_watch(step), ("code2", code2)),
    )


# --- L5 two-phase -----------------------------------------------------------------------------


def two_phase(transfer: Step, account: Step, expiry: Step) -> list[Obligation]:
    found = [_status_moves(step) for step in (transfer, account, expiry)]
    found += [_resolved_is_final(step) for step in (transfer, expiry)]
    found += [
        _only_pending_is_resolved(transfer),
        _resolution_resolves(transfer),
        _post_at_most_pending(transfer),
    ]
    found += [_releases_pending_amount(step) for step in (transfer, expiry)]
    return found


def _l5(step: Step, name: str, goal: Any) -> Obligation:
    return Obligation(
        name=f"L5.{name}.{step.kind}",
        requirement=("L5",),
        hypotheses=tuple(step.hypotheses),
        goal=goal,
        sanity=step_sanity(step),
        watch=tuple(step_watch(step) + witness_watch("transfer", step.pre, step.post)),
    )


def _status_moves(step: Step) -> Obligation:
    """A status changes only NONE -> PENDING (a new pending transfer) or PENDING -> resolved."""
    pre, post, j = step.pre, step.post, TRANSFER_W
    before, after = pre.transfer_status[j], post.transfer_status[j]
    created = z3.And(
        before == NONE, z3.Not(pre.transfer_exists[j]), after == PENDING, post.transfer_exists[j]
    )
    resolved = z3.And(before == PENDING, z3.Or(*[after == r for r in RESOLVED]))
    return _l5(
        step, "status_moves_only_forward", z3.Implies(after != before, z3.Or(created, resolved))
    )


def _resolved_is_final(step: Step) -> Obligation:
    j = TRANSFER_W
    before = step.pre.transfer_status[j]
    return _l5(
        step,
        "resolved_status_is_final",
        z3.Implies(z3.Or(*[before == r for r in RESOLVED]), step.post.transfer_status[j] == before),
    )


def _only_pending_is_resolved(step: Step) -> Obligation:
    v = step.view
    return _l5(
        step,
        "only_a_pending_transfer_is_resolved",
        z3.Implies(
            z3.And(step.accepted, v["resolving"]), step.pre.transfer_status[v["p"]] == PENDING
        ),
    )


def _resolution_resolves(step: Step) -> Obligation:
    """An accepted post or void leaves its pending transfer POSTED or VOIDED, so it cannot be
    resolved a second time."""
    v, t = step.view, step.event
    return _l5(
        step,
        "accepted_resolution_resolves_the_pending_transfer",
        z3.Implies(
            z3.And(step.accepted, v["resolving"]),
            step.post.transfer_status[v["p"]] == z3.If(t.post_pending, POSTED, VOIDED),
        ),
    )


def _post_at_most_pending(step: Step) -> Obligation:
    pre, post, v, t = step.pre, step.post, step.view, step.event
    moved = post.transfer_amount[t.id]
    return _l5(
        step,
        "post_moves_at_most_the_pending_amount",
        z3.Implies(
            z3.And(step.accepted, t.post_pending),
            z3.And(
                moved <= pre.transfer_amount[v["p"]],
                post.debits_posted[v["dr"]] == pre.debits_posted[v["dr"]] + moved,
                post.credits_posted[v["cr"]] == pre.credits_posted[v["cr"]] + moved,
            ),
        ),
    )


def _releases_pending_amount(step: Step) -> Obligation:
    pre, post, v = step.pre, step.post, step.view
    amount = pre.transfer_amount[v["p"]]
    when = step.accepted if step.kind == "expire_pending" else z3.And(step.accepted, v["resolving"])
    return _l5(
        step,
        "resolution_releases_exactly_the_pending_amount",
        z3.Implies(
            when,
            z3.And(
                post.debits_pending[v["dr"]] == pre.debits_pending[v["dr"]] - amount,
                post.credits_pending[v["cr"]] == pre.credits_pending[v["cr"]] - amount,
            ),
        ),
    )


# --- L6 linked chains -------------------------------------------------------------------------


CHAINS = {
    "chain2": ("transfer", "transfer"),
    "chain3": ("transfer", "transfer", "transfer"),
    "chain2_account_then_transfer": ("account", "transfer"),
}


def chains(kernel: ModuleType) -> list[Obligation]:
    found = []
    for name, kinds in CHAINS.items():
        found += _chain_properties(kernel, name, kinds)
    return found


@dataclass(frozen=True)
class _Chain:
    pre: Any
    events: list[Any]
    ts: Any
    assumptions: list[Any]
    final: Any
    codes: list[Any]


def _chain_setup(kernel: ModuleType, name: str, kinds: Sequence[str]) -> _Chain:
    pre = symbolic_state(kernel, f"{name}.pre")
    events, assumptions = [], []
    for k, kind in enumerate(kinds):
        if kind == "account":
            events.append(symbolic_account(kernel, f"{name}.a{k + 1}"))
            assumptions += account_wellformed(events[-1])
        else:
            events.append(symbolic_transfer(kernel, f"{name}.t{k + 1}"))
            assumptions += transfer_wellformed(events[-1])
    ts = z3.Int(f"{name}.ts")
    final, codes = kernel.apply_chain(pre, events, ts, Z3)
    assumptions += [*timestamp_assumptions(pre, ts), ts + len(kinds) - 1 <= TIMESTAMP_MAX_NS]
    return _Chain(pre, events, ts, assumptions, final, codes)


def _one_by_one(kernel: ModuleType, chain: _Chain) -> tuple[Any, list[Any]]:
    """The state and each event's code when the events are applied one by one, unlinked."""
    codes, s = [], chain.pre
    for k, e in enumerate(chain.events):
        s, code = kernel.step(s, e, chain.ts + k, Z3)
        codes.append(code)
    return s, codes


def _chain_properties(kernel: ModuleType, name: str, kinds: Sequence[str]) -> list[Obligation]:
    """A linked chain: applied whole or not at all (every map but `failed` as before), its
    codes all OK or none OK, a failure marks no id outside the chain as failed, and a committed
    chain is exactly its steps in sequence (so each step's invariant obligations cover it)."""
    c = _chain_setup(kernel, name, kinds)
    sequential, own = _one_by_one(kernel, c)
    all_ok = z3.And(*[code == OK for code in c.codes])
    sanity = (
        ("hypotheses", z3.BoolVal(True)),
        ("every event accepted", all_ok),
        (
            "the last event fails after the others were applied",
            z3.And(*[code == OK for code in own[:-1]], own[-1] != OK),
        ),
    )
    watch = tuple(
        [(f"codes[{k}]", code) for k, code in enumerate(c.codes)]
        + [(f"codes[{k}] unlinked", code) for k, code in enumerate(own)]
    )
    fields = [f for f in kernel.MAP_FIELDS if f != "failed"]
    rolled_back = z3.And(*[getattr(c.final, f) == getattr(c.pre, f) for f in fields])
    j = TRANSFER_W
    marks_only_chain = z3.Implies(
        z3.And(*[j != e.id for e in c.events]), c.final.failed[j] == c.pre.failed[j]
    )

    def obligation(prop: str, goal: Any) -> Obligation:
        return Obligation(f"L6.{prop}.{name}", ("L6",), tuple(c.assumptions), goal, sanity, watch)

    # The first failing event keeps its own code, and a transient failure stays remembered under
    # its id although the chain is undone (else a retry could later become a charge).
    first_failure = []
    for k, code in enumerate(own):
        fails_first = z3.And(*[earlier == OK for earlier in own[:k]], code != OK)
        transient = z3.Or(*[code == int(r) for r in sorted(TRANSIENT_RESULTS)])
        first_failure.append(
            z3.Implies(
                fails_first,
                z3.And(c.codes[k] == code, z3.Implies(transient, c.final.failed[c.events[k].id])),
            )
        )

    return [
        obligation("chain_applied_whole_or_not_at_all", z3.Or(all_ok, rolled_back)),
        obligation(
            "codes_all_ok_or_none_ok", z3.Or(all_ok, z3.And(*[code != OK for code in c.codes]))
        ),
        obligation("failure_marks_only_chain_ids", marks_only_chain),
        obligation("failing_event_keeps_its_code_and_memo", z3.And(*first_failure)),
        obligation(
            "committed_chain_is_its_steps_in_sequence",
            z3.Implies(
                all_ok,
                z3.And(*[getattr(c.final, f) == getattr(sequential, f) for f in kernel.MAP_FIELDS]),
            ),
        ),
    ]
