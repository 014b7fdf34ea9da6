"""Named seeded bugs that the Z3 obligations must reject (a proof that cannot fail proves nothing).

Each mutant is one source-text replacement in ledger/core/kernel.py or ledger/metering/allocate.py
(or in specs/ledger.py or specs/metering.py, to show that the spec bites). The mutated text is
compiled into a fresh module, so the report shows exactly what changed, and `run()` discharges
every obligation of the mutated file's family in proofs/z3proofs.py against it ("kernel" for
kernel.py and specs/ledger.py, "allocation" for allocate.py and specs/metering.py: the other
family never runs the mutated code); the obligations that fail are the mutant's `killed_by`. An
original text must occur exactly once in the current source (checked before loading), so a mutant
can never silently become a no-op.
"""

from __future__ import annotations

import sys
import time
import types

from ledger.seeded import Mutant, MutantError, mutated_source, occurrences
from proofs import z3proofs
from proofs.report import MutantOutcome

__all__ = ["MUTANTS", "Mutant", "MutantError", "occurrences", "run", "run_one"]

KERNEL = "ledger/core/kernel.py"
SPEC = "specs/ledger.py"
ALLOCATE = "ledger/metering/allocate.py"
METERING_SPEC = "specs/metering.py"
FAMILY = {KERNEL: "kernel", SPEC: "kernel", ALLOCATE: "allocation", METERING_SPEC: "allocation"}
"""The obligation family that runs each mutable file (see proofs/z3proofs.py)."""


