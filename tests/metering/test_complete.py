"""`Meter.complete`: settling a decision with the units actually used (DESIGN.md, "Decided edge
cases of the waterfall", Completion).

At the reservation everything is posted; below it the difference is released from the last
layers first (money voided before window room is returned); above it the excess goes through the
waterfall at completion time and what no layer covers is written off. A completion after the
holds expired charges afresh. Each test checks the ledger exactly (revenue credits, the
customer's debits, write-offs) and double entry over every account.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.types import PendingStatus
from ledger.metering import (
    Charge,
    Completion,
    CompletionConflictError,
    InvalidRequestError,
    Meter,
    UnknownDecisionError,
    plan_from_data,
)
from ledger.metering import accounts as acc
from ledger.metering.accounts import Code
from tests.core.strategies import scaled

from .fixtures import (
    CREDITS,
    HOUR,
    MINUTE,
    NS,
    T0,
    allowance_layer,
    assert_double_entry,
    credits_account,
    feature,
    ledger_snapshot,
    make_meter,
    plan_data,
    platform,
    snapshot,
    window,
    window_used,
    windows_layer,
    windows_snapshot,
)

F = "codex.task"
PRICE = 7
W = 10  # the window's limit (plan B)
BALANCE = 1000 * PRICE


def money_only(timeout: int | None = None) -> Meter:
    """Plan A: credits only."""
    meter = make_meter({F: feature(CREDITS, timeout=timeout)}, {F: PRICE})
    meter.add_customer("alice", "pro", T0)
    return meter


def windows_then_credits(timeout: int | None = None) -> Meter:
    """Plan B: a one-hour window of W units, then credits."""
    meter = make_meter(
        {F: feature(windows_layer(window("1h", "1h", W)), CREDITS, timeout=timeout)}, {F: PRICE}
    )
    meter.add_customer("alice", "pro", T0)
    return meter


FREE = ("windows", "allowance")


def charges(completion: Completion) -> list[tuple[str, int, int, int]]:
    """The money charges (free layers are monetized at 0 and checked by `free_units`)."""
    return [
        (c.layer, c.units, c.amount, c.account_id)
        for c in completion.charges
        if c.layer not in FREE
    ]


def _money(completion: Completion) -> list[tuple[Charge, int]]:
    return [(c, c.amount) for c in completion.charges if c.layer not in ("write_off", *FREE)]


def free_units(completion: Completion) -> dict[str, int]:
    return {c.layer: c.units for c in completion.charges if c.layer in FREE}


def test_every_used_unit_is_monetized_once() -> None:
    """M6: the units of a completion's charges (free layers at 0) add up to the actual."""
    meter = windows_then_credits()
    meter.purchase("alice", BALANCE, "p1", T0)
    d = meter.decide("alice", F, W + 15, "k1", T0)
    c = meter.complete(d.decision_id, W + 20, T0 + MINUTE)
    assert sum(x.units for x in c.charges) == W + 20
    assert free_units(c)["windows"] == W
    assert all(x.amount == 0 for x in c.charges if x.layer in FREE)


def used(meter: Meter, now: int) -> int:
    return window_used(meter, "alice", F, "1h", HOUR, now)


def revenue(meter: Meter) -> int:
    return platform(meter, Code.REVENUE).credits_posted


def customer_debits(meter: Meter) -> tuple[int, int]:
    a = credits_account(meter, "alice")
    return a.debits_posted, a.debits_pending


CUSTOMER = acc.customer_account("alice")
WRITE_OFF = acc.platform_account(Code.WRITE_OFF)


# --- at, below and above the reservation ---------------------------------------------------------


