"""Differential test: the fast engine (`Ledger`) against the reference (`ReferenceLedger`, the
transition kernel that the proofs are about) on random sequences of batches.

After every batch the results must be identical and so must the states, compared through one
converter per side into a common plain-dict form: every account's fields and totals, every
transfer's stored fields and timestamp, pending statuses, failed ids, the ledger's timestamp, the
expiries journal and the per-ledger totals. The engine's state is also checked against the
invariants of specs/ledger.py after every batch.

Four scenario families: general random batches (10,000 examples in the "ci" profile), pending
transfers resolved a few nanoseconds around their deadlines, balancing transfers against held
and guarded balances, and batches near the end of time.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import (
    NS_PER_SECOND,
    Account,
    AccountFlags,
    Ledger,
    LedgerError,
    Result,
    Transfer,
    apply,
)
from ledger.core import kernel
from ledger.core.limits import TIMESTAMP_MAX_NS
from ledger.core.reference import ReferenceLedger
from specs import ledger as spec

from .strategies import (
    LINKED,
    balancing_scenarios,
    engine_view,
    scaled,
    scenarios,
    two_phase_scenarios,
)

Event = Account | Transfer
View = dict[str, Any]


# --- one converter per side into the common form --------------------------------------------


def reference_view(reference: ReferenceLedger, expiries: list[tuple[int, int, int]]) -> View:
    """The reference keeps no expiries journal: `expiries` is derived batch by batch by
    `reference_expiries`."""
    s = reference.state
    accounts = {
        i: {
            "id": i,
            "ledger": s.account_ledger[i],
            "code": s.account_code[i],
            "flags": s.account_flags[i],
            "user_data": s.account_user_data[i],
            "debits_pending": s.debits_pending[i],
            "debits_posted": s.debits_posted[i],
            "credits_pending": s.credits_pending[i],
            "credits_posted": s.credits_posted[i],
            "timestamp": s.account_timestamp[i],
        }
        for i in s.account_exists
    }
    transfers = {
        i: {
            "id": i,
            "debit_account_id": s.transfer_debit_account_id[i],
            "credit_account_id": s.transfer_credit_account_id[i],
            "amount": s.transfer_amount[i],
            "pending_id": s.transfer_pending_id[i],
            "timeout": s.transfer_timeout[i],
            "ledger": s.transfer_ledger[i],
            "code": s.transfer_code[i],
            "user_data": s.transfer_user_data[i],
            "flags": s.transfer_flags[i],
            "timestamp": s.transfer_timestamp[i],
        }
        for i in s.transfer_exists
    }
    ghost = (
        s.ledger_debits_pending,
        s.ledger_debits_posted,
        s.ledger_credits_pending,
        s.ledger_credits_posted,
    )
    ledger_ids = set().union(*ghost)
    return {
        "accounts": accounts,
        "transfers": transfers,
        "pending_status": dict(s.transfer_status.items()),
        "failed": sorted(s.failed),
        "timestamp": s.timestamp,
        "expiries": list(expiries),
        "ledger_totals": {
            ledger_id: sums
            for ledger_id in ledger_ids
            if any(sums := tuple(m[ledger_id] for m in ghost))
        },
    }


def reference_expiries(
    before: kernel.KernelState, after: kernel.KernelState, now: int
) -> list[tuple[int, int, int]]:
    """The expiries a reference batch performed, as journal entries: the pending transfers it
    moved to EXPIRED, which take the batch's first timestamps in order of (deadline, creation)."""
    expired = [
        i
        for i, status in after.transfer_status.items()
        if status == kernel.STATUS_EXPIRED and before.transfer_status[i] != kernel.STATUS_EXPIRED
    ]
    expired.sort(key=lambda i: (after.transfer_expires_at[i], after.transfer_timestamp[i]))
    start = max(now, before.timestamp + 1)
    return [(i, after.transfer_amount[i], start + k) for k, i in enumerate(expired)]


# --- engine-only checks ----------------------------------------------------------------------


def chains(events: list[Event], results: list[Result]) -> list[list[int]]:
    """The results of each linked chain of the batch (a chain ends at its first unlinked event
    or at the end of the batch)."""
    grouped: list[list[int]] = []
    current: list[int] = []
    for event, result in zip(events, results, strict=True):
        current.append(int(result))
        if not event.flags & LINKED:
            grouped.append(current)
            current = []
    if current:
        grouped.append(current)
    return [chain for chain in grouped if len(chain) > 1]