_GUARD = "dr_pending + a.dr_debits_posted + amount > a.dr_credits_posted"

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "overdraft_guard_removed",
        "a guarded debit account may be debited beyond its credits (guard never checked)",
        KERNEL,
        _GUARD,
        "False",
    ),
    Mutant(
        "pending_debits_not_counted_in_guard",
        "the guard ignores money held by pending debits, so holds can be overspent",
        KERNEL,
        _GUARD,
        "a.dr_debits_posted + amount > a.dr_credits_posted",
    ),
    Mutant(
        "guard_over_restrictive",
        "`<=` turned into `<` in the guard: spending the exact balance is refused",
        KERNEL,
        _GUARD,
        "dr_pending + a.dr_debits_posted + amount >= a.dr_credits_posted",
    ),
    Mutant(
        "pending_posted_twice",
        "a post does not move the pending transfer's status, so it can be posted again",
        KERNEL,
        "resolved_status = ops.ite(t.post_pending, STATUS_POSTED, STATUS_VOIDED)",
        "resolved_status = ops.ite(t.post_pending, STATUS_PENDING, STATUS_VOIDED)",
    ),
    Mutant(
        "post_above_pending_amount",
        "a post may move up to twice the pending amount",
        KERNEL,
        "ops.and_(t.post_pending, t.amount > v.pending_amount),",
        "ops.and_(t.post_pending, t.amount > 2 * v.pending_amount),",
    ),
    Mutant(
        "transfer_exists_check_removed",
        "an existing transfer id is applied again (only ID_ALREADY_FAILED is kept)",
        KERNEL,
        "*_exists_checks(s, t, v, ops),",
        "*_exists_checks(s, t, v, ops)[-1:],",
    ),
    Mutant(
        "account_exists_check_removed",
        "re-creating an existing account with the same body overwrites it",
        KERNEL,
        "(exists, Result.EXISTS),",
        "(False, Result.EXISTS),",
    ),
    Mutant(
        "chain_partly_applied",
        "apply_chain keeps the events before the failing one (no rollback)",
        KERNEL,
        "final = select_state(ops, failed_so_far, rolled_back, current)",
        "final = current",
    ),
    Mutant(
        "chain_forgets_transient_failure",
        "a failed linked chain is undone together with its failing event's remembered transient "
        "failure, so a retry of that id could later be accepted",
        KERNEL,
        "rolled_back = dataclasses.replace(s, failed=current.failed, timestamp=current.timestamp)",
        "rolled_back = dataclasses.replace(s, timestamp=current.timestamp)",
    ),
    Mutant(
        "overflow_check_removed",
        "OVERFLOWS_DEBITS is never returned, so pending + posted debits pass AMOUNT_MAX",
        KERNEL,
        "ops.and_(not_void, dr_pending - released + a.dr_debits_posted + amount > AMOUNT_MAX),",
        "ops.and_(not_void, False),",
    ),
    Mutant(
        "balancing_takes_more_than_available",
        "a balancing debit ignores pending holds when computing what is available",
        KERNEL,
        "debit_room = _clamp_zero(ops, a.dr_credits_posted - a.dr_debits_posted"
        " - a.dr_debits_pending)",
        "debit_room = _clamp_zero(ops, a.dr_credits_posted - a.dr_debits_posted)",
    ),
    Mutant(
        "expired_pending_still_postable",
        "a pending transfer past its timeout but not yet swept can still be posted or voided",
        KERNEL,
        "(resolving(expired), Result.PENDING_TRANSFER_EXPIRED),",
        "(resolving(v.pending_status == STATUS_EXPIRED), Result.PENDING_TRANSFER_EXPIRED),",
    ),
    Mutant(
        "expiry_ignores_status",
        "a posted or voided transfer is expired again, releasing its amount a second time",
        KERNEL,
        "ops.get(s.transfer_status, p) == STATUS_PENDING, expires_at != 0",
        "ops.get(s.transfer_status, p) != STATUS_NONE, expires_at != 0",
    ),
    Mutant(
        "failed_id_later_accepted",
        "the ID_ALREADY_FAILED check is removed: a transiently failed id is accepted later",
        KERNEL,
        "checks.append((ops.get(s.failed, i), Result.ID_ALREADY_FAILED))",
        "checks.append((False, Result.ID_ALREADY_FAILED))",
    ),
    Mutant(
        "credit_posted_twice",
        "the credit side posts twice the amount",
        KERNEL,
        "credits_posted=add(s.credits_posted, cr, posted_added),",
        "credits_posted=add(s.credits_posted, cr, 2 * posted_added),",
    ),
    Mutant(
        "void_releases_wrong_amount",
        "a void releases the amount it names (0 means all) instead of the pending amount",
        KERNEL,
        "released = ops.ite(ops.and_(ok, v.resolving), v.pending_amount, 0)",
        "released = ops.ite(ops.and_(ok, v.resolving), "
        "ops.ite(t.void_pending, t.amount, v.pending_amount), 0)",
    ),
    Mutant(
        "closed_debit_account_debitable",
        "a closed debit account can still be debited",
        KERNEL,
        "(ops.and_(not_void, ops.get(s.account_closed, dr)), Result.DEBIT_ACCOUNT_ALREADY_CLOSED),",
        "(ops.and_(not_void, False), Result.DEBIT_ACCOUNT_ALREADY_CLOSED),",
    ),
    Mutant(
        "expiry_ghost_credits_not_released",
        "an expiry does not update the per-ledger pending credits total",
        KERNEL,
        "ledger_credits_pending=sub(s.ledger_credits_pending, ledger),",
        "ledger_credits_pending=s.ledger_credits_pending,",
    ),
    Mutant(
        "spec_guard_strict",
        "spec: L1 demands debits strictly below credits (the kernel rightly allows equality)",
        SPEC,
        "ops.or_(ops.not_(debits_guard), dp + dpo <= cpo),",
        "ops.or_(ops.not_(debits_guard), dp + dpo < cpo),",
    ),
    Mutant(
        "spec_acceptance_without_guard",
        "spec: transfer_accepted forgets the debit guard",
        SPEC,
        "ops.or_(ops.not_(pre.dr_debits_guard), pre.dr_dp + pre.dr_dpo + pre.moved <= pre.dr_cpo),",
        "True,",
    ),
    Mutant(
        "spec_effect_without_release",
        "spec: transfer_effect forgets that a post or void releases the pending amount",
        SPEC,
        "released = ops.ite(resolving, pre.p_amount, 0)",
        "released = ops.ite(resolving, 0, 0)",
    ),
    # --- M3: the waterfall's allocation (ledger/metering/allocate.py, specs/metering.py) ---
    Mutant(
        "allocation_exact_fit_refused",
        "`<=` turned into `<`: a request the layers cover exactly is refused (over-restrictive)",
        ALLOCATE,
        "allowed = request <= total",
        "allowed = request < total",
    ),
    Mutant(
        "allocation_total_off_by_one",
        "the layers' total counts one unit more than they have, so a request one unit short is "
        "allowed and then not fully covered",
        ALLOCATE,
        "total: Any = 0",
        "total: Any = 1",
    ),
    Mutant(
        "refused_decision_still_takes",
        "the all-or-nothing `ite` is dropped: a refused decision still takes what the layers have",
        ALLOCATE,
        "ops.ite(allowed, part, 0)",
        "part",
    ),
    Mutant(
        "later_layer_drawn_first",
        "the layers are drawn in reverse plan order (credits spent while the free allowance has "
        "room); every part is within its room and they sum to the request",
        ALLOCATE,
        "fill(ops, request, rooms)",
        "fill(ops, request, rooms[::-1])[::-1]",
    ),
    Mutant(
        "take_above_room",
        "`left < room` turned into `left > room`: a layer gives the larger of what is left and "
        "its room, so it can give more than it has",
        ALLOCATE,
        "take = ops.ite(left < room, left, room)",
        "take = ops.ite(left > room, left, room)",
    ),
    Mutant(
        "partly_usable_layer_skipped",
        "a layer that cannot cover all that is left gives nothing, so the rest spills past it "
        "while it still has room",
        ALLOCATE,
        "take = ops.ite(left < room, left, room)",
        "take = ops.ite(left < room, 0, room)",
    ),
    Mutant(
        "left_not_decreased",
        "what a layer gave is not subtracted, so every layer gives up to the whole request",
        ALLOCATE,
        "left = left - take",
        "left = left",
    ),
    Mutant(
        "whole_room_counted_as_used",
        "a partly drawn layer is subtracted in full, so later layers get a negative part",
        ALLOCATE,
        "left = left - take",
        "left = left - room",
    ),
    Mutant(
        "spec_waterfall_ignores_draw",
        "spec: waterfall_order demands every earlier layer be full even when a layer gives "
        "nothing (the code rightly leaves later layers untouched)",
        METERING_SPEC,
        "ops.or_(parts[j] <= 0, ",
        "ops.or_(parts[j] < 0, ",
    ),
)