def test_at_the_reservation_everything_is_posted_and_nothing_voided() -> None:
    meter = money_only()
    meter.purchase("alice", BALANCE, "p1", T0)
    units = 15
    d = meter.decide("alice", F, units, "k1", T0)
    [hold] = d.parts

    c = meter.complete(d.decision_id, units, T0 + MINUTE)

    assert charges(c) == [("credits", units, units * PRICE, CUSTOMER)]
    assert c.charged == units * PRICE
    assert (c.released_units, c.released_amount, c.written_off) == (0, 0, 0)
    assert meter.store.pending_status(hold.transfer_id) == PendingStatus.POSTED
    assert customer_debits(meter) == (units * PRICE, 0)
    assert revenue(meter) == units * PRICE
    assert meter.balances("alice")["credits"] == BALANCE - units * PRICE
    assert_double_entry(meter)


def test_at_the_reservation_a_window_part_stays_counted() -> None:
    meter = windows_then_credits()
    meter.purchase("alice", BALANCE, "p1", T0)
    units = W + 15
    d = meter.decide("alice", F, units, "k1", T0)

    c = meter.complete(d.decision_id, units, T0 + MINUTE)

    assert charges(c) == [("credits", units - W, (units - W) * PRICE, CUSTOMER)]
    assert (c.released_units, c.released_amount, c.written_off) == (0, 0, 0)
    assert used(meter, T0 + MINUTE) == W
    assert customer_debits(meter) == ((units - W) * PRICE, 0)
    assert revenue(meter) == (units - W) * PRICE
    assert_double_entry(meter)


def test_below_the_reservation_the_actual_is_posted_and_the_rest_released() -> None:
    meter = money_only()
    meter.purchase("alice", BALANCE, "p1", T0)
    units, actual = 15, 9
    d = meter.decide("alice", F, units, "k1", T0)

    c = meter.complete(d.decision_id, actual, T0 + MINUTE)

    assert charges(c) == [("credits", actual, actual * PRICE, CUSTOMER)]
    assert (c.released_units, c.released_amount) == (units - actual, (units - actual) * PRICE)
    assert c.written_off == 0
    assert customer_debits(meter) == (actual * PRICE, 0)
    assert revenue(meter) == actual * PRICE
    assert meter.balances("alice")["credits"] == BALANCE - actual * PRICE
    assert_double_entry(meter)


@pytest.mark.parametrize("actual", [1, 4, W - 1, W, W + 1, W + 7, W + 14])
def test_below_the_reservation_money_is_released_before_window_room(actual: int) -> None:
    meter = windows_then_credits()
    meter.purchase("alice", BALANCE, "p1", T0)
    units = W + 15
    d = meter.decide("alice", F, units, "k1", T0)
    assert [(p.layer, p.units) for p in d.parts] == [("windows", W), ("credits", units - W)]
    later = T0 + MINUTE

    c = meter.complete(d.decision_id, actual, later)

    money_kept = max(0, actual - W)  # the credits part is the last: it gives back first
    window_kept = min(actual, W)  # window room comes back only once all money is released
    assert used(meter, later) == window_kept
    assert customer_debits(meter) == (money_kept * PRICE, 0)
    assert revenue(meter) == money_kept * PRICE
    assert c.released_units == units - actual
    assert c.released_amount == (units - W - money_kept) * PRICE
    assert c.charged == money_kept * PRICE
    assert_double_entry(meter)


def test_above_the_reservation_the_excess_is_charged_from_the_balance() -> None:
    meter = money_only()
    meter.purchase("alice", BALANCE, "p1", T0)
    units, actual = 10, 14
    d = meter.decide("alice", F, units, "k1", T0)

    c = meter.complete(d.decision_id, actual, T0 + MINUTE)

    assert charges(c) == [("credits", actual, actual * PRICE, CUSTOMER)]
    assert c.written_off == 0 and c.released_units == 0
    assert customer_debits(meter) == (actual * PRICE, 0)
    assert revenue(meter) == actual * PRICE
    assert_double_entry(meter)


