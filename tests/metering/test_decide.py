"""`Meter.decide`: the waterfall (M3), the windows (M5), refusals and their reasons,
`retry_after` and `unblock`, idempotency keys and the per-customer clock (DESIGN.md, "The
metering layer: decision waterfall" and "Decided edge cases of the waterfall").

Every expectation is computed from the plan's numbers in the test, never read back from the
engine: limits, amounts and prices are named constants and the parts are derived from them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.metering import IdempotencyConflictError, Meter
from tests.core.strategies import scaled

from .fixtures import (
    CREDITS,
    DAY,
    GRANTS,
    HOUR,
    MINUTE,
    NS,
    POOL,
    T0,
    allowance_layer,
    feature,
    ledger_snapshot,
    make_meter,
    ns_at,
    parts_of,
    snapshot,
    window,
    window_used,
    windows_layer,
    windows_snapshot,
)

F = "codex.task"
G = "sora.video"
PRICE = 7  # micro-credits per unit: not a divisor of the balances below, so floors matter


def windows_credits_meter(limit: int = 10, length: str = "5h") -> Meter:
    return make_meter({F: feature(windows_layer(window("5h", length, limit)), CREDITS)}, {F: PRICE})


# --- M3: the waterfall ---------------------------------------------------------------------------


def test_a_request_that_fits_the_windows_spends_no_credits() -> None:
    limit, units = 10, 6
    meter = windows_credits_meter(limit)
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 1000, "p1", T0)
    before = meter.balances("alice")
    ledger_before = ledger_snapshot(meter)

    d = meter.decide("alice", F, units, "k1", T0)

    assert d.allowed
    assert d.cost == 0
    assert [p.layer for p in d.parts] == ["windows"]
    assert parts_of(d) == [("windows", units, 0)]
    assert d.reasons == () and d.retry_after is None and d.unblock == ()
    assert meter.balances("alice") == before
    assert ledger_snapshot(meter) == ledger_before
    assert window_used(meter, "alice", F, "5h", 5 * HOUR, T0) == units


def test_a_larger_request_spills_to_allowance_grants_credits_then_pool_in_plan_order() -> None:
    w_limit, allowance = 10, 5
    grant_amount, credits_amount, pool_amount = 75, 50, 100  # micro-credits, not multiples of 7
    meter = make_meter(
        {
            F: feature(
                windows_layer(window("5h", "5h", w_limit)),
                allowance_layer(allowance),
                GRANTS,
                CREDITS,
                POOL,
            )
        },
        {F: PRICE},
    )
    meter.add_org("acme", T0)
    meter.top_up_pool("acme", pool_amount, "t1", T0)
    meter.add_customer("alice", "pro", T0, org="acme")
    meter.grant("alice", "promo", grant_amount, T0 + DAY, T0)
    meter.purchase("alice", credits_amount, "p1", T0)

    grant_units = grant_amount // PRICE
    credit_units = credits_amount // PRICE
    pool_units = 3
    units = w_limit + allowance + grant_units + credit_units + pool_units
    d = meter.decide("alice", F, units, "k1", T0)

    assert d.allowed
    assert parts_of(d) == [
        ("windows", w_limit, 0),
        ("allowance", allowance, 0),
        ("grant:promo", grant_units, grant_units * PRICE),
        ("credits", credit_units, credit_units * PRICE),
        ("pool", pool_units, pool_units * PRICE),
    ]
    assert d.cost == (grant_units + credit_units + pool_units) * PRICE
    assert all(p.transfer_id for p in d.parts if p.amount)  # each money part is a hold
    assert meter.balances("alice") == {
        "credits": credits_amount - credit_units * PRICE,
        "grant:promo": grant_amount - grant_units * PRICE,
        "pool": pool_amount - pool_units * PRICE,
        "overage": 0,
    }
    assert window_used(meter, "alice", F, "5h", 5 * HOUR, T0) == w_limit


def test_a_plan_that_orders_credits_before_grants_is_honoured() -> None:
    credits_amount = grant_amount = 10 * PRICE
    units = 12
    expected_from_credits = credits_amount // PRICE
    expected_from_grant = units - expected_from_credits
    meter = make_meter({F: feature(CREDITS, GRANTS)}, {F: PRICE})
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", credits_amount, "p1", T0)
    meter.grant("alice", "promo", grant_amount, T0 + DAY, T0)

    d = meter.decide("alice", F, units, "k1", T0)

    assert parts_of(d) == [
        ("credits", expected_from_credits, expected_from_credits * PRICE),
        ("grant:promo", expected_from_grant, expected_from_grant * PRICE),
    ]
    assert meter.balances("alice") == {
        "credits": 0,
        "grant:promo": grant_amount - expected_from_grant * PRICE,
    }


def test_a_refused_request_consumes_nothing_anywhere() -> None:
    w_limit, allowance, credit_units = 10, 5, 2
    meter = make_meter(
        {
            F: feature(
                windows_layer(window("5h", "5h", w_limit)), allowance_layer(allowance), CREDITS
            )
        },
        {F: PRICE},
    )
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", credit_units * PRICE, "p1", T0)
    first = 3
    assert meter.decide("alice", F, first, "k0", T0).allowed
    balances, ledger = meter.balances("alice"), ledger_snapshot(meter)
    windows = windows_snapshot(meter)

    too_many = (w_limit - first) + allowance + credit_units + 1
    refused = meter.decide("alice", F, too_many, "k1", T0 + 1)

    assert not refused.allowed and refused.parts == () and refused.cost == 0
    assert meter.balances("alice") == balances
    assert ledger_snapshot(meter) == ledger
    assert windows_snapshot(meter) == windows
    # Every layer's room is intact: exactly what was left is served, layer by layer.
    d1 = meter.decide("alice", F, w_limit - first, "k2", T0 + 2)
    d2 = meter.decide("alice", F, allowance, "k3", T0 + 3)
    d3 = meter.decide("alice", F, credit_units, "k4", T0 + 4)
    assert parts_of(d1) == [("windows", w_limit - first, 0)]
    assert parts_of(d2) == [("allowance", allowance, 0)]
    assert parts_of(d3) == [("credits", credit_units, credit_units * PRICE)]


def test_several_windows_of_one_layer_take_the_same_units_together() -> None:
    meter = make_meter(
        {F: feature(windows_layer(window("5h", "5h", 40), window("7d", "7d", 100)), CREDITS)},
        {F: PRICE},
    )
    meter.add_customer("alice", "pro", T0)
    d1 = meter.decide("alice", F, 30, "k1", T0)
    assert parts_of(d1) == [("windows", 30, 0)]
    assert window_used(meter, "alice", F, "5h", 5 * HOUR, T0) == 30
    assert window_used(meter, "alice", F, "7d", 7 * DAY, T0) == 30
    # After the 5h window frees, the 7d window (70 left) still counts the first 30.
    later = T0 + 5 * HOUR
    d2 = meter.decide("alice", F, 40, "k2", later)
    assert parts_of(d2) == [("windows", 40, 0)]
    assert window_used(meter, "alice", F, "5h", 5 * HOUR, later) == 40
    assert window_used(meter, "alice", F, "7d", 7 * DAY, later) == 70


def test_only_units_served_by_the_windows_layer_count_in_the_windows() -> None:
    w5, w7 = 10, 25
    meter = make_meter(
        {F: feature(windows_layer(window("5h", "5h", w5), window("7d", "7d", w7)), CREDITS)},
        {F: PRICE},
    )
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 1000 * PRICE, "p1", T0)
    units = 18
    d = meter.decide("alice", F, units, "k1", T0)

    room = min(w5, w7)
    assert parts_of(d) == [("windows", room, 0), ("credits", units - room, (units - room) * PRICE)]
    assert window_used(meter, "alice", F, "5h", 5 * HOUR, T0) == room
    assert window_used(meter, "alice", F, "7d", 7 * DAY, T0) == room  # not `units`


def test_a_shared_window_counts_units_times_weight_across_two_features() -> None:
    limit, wa, wb = 100, 2, 3
    meter = make_meter(
        {F: feature(windows_layer(shared=["team"])), G: feature(windows_layer(shared=["team"]))},
        {F: PRICE, G: PRICE},
        shared_windows=[{**window("team", "1h", limit), "weights": {F: wa, G: wb}}],
    )
    meter.add_customer("alice", "pro", T0)

    assert parts_of(meter.decide("alice", F, 10, "k1", T0)) == [("windows", 10, 0)]
    assert window_used(meter, "alice", "*", "team", HOUR, T0) == 10 * wa
    assert parts_of(meter.decide("alice", G, 10, "k2", T0)) == [("windows", 10, 0)]
    used = 10 * wa + 10 * wb
    assert window_used(meter, "alice", "*", "team", HOUR, T0) == used

    fits_b = (limit - used) // wb
    refused = meter.decide("alice", G, fits_b + 1, "k3", T0)
    assert not refused.allowed
    assert [(r.code, r.layer) for r in refused.reasons] == [("window_exhausted", "windows:team")]
    assert meter.decide("alice", G, fits_b, "k4", T0).allowed
    used += fits_b * wb
    fits_a = (limit - used) // wa
    assert not meter.decide("alice", F, fits_a + 1, "k5", T0).allowed
    assert meter.decide("alice", F, fits_a, "k6", T0).allowed
    assert window_used(meter, "alice", "*", "team", HOUR, T0) == used + fits_a * wa


@settings(max_examples=scaled(100))
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 90), st.integers(1, 40)),  # (minutes since last, units)
        min_size=1,
        max_size=25,
    )
)
def test_units_in_a_window_never_exceed_its_limit(steps: list[tuple[int, int]]) -> None:
    limits = {"1h": (HOUR, 20), "3h": (3 * HOUR, 35)}
    meter = make_meter(
        {
            F: feature(
                windows_layer(*(window(n, n, lim) for n, (_, lim) in limits.items())), CREDITS
            )
        },
        {F: 1},
    )
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 10**9, "p1", T0)
    now = T0
    for i, (minutes, units) in enumerate(steps):
        now += minutes * MINUTE
        before = {n: window_used(meter, "alice", F, n, ln, now) for n, (ln, _) in limits.items()}
        room = min(lim - before[n] for n, (_, lim) in limits.items())
        d = meter.decide("alice", F, units, f"k{i}", now)
        assert d.allowed  # the credits always cover the spill
        served = {p.layer: p.units for p in d.parts}.get("windows", 0)
        assert served == min(units, room)  # M3: the windows are drained before any credit
        for n, (length, lim) in limits.items():
            used = window_used(meter, "alice", F, n, length, now)
            assert used == before[n] + served
            assert used <= lim  # M5


def test_money_held_by_a_lapsed_reservation_is_available_again() -> None:
    """Available = posted credits - posted debits - pending debits of *live* reservations: a
    hold past its timeout no longer holds anything, even before anything else touches the
    ledger."""
    timeout, units = 60, 10
    meter = make_meter({F: feature(CREDITS, timeout=timeout)}, {F: PRICE})
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", units * PRICE, "p1", T0)
    first = meter.decide("alice", F, units, "k1", T0)
    assert first.allowed and first.cost == units * PRICE
    assert not meter.decide("alice", F, units, "k2", T0 + timeout * NS - NS).allowed

    late = T0 + 2 * timeout * NS
    second = meter.decide("alice", F, units, "k3", late)

    assert second.allowed
    assert [(p.layer, p.units, p.amount) for p in second.parts] == [
        ("credits", units, units * PRICE)
    ]


def test_windows_and_allowances_are_per_feature_and_credits_are_shared() -> None:
    limit, allowance, credit_units = 5, 3, 10
    per_feature = feature(
        windows_layer(window("1h", "1h", limit)), allowance_layer(allowance), CREDITS
    )
    meter = make_meter({F: per_feature, G: per_feature}, {F: PRICE, G: PRICE})
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", credit_units * PRICE, "p1", T0)

    spent = 4
    f = meter.decide("alice", F, limit + allowance + spent, "k1", T0)
    assert parts_of(f) == [
        ("windows", limit, 0),
        ("allowance", allowance, 0),
        ("credits", spent, spent * PRICE),
    ]
    # G has its own window and allowance, untouched by F, but the same credit balance.
    g = meter.decide("alice", G, limit + allowance + credit_units - spent, "k2", T0)
    assert parts_of(g) == [
        ("windows", limit, 0),
        ("allowance", allowance, 0),
        ("credits", credit_units - spent, (credit_units - spent) * PRICE),
    ]
    assert meter.balances("alice")["credits"] == 0
    assert not meter.decide("alice", F, 1, "k3", T0).allowed


def test_the_reservation_timeout_comes_from_the_plan_and_can_be_overridden() -> None:
    plan_timeout, override = 600, 45
    meter = make_meter({F: feature(CREDITS, timeout=plan_timeout)}, {F: PRICE})
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 100 * PRICE, "p1", T0)

    default = meter.decide("alice", F, 1, "k1", T0)
    chosen = meter.decide("alice", F, 1, "k2", T0, timeout=override)

    assert (default.timeout, chosen.timeout) == (plan_timeout, override)
    holds = meter.store.lookup_transfers(
        [default.parts[0].transfer_id, chosen.parts[0].transfer_id]
    )
    assert [t.timeout for t in holds] == [plan_timeout, override]


def test_retry_after_counts_a_grant_lapsing_before_the_window_frees() -> None:
    limit, grant_units = 10, 5
    meter = make_meter({F: feature(windows_layer(window("1h", "1h", limit)), GRANTS)}, {F: PRICE})
    meter.add_customer("alice", "pro", T0)
    meter.grant("alice", "promo", grant_units * PRICE, T0 + 30 * MINUTE, T0)
    assert meter.decide("alice", F, limit, "fill", T0).allowed
    now = T0 + NS

    # When the window frees (T0 + 1h) the grant has lapsed: the window alone serves `limit`.
    beyond = meter.decide("alice", F, limit + 1, "k1", now)
    within = meter.decide("alice", F, limit, "k2", now)

    assert not beyond.allowed and beyond.retry_after is None
    assert not within.allowed and within.retry_after == T0 + HOUR - now
    assert not meter.decide("alice", F, limit + 1, "k3", T0 + HOUR).allowed
    assert meter.decide("alice", F, limit, "k4", T0 + HOUR).allowed


# --- blocked: reasons, retry_after, unblock ------------------------------------------------------


def test_a_refusal_lists_one_reason_per_layer_that_fell_short() -> None:
    w5, w7, allowance, cap_units = 10, 100, 5, 2
    meter = make_meter(
        {
            F: feature(
                windows_layer(window("5h", "5h", w5), window("7d", "7d", w7)),
                allowance_layer(allowance),
                GRANTS,
                CREDITS,
                POOL,
            )
        },
        {F: PRICE},
    )
    meter.add_org("acme", T0, overage_cap=cap_units * PRICE)
    meter.add_customer("alice", "pro", T0, org="acme")
    assert meter.decide("alice", F, w5 + allowance, "k0", T0).allowed

    units = 8  # <= the 5h limit (so it is exhausted, not exceeded); the 7d window has room
    now = T0 + NS
    d = meter.decide("alice", F, units, "k1", now)

    assert not d.allowed
    assert [(r.code, r.layer) for r in d.reasons] == [
        ("window_exhausted", "windows:5h"),
        ("allowance_exhausted", "allowance"),
        ("insufficient_funds", "grants"),
        ("insufficient_funds", "credits"),
        ("pool_cap_reached", "pool"),
    ]
    assert all(r.message for r in d.reasons)
    explained = d.explain()
    assert all(r.code in explained for r in d.reasons)
    # The 5h window frees its units at T0 + 5h, before the allowance resets at midnight.
    assert d.retry_after == T0 + 5 * HOUR - now


def test_retry_after_is_none_when_the_request_exceeds_a_window_and_money_cannot_cover() -> None:
    limit, credit_units = 10, 4
    meter = windows_credits_meter(limit)
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", credit_units * PRICE + 2, "p1", T0)
    d = meter.decide("alice", F, limit + credit_units + 1, "k1", T0)

    assert not d.allowed
    assert [(r.code, r.layer) for r in d.reasons] == [
        ("exceeds_window_limit", "windows:5h"),
        ("insufficient_funds", "credits"),
    ]
    assert d.retry_after is None


@pytest.mark.parametrize(
    ("units", "frees_at"),
    [(50, T0 + 5 * HOUR), (70, T0 + HOUR + 5 * HOUR)],
    ids=["first-entry-expires", "both-entries-expire"],
)
def test_retry_after_is_exact_for_a_window(units: int, frees_at: int) -> None:
    meter = make_meter({F: feature(windows_layer(window("5h", "5h", 100)))}, {F: PRICE})
    meter.add_customer("alice", "pro", T0)
    assert meter.decide("alice", F, 60, "a", T0).allowed
    assert meter.decide("alice", F, 40, "b", T0 + HOUR).allowed
    now = T0 + 2 * HOUR

    d = meter.decide("alice", F, units, "c", now)

    assert not d.allowed
    assert d.retry_after == frees_at - now
    # One ns early is still refused; at exactly now + retry_after a new key is let through.
    early = meter.decide("alice", F, units, "c-early", now + d.retry_after - 1)
    assert not early.allowed
    on_time = meter.decide("alice", F, units, "c-on-time", now + d.retry_after)
    assert on_time.allowed and parts_of(on_time) == [("windows", units, 0)]


@pytest.mark.parametrize(
    ("period", "at", "boundary"),
    [
        ("day", datetime(2024, 1, 3, 12, 0, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)),
        ("day", datetime(2024, 1, 3, 23, 59, 59, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)),
        ("week", datetime(2024, 1, 3, 12, 0, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC)),
        ("week", datetime(2024, 1, 7, 23, 59, 59, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC)),
        ("week", datetime(2024, 1, 8, 0, 0, tzinfo=UTC), datetime(2024, 1, 15, tzinfo=UTC)),
        ("month", datetime(2024, 1, 3, 12, 0, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)),
        ("month", datetime(2024, 2, 15, 8, 0, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
        ("month", datetime(2024, 12, 31, 23, 0, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
    ],
    ids=lambda v: v if isinstance(v, str) else v.strftime("%Y-%m-%dT%H:%M:%S"),
)
def test_retry_after_is_exact_for_an_allowance_period(
    period: str, at: datetime, boundary: datetime
) -> None:
    amount = 5
    meter = make_meter({F: feature(allowance_layer(amount, period))}, {F: PRICE})
    meter.add_customer("alice", "pro", 0)
    now = ns_at(at)
    assert parts_of(meter.decide("alice", F, amount, "fill", now)) == [("allowance", amount, 0)]

    d = meter.decide("alice", F, 1, "probe", now)

    assert not d.allowed
    assert [(r.code, r.layer) for r in d.reasons] == [("allowance_exhausted", "allowance")]
    assert d.retry_after == ns_at(boundary) - now
    assert not meter.decide("alice", F, 1, "early", ns_at(boundary) - 1).allowed
    # The new period serves its whole amount again (no proration).
    on_time = meter.decide("alice", F, amount, "on-time", ns_at(boundary))
    assert parts_of(on_time) == [("allowance", amount, 0)]


@pytest.mark.parametrize("short_by", [0, 1], ids=["exact-shortfall", "one-less"])
def test_unblock_buying_exactly_the_shortfall_lets_the_same_request_through(
    short_by: int,
) -> None:
    limit, balance, units = 10, 30, 20  # the balance covers 4 units, with 2 micro-credits over
    meter = windows_credits_meter(limit)
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", balance, "p1", T0)

    d = meter.decide("alice", F, units, "k1", T0)

    assert not d.allowed
    expected = (units - limit) * PRICE - balance
    assert [(u.action, u.amount) for u in d.unblock] == [("buy_credits", expected)]
    meter.purchase("alice", expected - short_by, "p2", T0)
    again = meter.decide("alice", F, units, "k2", T0)
    assert again.allowed is (short_by == 0)
    if again.allowed:
        assert parts_of(again) == [
            ("windows", limit, 0),
            ("credits", units - limit, (units - limit) * PRICE),
        ]


# --- idempotency keys ----------------------------------------------------------------------------


def test_a_repeated_key_returns_the_identical_decision_and_consumes_once() -> None:
    limit = 10
    meter = windows_credits_meter(limit)
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    units = limit + 5
    first = meter.decide("alice", F, units, "k1", T0)
    after_first = (meter.balances("alice"), ledger_snapshot(meter), windows_snapshot(meter))

    replay = meter.decide("alice", F, units, "k1", T0 + HOUR)

    assert replay == first
    assert (meter.balances("alice"), ledger_snapshot(meter), windows_snapshot(meter)) == after_first
    assert meter.balances("alice")["credits"] == 100 * PRICE - (units - limit) * PRICE
    assert window_used(meter, "alice", F, "5h", 5 * HOUR, T0) == limit


@pytest.mark.parametrize(
    ("field", "feature_", "units", "timeout"),
    [("feature", G, 3, 60), ("units", F, 4, 60), ("timeout", F, 3, 120)],
)
def test_the_same_key_with_different_parameters_is_a_conflict_naming_the_field(
    field: str, feature_: str, units: int, timeout: int
) -> None:
    meter = make_meter(
        {F: feature(windows_layer(window("5h", "5h", 10))), G: feature(CREDITS)},
        {F: PRICE, G: PRICE},
    )
    meter.add_customer("alice", "pro", T0)
    meter.decide("alice", F, 3, "k1", T0, timeout=60)
    before = snapshot(meter)

    with pytest.raises(IdempotencyConflictError, match=field) as info:
        meter.decide("alice", feature_, units, "k1", T0 + NS, timeout=timeout)

    assert info.value.field == field
    assert snapshot(meter) == before


def test_replaying_a_key_without_its_timeout_override_is_a_conflict() -> None:
    """The timeout override is one of the key's parameters: a retry that omits it asks for
    the plan's timeout (a different request), so DESIGN requires a conflict naming it."""
    meter = windows_credits_meter()
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    first = meter.decide("alice", F, 15, "k1", T0, timeout=60)
    assert first.timeout == 60
    with pytest.raises(IdempotencyConflictError, match="timeout") as info:
        meter.decide("alice", F, 15, "k1", T0)
    assert info.value.field == "timeout"


