"""The functional spec of each step: exactly when it takes effect, what it changes, and that it
changes nothing else. Safety invariants alone are satisfied by a ledger that rejects everything
(formal-methods.md section 6.5); these obligations are what kill over-restrictive kernels.

For `create_transfer` the acceptance predicate, the moved amount and the effect on the two
accounts are `specs.ledger.transfer_accepted`, `moved_amount` and `transfer_effect`; the `pre`
record they read is built here from the symbolic state. For `create_account` and
`expire_pending` the statements are written here, apart from the kernel's check order.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType, SimpleNamespace
from typing import Any

import z3

from ledger.core.flags import AccountFlags, TransferFlags
from ledger.core.limits import ID_MAX, NS_PER_SECOND
from ledger.core.results import TRANSIENT_RESULTS
from proofs.obligations_base import (
    ACCOUNT_W,
    EXPIRED,
    GHOSTS,
    LEDGER_W,
    NONE,
    PENDING,
    POSTED,
    TOTALS,
    TRANSFER_W,
    VOIDED,
    Obligation,
    Step,
    step_sanity,
    step_watch,
)
from proofs.z3ops import Z3, as_bool


def functional_obligations(
    kernel: ModuleType, spec: ModuleType, steps: Sequence[Step]
) -> list[Obligation]:
    by_kind = {s.kind: s for s in steps}
    return [
        *transfer_spec(spec, by_kind["create_transfer"], kernel.MAP_FIELDS),
        *account_spec(by_kind["create_account"], kernel.MAP_FIELDS),
        *expiry_spec(by_kind["expire_pending"], kernel.MAP_FIELDS),
    ]


def _obligation(
    step: Step, name: str, goal: Any, requirement: tuple[str, ...] = ("L3",)
) -> Obligation:
    return Obligation(
        name=f"spec.{step.kind}.{name}",
        requirement=requirement,
        hypotheses=tuple(step.hypotheses),
        goal=goal,
        sanity=step_sanity(step),
        watch=tuple(step_watch(step)),
    )


def unchanged(step: Step, fields: Sequence[str]) -> Any:
    """The named maps are equal, as arrays, before and after the step."""
    return z3.And(*[getattr(step.post, f) == getattr(step.pre, f) for f in fields])


def flags_value(bits: Sequence[tuple[Any, int]]) -> Any:
    return z3.Sum(*[z3.If(bit, int(value), 0) for bit, value in bits])


# --- create_transfer --------------------------------------------------------------------------


def transfer_pre(spec: ModuleType, step: Step) -> SimpleNamespace:
    """The `pre` record `specs.ledger.transfer_accepted` reads, from the symbolic state."""
    s, t, v = step.pre, step.event, step.view
    dr, cr, p = v["dr"], v["cr"], v["p"]
    pre = SimpleNamespace(
        exists=s.transfer_exists[t.id],
        failed=s.failed[t.id],
        dr_exists=s.account_exists[dr],
        cr_exists=s.account_exists[cr],
        dr_ledger=s.account_ledger[dr],
        cr_ledger=s.account_ledger[cr],
        dr_closed=s.account_closed[dr],
        cr_closed=s.account_closed[cr],
        dr_debits_guard=s.account_debits_guard[dr],
        cr_credits_guard=s.account_credits_guard[cr],
        p_exists=s.transfer_exists[p],
        p_status=s.transfer_status[p],
        p_amount=s.transfer_amount[p],
        p_dr=s.transfer_debit_account_id[p],
        p_cr=s.transfer_credit_account_id[p],
        p_ledger=s.transfer_ledger[p],
        p_code=s.transfer_code[p],
        p_expires_at=s.transfer_expires_at[p],
        **_account_totals(s, dr, cr),
    )
    pre.moved = spec.moved_amount(Z3, t, pre)
    return pre


def _account_totals(s: Any, dr: Any, cr: Any) -> dict[str, Any]:
    short = dict(zip(TOTALS, ("dp", "dpo", "cp", "cpo"), strict=True))
    totals = {}
    for side, k in (("dr", dr), ("cr", cr)):
        for total, name in short.items():
            totals[f"{side}_{name}"] = getattr(s, total)[k]
    return totals


def transfer_spec(spec: ModuleType, step: Step, map_fields: Sequence[str]) -> list[Obligation]:
    t, ok = step.event, step.accepted
    pre = transfer_pre(spec, step)
    post = SimpleNamespace(**_account_totals(step.post, step.view["dr"], step.view["cr"]))
    accepted = as_bool(spec.transfer_accepted(Z3, t, pre, step.ts))
    effect = as_bool(spec.transfer_effect(Z3, t, pre, post))
    return [
        _obligation(step, "accepted_iff", ok == accepted, ("L1", "L3", "L4", "L5", "L7")),
        _obligation(step, "effect", z3.Implies(ok, effect), ("L3", "L5")),
        _obligation(step, "record", z3.Implies(ok, _transfer_record(step, pre)), ("L3", "L4")),
        _obligation(step, "frame", z3.Implies(ok, _transfer_frame(step, map_fields)), ("L3",)),
        _obligation(
            step,
            "rejection_changes_only_failed",
            z3.Implies(z3.Not(ok), _transfer_rejection(step, map_fields)),
            ("L4", "L6"),
        ),
    ]


def _transfer_record(step: Step, pre: SimpleNamespace) -> Any:
    """What an accepted transfer stores under its id (and on its pending transfer)."""
    s, t, v, ts = step.post, step.event, step.view, step.ts
    i, p = t.id, v["p"]
    flags = flags_value(
        [
            (t.linked, TransferFlags.LINKED),
            (t.pending, TransferFlags.PENDING),
            (t.post_pending, TransferFlags.POST_PENDING),
            (t.void_pending, TransferFlags.VOID_PENDING),
            (t.balancing_debit, TransferFlags.BALANCING_DEBIT),
            (t.balancing_credit, TransferFlags.BALANCING_CREDIT),
        ]
    )
    expires_at = z3.If(z3.And(t.pending, t.timeout != 0), ts + t.timeout * NS_PER_SECOND, 0)
    return z3.And(
        s.transfer_exists[i],
        s.transfer_debit_account_id[i] == v["dr"],
        s.transfer_credit_account_id[i] == v["cr"],
        s.transfer_amount[i] == pre.moved,
        s.transfer_pending_id[i] == t.pending_id,
        s.transfer_timeout[i] == t.timeout,
        s.transfer_ledger[i] == v["ledger"],
        s.transfer_code[i] == v["code"],
        s.transfer_user_data[i] == t.user_data,
        s.transfer_flags[i] == flags,
        s.transfer_timestamp[i] == ts,
        s.transfer_expires_at[i] == expires_at,
        s.transfer_status[i] == z3.If(t.pending, PENDING, NONE),
        z3.Implies(v["resolving"], s.transfer_status[p] == z3.If(t.post_pending, POSTED, VOIDED)),
    )


def _transfer_frame(step: Step, map_fields: Sequence[str]) -> Any:
    """Every other account, transfer and ledger is unchanged; nothing is marked failed."""
    pre, post, v = step.pre, step.post, step.view
    k, j, led = ACCOUNT_W, TRANSFER_W, LEDGER_W
    transfer_maps = [f for f in map_fields if f.startswith("transfer_") and f != "transfer_status"]
    account_maps = [f for f in map_fields if f.startswith("account_")]
    return z3.And(
        z3.Implies(
            z3.And(k != v["dr"], k != v["cr"]),
            z3.And(*[getattr(post, f)[k] == getattr(pre, f)[k] for f in TOTALS]),
        ),
        unchanged(step, account_maps),
        z3.Implies(
            j != v["id"],
            z3.And(*[getattr(post, f)[j] == getattr(pre, f)[j] for f in transfer_maps]),
        ),
        z3.Implies(
            z3.And(j != v["id"], j != v["p"]), post.transfer_status[j] == pre.transfer_status[j]
        ),
        z3.Implies(
            led != v["ledger"],
            z3.And(*[getattr(post, f)[led] == getattr(pre, f)[led] for f in GHOSTS]),
        ),
        post.failed == pre.failed,
    )


def _transfer_rejection(step: Step, map_fields: Sequence[str]) -> Any:
    """Every map as before, except that `failed[t.id]` becomes true on a transient code."""
    i = step.event.id
    transient = z3.Or(*[step.code == int(r) for r in TRANSIENT_RESULTS])
    failed = z3.Store(step.pre.failed, i, z3.Or(step.pre.failed[i], transient))
    return z3.And(
        unchanged(step, [f for f in map_fields if f != "failed"]), step.post.failed == failed
    )


# --- create_account ---------------------------------------------------------------------------


def account_spec(step: Step, map_fields: Sequence[str]) -> list[Obligation]:
    a, ok, s = step.event, step.accepted, step.pre
    accepted = z3.And(
        a.timestamp == 0,
        z3.Not(a.reserved_flags),
        a.id != 0,
        a.id != ID_MAX,
        z3.Not(s.account_exists[a.id]),
        z3.Not(z3.And(a.debits_guard, a.credits_guard)),
        a.debits_pending == 0,
        a.debits_posted == 0,
        a.credits_pending == 0,
        a.credits_posted == 0,
        a.ledger != 0,
        a.code != 0,
    )
    return [
        _obligation(step, "accepted_iff", ok == accepted, ("L1", "L3", "L4")),
        _obligation(step, "effect_and_frame", z3.Implies(ok, _account_effect(step, map_fields))),
        _obligation(
            step,
            "rejection_changes_nothing",
            z3.Implies(z3.Not(ok), unchanged(step, map_fields)),
            ("L4", "L6"),
        ),
    ]


def _account_effect(step: Step, map_fields: Sequence[str]) -> Any:
    a, s, ts, i, k = step.event, step.post, step.ts, step.event.id, ACCOUNT_W
    flags = flags_value(
        [
            (a.linked, AccountFlags.LINKED),
            (a.debits_guard, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
            (a.credits_guard, AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
            (a.history, AccountFlags.HISTORY),
            (a.closed, AccountFlags.CLOSED),
        ]
    )
    account_maps = [f for f in map_fields if f.startswith("account_")]
    return z3.And(
        s.account_exists[i],
        s.account_ledger[i] == a.ledger,
        s.account_code[i] == a.code,
        s.account_user_data[i] == a.user_data,
        s.account_flags[i] == flags,
        s.account_debits_guard[i] == a.debits_guard,
        s.account_credits_guard[i] == a.credits_guard,
        s.account_closed[i] == a.closed,
        s.account_timestamp[i] == ts,
        *[getattr(s, total)[i] == 0 for total in TOTALS],
        z3.Implies(
            k != i, z3.And(*[getattr(s, f)[k] == getattr(step.pre, f)[k] for f in account_maps])
        ),
        unchanged(step, [f for f in map_fields if f not in account_maps]),
    )


# --- expire_pending ---------------------------------------------------------------------------


def expiry_spec(step: Step, map_fields: Sequence[str]) -> list[Obligation]:
    s, p, due = step.pre, step.event, step.accepted
    expires_at = s.transfer_expires_at[p]
    should = z3.And(s.transfer_status[p] == PENDING, expires_at != 0, expires_at <= step.ts)
    return [
        _obligation(step, "due_iff", due == should, ("L5",)),
        _obligation(
            step,
            "effect_and_frame",
            z3.Implies(due, _expiry_effect(step, map_fields)),
            ("L2", "L5"),
        ),
        _obligation(
            step,
            "not_due_changes_nothing",
            z3.Implies(z3.Not(due), unchanged(step, map_fields)),
            ("L5",),
        ),
    ]


def _expiry_effect(step: Step, map_fields: Sequence[str]) -> Any:
    pre, post, p, v = step.pre, step.post, step.event, step.view
    amount, k, j, led = pre.transfer_amount[p], ACCOUNT_W, TRANSFER_W, LEDGER_W
    written = {
        "debits_pending",
        "credits_pending",
        "transfer_status",
        "ledger_debits_pending",
        "ledger_credits_pending",
    }
    return z3.And(
        post.transfer_status[p] == EXPIRED,
        post.debits_pending[v["dr"]] == pre.debits_pending[v["dr"]] - amount,
        post.credits_pending[v["cr"]] == pre.credits_pending[v["cr"]] - amount,
        post.ledger_debits_pending[v["ledger"]] == pre.ledger_debits_pending[v["ledger"]] - amount,
        post.ledger_credits_pending[v["ledger"]]
        == pre.ledger_credits_pending[v["ledger"]] - amount,
        z3.Implies(k != v["dr"], post.debits_pending[k] == pre.debits_pending[k]),
        z3.Implies(k != v["cr"], post.credits_pending[k] == pre.credits_pending[k]),
        z3.Implies(j != p, post.transfer_status[j] == pre.transfer_status[j]),
        z3.Implies(
            led != v["ledger"],
            z3.And(
                post.ledger_debits_pending[led] == pre.ledger_debits_pending[led],
                post.ledger_credits_pending[led] == pre.ledger_credits_pending[led],
            ),
        ),
        unchanged(step, [f for f in map_fields if f not in written]),
    )