def test_above_the_reservation_free_window_room_serves_the_excess_first() -> None:
    meter = windows_then_credits()
    meter.purchase("alice", BALANCE, "p1", T0)
    units = W + 15
    d = meter.decide("alice", F, units, "k1", T0)
    later = T0 + HOUR  # the decision's window entry has expired: the window has W units again
    excess_in_window = 4
    actual = units + excess_in_window

    c = meter.complete(d.decision_id, actual, later)

    assert used(meter, later) == excess_in_window
    assert customer_debits(meter) == ((units - W) * PRICE, 0)  # the excess cost nothing
    assert charges(c) == [("credits", units - W, (units - W) * PRICE, CUSTOMER)]
    assert c.written_off == 0
    assert_double_entry(meter)


def test_above_the_reservation_the_window_room_then_money_cover_the_excess() -> None:
    meter = windows_then_credits()
    meter.purchase("alice", BALANCE, "p1", T0)
    units = W + 15
    d = meter.decide("alice", F, units, "k1", T0)
    later = T0 + HOUR
    excess = W + 6  # the window (empty again) takes W, the credits the other 6
    actual = units + excess

    c = meter.complete(d.decision_id, actual, later)

    money_units = (units - W) + (excess - W)
    assert used(meter, later) == W
    assert customer_debits(meter) == (money_units * PRICE, 0)
    assert charges(c) == [("credits", money_units, money_units * PRICE, CUSTOMER)]
    assert revenue(meter) == money_units * PRICE
    assert_double_entry(meter)


def test_above_the_reservation_what_no_layer_covers_is_written_off() -> None:
    meter = money_only()
    spare = 3  # micro-credits that cannot buy a whole unit
    covered_units = 12
    meter.purchase("alice", covered_units * PRICE + spare, "p1", T0)
    units, actual = 10, 16
    d = meter.decide("alice", F, units, "k1", T0)

    c = meter.complete(d.decision_id, actual, T0 + MINUTE)

    uncovered = actual - covered_units
    assert c.written_off == uncovered * PRICE
    assert charges(c) == [
        ("credits", covered_units, covered_units * PRICE, CUSTOMER),
        ("write_off", uncovered, uncovered * PRICE, WRITE_OFF),
    ]
    assert c.charged == covered_units * PRICE
    assert customer_debits(meter) == (covered_units * PRICE, 0)  # never beyond the balance (M4)
    assert meter.balances("alice")["credits"] == spare
    assert platform(meter, Code.WRITE_OFF).debits_posted == uncovered * PRICE
    assert revenue(meter) == actual * PRICE  # the priced usage: charged plus written off (M1)
    assert_double_entry(meter)


def test_actual_zero_releases_everything() -> None:
    meter = windows_then_credits()
    meter.purchase("alice", BALANCE, "p1", T0)
    units = W + 15
    d = meter.decide("alice", F, units, "k1", T0)
    [_, hold] = d.parts
    later = T0 + MINUTE

    c = meter.complete(d.decision_id, 0, later)

    assert charges(c) == [] and c.charged == 0 and c.written_off == 0
    assert (c.released_units, c.released_amount) == (units, (units - W) * PRICE)
    assert meter.store.pending_status(hold.transfer_id) == PendingStatus.VOIDED
    assert used(meter, later) == 0
    assert customer_debits(meter) == (0, 0)
    assert meter.balances("alice")["credits"] == BALANCE
    assert revenue(meter) == 0
    assert_double_entry(meter)
    # The window's room is really back: a request of W units is served by the window alone.
    again = meter.decide("alice", F, W, "k2", later)
    assert [(p.layer, p.units, p.amount) for p in again.parts] == [("windows", W, 0)]


# --- replays and conflicts -----------------------------------------------------------------------


def test_completing_twice_with_the_same_actual_returns_the_same_and_moves_nothing() -> None:
    meter = money_only()
    meter.purchase("alice", BALANCE, "p1", T0)
    d = meter.decide("alice", F, 10, "k1", T0)
    first = meter.complete(d.decision_id, 13, T0 + MINUTE)
    after = (ledger_snapshot(meter), windows_snapshot(meter))

    again = meter.complete(d.decision_id, 13, T0 + 2 * MINUTE)

    assert again == first
    assert (ledger_snapshot(meter), windows_snapshot(meter)) == after
    assert customer_debits(meter) == (13 * PRICE, 0)