def test_a_different_now_is_not_a_conflict() -> None:
    meter = windows_credits_meter()
    meter.add_customer("alice", "pro", T0)
    first = meter.decide("alice", F, 3, "k1", T0)
    assert meter.decide("alice", F, 3, "k1", T0 + DAY) == first
    assert window_used(meter, "alice", F, "5h", 5 * HOUR, T0) == 3


def test_idempotency_keys_are_scoped_per_customer() -> None:
    limit = 10
    meter = windows_credits_meter(limit)
    meter.add_customer("alice", "pro", T0)
    meter.add_customer("bob", "pro", T0)
    a = meter.decide("alice", F, 4, "same-key", T0)
    b = meter.decide("bob", F, 6, "same-key", T0)  # different units: not a conflict

    assert a.allowed and b.allowed
    assert a.decision_id != b.decision_id
    assert (a.customer, a.units, b.customer, b.units) == ("alice", 4, "bob", 6)
    assert window_used(meter, "alice", F, "5h", 5 * HOUR, T0) == 4
    assert window_used(meter, "bob", F, "5h", 5 * HOUR, T0) == 6


def test_a_refusal_is_remembered_and_replayed_after_room_frees_up() -> None:
    limit = 10
    meter = make_meter({F: feature(windows_layer(window("1h", "1h", limit)))}, {F: PRICE})
    meter.add_customer("alice", "pro", T0)
    assert meter.decide("alice", F, limit, "fill", T0).allowed
    refused = meter.decide("alice", F, 1, "k1", T0)
    assert not refused.allowed

    later = T0 + HOUR  # the window is empty again
    assert meter.decide("alice", F, 1, "k1", later) == refused
    assert window_used(meter, "alice", F, "1h", HOUR, later) == 0
    assert meter.decide("alice", F, 1, "k2", later).allowed  # the room was really there


def test_time_never_runs_backwards_per_customer() -> None:
    expires = T0 + HOUR
    meter = make_meter({F: feature(GRANTS, CREDITS)}, {F: PRICE})
    for c in ("alice", "bob"):
        meter.add_customer(c, "pro", T0)
        meter.purchase(c, 100 * PRICE, "p1", T0)
        meter.grant(c, "promo", 100 * PRICE, expires, T0)

    latest = meter.decide("alice", F, 1, "k1", expires)
    assert latest.now == expires and [p.layer for p in latest.parts] == ["credits"]

    stale = meter.decide("alice", F, 1, "k2", expires - NS)
    # Evaluated at the latest time seen for alice: the grant has expired there.
    assert stale.now == expires
    assert [p.layer for p in stale.parts] == ["credits"]
    # Another customer's clock is its own: bob at the earlier time is still served by the grant.
    other = meter.decide("bob", F, 1, "k2", expires - NS)
    assert other.now == expires - NS
    assert [p.layer for p in other.parts] == ["grant:promo"]