def load(m: Mutant) -> types.ModuleType:
    """The mutated file as a fresh module (the real modules are untouched)."""
    text = mutated_source(m)
    name = f"_mutant_{m.name}"
    module = types.ModuleType(name)
    module.__file__ = f"<mutant {m.name} of {m.file}>"
    # dataclasses looks the defining module up in sys.modules, so it must be there while the
    # classes are created; it is removed again so that nothing else can import it.
    sys.modules[name] = module
    try:
        exec(compile(text, module.__file__, "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module


def run_one(m: Mutant) -> MutantOutcome:
    """Every Z3 obligation of `m`'s family against mutant `m`; the failing ones are its killers."""
    start = time.perf_counter()
    module = load(m)
    family = (FAMILY[m.file],)
    if m.file == KERNEL:
        outcomes = z3proofs.run(kernel_module=module, families=family)
    elif m.file == SPEC:
        outcomes = z3proofs.run(spec_module=module, families=family)
    elif m.file == ALLOCATE:
        outcomes = z3proofs.run(allocate_module=module, families=family)
    else:
        outcomes = z3proofs.run(metering_spec_module=module, families=family)
    killed_by = tuple(o.obligation for o in outcomes if not o.holds)
    return MutantOutcome(m.name, m.description, killed_by, time.perf_counter() - start)


def run() -> list[MutantOutcome]:
    """Every mutant, in declaration order."""
    return [run_one(m) for m in MUTANTS]