def test_completing_again_with_a_different_actual_is_a_conflict_and_changes_nothing() -> None:
    meter = windows_then_credits()
    meter.purchase("alice", BALANCE, "p1", T0)
    d = meter.decide("alice", F, W + 5, "k1", T0)
    actual = 3  # the credits are voided and W - 3 units of window room come back
    first = meter.complete(d.decision_id, actual, T0 + MINUTE)
    assert used(meter, T0 + MINUTE) == actual
    before = snapshot(meter)

    for other in (0, actual - 1, actual + 1, W + 5, W + 50):
        with pytest.raises(CompletionConflictError):
            meter.complete(d.decision_id, other, T0 + 2 * MINUTE)
    assert snapshot(meter) == before
    assert meter.complete(d.decision_id, actual, T0 + 3 * MINUTE) == first


# --- after the holds expired ---------------------------------------------------------------------


def test_completing_after_the_hold_expired_charges_afresh() -> None:
    timeout = 60
    meter = money_only(timeout=timeout)
    meter.purchase("alice", BALANCE, "p1", T0)
    units = 10
    d = meter.decide("alice", F, units, "k1", T0)
    assert d.timeout == timeout
    [hold] = d.parts
    late = T0 + 2 * timeout * NS

    c = meter.complete(d.decision_id, units + 2, late)

    assert meter.store.pending_status(hold.transfer_id) == PendingStatus.EXPIRED
    assert charges(c) == [("credits", units + 2, (units + 2) * PRICE, CUSTOMER)]
    assert customer_debits(meter) == ((units + 2) * PRICE, 0)
    assert revenue(meter) == (units + 2) * PRICE
    assert_double_entry(meter)


def test_after_the_hold_expired_window_units_are_not_counted_again() -> None:
    timeout = 60
    meter = windows_then_credits(timeout=timeout)
    meter.purchase("alice", BALANCE, "p1", T0)
    units = W + 15
    d = meter.decide("alice", F, units, "k1", T0)
    late = T0 + 2 * timeout * NS  # the hold has lapsed; the window entry still counts

    c = meter.complete(d.decision_id, units, late)

    assert used(meter, late) == W  # consumed at decision, not taken a second time
    assert customer_debits(meter) == ((units - W) * PRICE, 0)
    assert charges(c) == [("credits", units - W, (units - W) * PRICE, CUSTOMER)]
    assert_double_entry(meter)


def test_after_the_hold_expired_what_the_balance_no_longer_covers_is_written_off() -> None:
    timeout = 60
    units = 10
    meter = money_only(timeout=timeout)
    meter.purchase("alice", units * PRICE, "p1", T0)
    d = meter.decide("alice", F, units, "k1", T0)
    late = T0 + 2 * timeout * NS
    meter.add_customer("bob", "pro", late)
    meter.purchase("bob", 1, "p1", late)  # the ledger moves to `late`: the hold has lapsed
    # Once the hold lapsed, a second decision holds the whole balance.
    second = meter.decide("alice", F, units, "k2", late)
    assert second.allowed and second.cost == units * PRICE

    c = meter.complete(d.decision_id, units, late)

    assert c.written_off == units * PRICE
    assert charges(c) == [("write_off", units, units * PRICE, WRITE_OFF)]
    assert customer_debits(meter) == (0, units * PRICE)  # only the second decision's hold
    assert platform(meter, Code.WRITE_OFF).debits_posted == units * PRICE
    assert_double_entry(meter)


# --- what cannot be completed --------------------------------------------------------------------