def assert_engine_invariants(ledger: Ledger) -> None:
    accounts = list(ledger.accounts())
    transfers = list(ledger.transfers())
    expiries = ledger.expiries()
    assert [a.id for a in accounts if not spec.account_within_limits(a)] == []
    assert spec.ledgers_balance(accounts) == []
    assert spec.replay_mismatches(accounts, transfers, expiries) == []
    assert spec.journal_violations(transfers, expiries) == []
    for a in accounts:
        history = ledger.history(a.id)
        if not a.flags & AccountFlags.HISTORY:
            assert history == []
            continue
        stamps = [h.timestamp for h in history]
        assert stamps == sorted(set(stamps)), (a.id, stamps)
        totals = (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        if history:
            last = history[-1]
            kept = (
                last.debits_pending,
                last.debits_posted,
                last.credits_pending,
                last.credits_posted,
            )
            assert kept == totals, (a.id, kept, totals)
        else:
            assert totals == (0, 0, 0, 0), a.id


# --- the harness -----------------------------------------------------------------------------


Outcome = tuple[str, Any]  # ("ok", result codes) or ("error", the exception's class name)


def engine_outcome(engine: Ledger, events: list[Event], now: int) -> Outcome:
    try:
        return "ok", [int(r) for r in engine.apply(events, now)]
    except LedgerError as error:
        return "error", type(error).__name__


def reference_outcome(
    reference: ReferenceLedger, events: list[Event], now: int
) -> tuple[Outcome, ReferenceLedger]:
    try:
        new, results = reference.apply(events, now)
    except LedgerError as error:
        return ("error", type(error).__name__), reference
    return ("ok", [int(r) for r in results]), new


def run_both(scenario: list[tuple[list[Event], int]], require_ok: bool) -> None:
    """Apply each batch to both ledgers; after each, the outcomes and the states must agree
    and the engine must satisfy the invariants. A refused batch must change nothing."""
    engine = Ledger()
    reference = ReferenceLedger.empty()
    journal: list[tuple[int, int, int]] = []
    for number, (events, now) in enumerate(scenario):
        engine_before = engine_view(engine)
        reference_before = reference.state
        outcome = engine_outcome(engine, events, now)
        expected, reference = reference_outcome(reference, events, now)
        where = f"batch {number} at now={now}"
        assert outcome == expected, where
        if require_ok:
            assert outcome[0] == "ok", (where, outcome)
        if outcome[0] == "error":
            assert engine_view(engine) == engine_before, where
            continue
        journal += reference_expiries(reference_before, reference.state, now)
        assert engine_view(engine) == reference_view(reference, journal), where
        assert spec.chain_all_or_nothing(chains(events, outcome[1])), where
        assert_engine_invariants(engine)


@given(scenarios())
@settings(max_examples=scaled(10_000))
def test_engine_matches_reference(scenario: list[tuple[list[Event], int]]) -> None:
    run_both(scenario, require_ok=True)


@given(two_phase_scenarios())
@settings(max_examples=scaled(2_000))
def test_engine_matches_reference_around_deadlines(
    scenario: list[tuple[list[Event], int]],
) -> None:
    run_both(scenario, require_ok=True)


@given(balancing_scenarios())
@settings(max_examples=scaled(2_000))
def test_engine_matches_reference_on_balancing(scenario: list[tuple[list[Event], int]]) -> None:
    run_both(scenario, require_ok=True)


# Near the end of time: `now` within a few seconds of TIMESTAMP_MAX_NS, so batches may not fit.
_end_of_time = st.sampled_from(
    (
        TIMESTAMP_MAX_NS - 6 * NS_PER_SECOND,
        TIMESTAMP_MAX_NS - 4 * NS_PER_SECOND - 3,
        TIMESTAMP_MAX_NS - 2 * NS_PER_SECOND,
    )
)


@given(scenarios(epoch=_end_of_time))
@settings(max_examples=scaled(1_000))
def test_engine_matches_reference_near_the_end_of_time(
    scenario: list[tuple[list[Event], int]],
) -> None:
    run_both(scenario, require_ok=False)


# --- the pure form ---------------------------------------------------------------------------


@given(scenarios())
@settings(max_examples=scaled(500))
def test_pure_apply_leaves_its_input_unchanged(scenario: list[tuple[list[Event], int]]) -> None:
    in_place = Ledger()
    state = Ledger()
    kept: list[tuple[Ledger, View]] = []
    for events, now in scenario:
        before = engine_view(state, history=True)
        new_state, results = apply(state, events, now)
        assert engine_view(state, history=True) == before
        assert results == in_place.apply(events, now)
        assert engine_view(new_state, history=True) == engine_view(in_place, history=True)
        kept.append((state, before))
        state = new_state
    # Later batches on the new states never reach back into the old ones.
    for old, view in kept:
        assert engine_view(old, history=True) == view