def test_completing_an_unknown_decision_raises() -> None:
    meter = money_only()
    meter.purchase("alice", BALANCE, "p1", T0)
    d = meter.decide("alice", F, 3, "k1", T0)
    before = snapshot(meter)
    with pytest.raises(UnknownDecisionError):
        meter.complete(d.decision_id ^ 1, 3, T0 + MINUTE)
    assert snapshot(meter) == before


def test_completing_a_refusal_raises() -> None:
    meter = money_only()
    meter.purchase("alice", 2 * PRICE, "p1", T0)
    refused = meter.decide("alice", F, 3, "k1", T0)
    assert not refused.allowed
    before = snapshot(meter)
    with pytest.raises(UnknownDecisionError):
        meter.complete(refused.decision_id, 3, T0 + MINUTE)
    assert snapshot(meter) == before


@pytest.mark.parametrize("actual", [-1, True, 1.0])
def test_completing_with_an_invalid_actual_raises_and_changes_nothing(actual: object) -> None:
    meter = money_only()
    meter.purchase("alice", BALANCE, "p1", T0)
    d = meter.decide("alice", F, 3, "k1", T0)
    before = snapshot(meter)
    with pytest.raises(InvalidRequestError, match="actual_units"):
        meter.complete(d.decision_id, actual, T0 + MINUTE)  # type: ignore[arg-type]
    assert snapshot(meter) == before
    assert meter.complete(d.decision_id, 3, T0 + MINUTE).charged == 3 * PRICE


# --- a random mix of decisions and completions ---------------------------------------------------


@settings(max_examples=scaled(100))
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 40),  # minutes since the previous step
            st.integers(1, 30),  # units asked
            st.integers(0, 45),  # units actually used
        ),
        min_size=1,
        max_size=15,
    ),
    balance=st.integers(0, 200),
)
def test_random_decisions_and_completions_keep_the_books_exact(
    steps: list[tuple[int, int, int]], balance: int
) -> None:
    allowance = 8
    meter = make_meter(
        {F: feature(windows_layer(window("1h", "1h", W)), allowance_layer(allowance), CREDITS)},
        {F: PRICE},
    )
    meter.add_customer("alice", "pro", T0)
    if balance:
        meter.purchase("alice", balance, "p1", T0)
    now, priced = T0, 0
    for i, (minutes, units, actual) in enumerate(steps):
        now += minutes * MINUTE
        d = meter.decide("alice", F, units, f"k{i}", now)
        if not d.allowed:
            continue
        c = meter.complete(d.decision_id, actual, now)
        money_units = sum(ch.units for ch, _ in _money(c))
        assert c.charged == money_units * PRICE
        priced += c.charged + c.written_off
        assert 0 <= used(meter, now) <= W  # M5
        a = credits_account(meter, "alice")
        assert a.debits_posted + a.debits_pending <= a.credits_posted  # L1 / M4
        assert a.debits_posted + platform(meter, Code.WRITE_OFF).debits_posted == priced  # M1
        assert_double_entry(meter)


def test_a_completion_after_its_plan_version_is_published_again_reads_the_new_one() -> None:
    """The terms completions run under are compiled once per plan version and price, and again
    when that version is published anew (the registry then holds another plan)."""
    meter = make_meter({F: feature(windows_layer(window("5h", "5h", 100)), CREDITS)}, {F: PRICE})
    for name in ("ann", "bob"):
        meter.add_customer(name, "pro", T0)
        meter.purchase(name, BALANCE, f"p-{name}", T0)
    first = meter.decide("ann", F, 5, "k", T0)
    meter.complete(first.decision_id, 50, T0 + MINUTE)  # compiles version 1's terms
    d = meter.decide("bob", F, 5, "k", T0)
    smaller = feature(windows_layer(window("5h", "5h", W)), CREDITS)
    meter.publish_plan(plan_from_data(plan_data({F: smaller})))  # version 1 again, limit 10
    done = meter.complete(d.decision_id, 50, T0 + MINUTE)
    assert {c.layer: c.units for c in done.charges} == {"windows": W, "credits": 50 - W}
