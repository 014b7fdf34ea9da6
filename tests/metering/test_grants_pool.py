"""Promotional grants and the organisation pool (DESIGN.md, "Decided edge cases of the
waterfall": Grants, Pool).

Grants burn soonest-expiring first, then by priority (lower first), then by creation (older
first); a grant expiring at t serves decisions with now < t; its free remainder moves to the
breakage account by a recorded transfer, and holds placed before expiry stay valid. A pool is
shared by an organisation's members; overage is drawn up to its cap and never beyond.
"""

from __future__ import annotations

import pytest

from ledger.core.types import PendingStatus
from ledger.metering import Meter
from ledger.metering import accounts as acc
from ledger.metering.accounts import Code, TransferCode

from .fixtures import (
    CREDITS,
    DAY,
    GRANTS,
    HOUR,
    MINUTE,
    NS,
    POOL,
    T0,
    account,
    assert_double_entry,
    feature,
    make_meter,
    parts_of,
    platform,
    snapshot,
)

F = "codex.task"
G = "sora.video"
PRICE = 10
HOLD_TIMEOUT = 3 * 3600  # seconds: longer than the grants' one hour below


def grants_meter(*layers: dict, timeout: int | None = None) -> Meter:
    meter = make_meter(
        {F: feature(*(layers or (GRANTS,)), timeout=timeout), G: feature(GRANTS, CREDITS)},
        {F: PRICE, G: PRICE},
    )
    meter.add_customer("alice", "pro", T0)
    return meter


# --- burn order ----------------------------------------------------------------------------------


def test_the_soonest_expiring_grant_burns_first() -> None:
    meter = grants_meter()
    late_units, soon_units = 5, 3
    meter.grant("alice", "late", late_units * PRICE, T0 + 10 * DAY, T0)  # created first
    meter.grant("alice", "soon", soon_units * PRICE, T0 + DAY, T0 + 1)

    d1 = meter.decide("alice", F, 2, "k1", T0 + 2)
    assert parts_of(d1) == [("grant:soon", 2, 2 * PRICE)]
    d2 = meter.decide("alice", F, 4, "k2", T0 + 3)
    left = soon_units - 2
    assert parts_of(d2) == [
        ("grant:soon", left, left * PRICE),
        ("grant:late", 4 - left, (4 - left) * PRICE),
    ]
    assert meter.balances("alice") == {
        "credits": 0,
        "grant:late": (late_units - (4 - left)) * PRICE,
        "grant:soon": 0,
    }


def test_grants_expiring_together_burn_by_priority_lower_first() -> None:
    meter = grants_meter()
    expires = T0 + DAY
    meter.grant("alice", "p-high", 5 * PRICE, expires, T0, priority=1)  # older, priority 1
    meter.grant("alice", "p-low", 5 * PRICE, expires, T0 + 1, priority=0)

    d = meter.decide("alice", F, 7, "k1", T0 + 2)

    assert parts_of(d) == [("grant:p-low", 5, 5 * PRICE), ("grant:p-high", 2, 2 * PRICE)]


def test_grants_tied_on_expiry_and_priority_burn_oldest_first() -> None:
    meter = grants_meter()
    expires = T0 + DAY
    meter.grant("alice", "z-old", 5 * PRICE, expires, T0, priority=2)  # names sort the other way
    meter.grant("alice", "a-new", 5 * PRICE, expires, T0 + MINUTE, priority=2)

    d = meter.decide("alice", F, 6, "k1", T0 + 2 * MINUTE)

    assert parts_of(d) == [("grant:z-old", 5, 5 * PRICE), ("grant:a-new", 1, PRICE)]


def test_a_grant_expiring_at_t_serves_before_t_and_not_at_t() -> None:
    meter = grants_meter(GRANTS, CREDITS)
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    expires = T0 + HOUR
    meter.grant("alice", "promo", 100 * PRICE, expires, T0)

    before = meter.decide("alice", F, 1, "k1", expires - 1)
    at = meter.decide("alice", F, 1, "k2", expires)

    assert parts_of(before) == [("grant:promo", 1, PRICE)]
    assert parts_of(at) == [("credits", 1, PRICE)]


def test_an_expired_grant_alone_cannot_serve() -> None:
    meter = grants_meter()
    expires = T0 + HOUR
    meter.grant("alice", "promo", 100 * PRICE, expires, T0)
    d = meter.decide("alice", F, 1, "k1", expires)
    assert not d.allowed
    assert [(r.code, r.layer) for r in d.reasons] == [("insufficient_funds", "grants")]


def test_a_grant_restricted_to_features_does_not_serve_other_features() -> None:
    meter = grants_meter()
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    meter.grant("alice", "video-only", 100 * PRICE, T0 + DAY, T0, features=[G])

    other = meter.decide("alice", F, 1, "k1", T0)
    own = meter.decide("alice", G, 1, "k2", T0)

    assert not other.allowed  # plan F has only the grants layer and this grant is not for F
    assert [(r.code, r.layer) for r in other.reasons] == [("insufficient_funds", "grants")]
    assert parts_of(own) == [("grant:video-only", 1, PRICE)]


def test_an_unrestricted_grant_serves_every_feature() -> None:
    meter = grants_meter()
    meter.grant("alice", "any", 100 * PRICE, T0 + DAY, T0)
    assert parts_of(meter.decide("alice", F, 1, "k1", T0)) == [("grant:any", 1, PRICE)]
    assert parts_of(meter.decide("alice", G, 1, "k2", T0)) == [("grant:any", 1, PRICE)]


# --- expiry: breakage ----------------------------------------------------------------------------


def test_expire_grants_moves_the_free_remainder_to_breakage_by_a_recorded_transfer() -> None:
    meter = grants_meter()
    amount, held_units = 100 * PRICE, 30
    expires = T0 + HOUR
    g = meter.grant("alice", "promo", amount, expires, T0)
    d = meter.decide("alice", F, held_units, "k1", T0)
    assert parts_of(d) == [("grant:promo", held_units, held_units * PRICE)]
    breakage_id = acc.platform_account(Code.BREAKAGE)

    assert meter.expire_grants(expires - 1) == []  # not yet expired: nothing moves
    moved = meter.expire_grants(expires)

    free = amount - held_units * PRICE
    assert [(t.debit_account_id, t.credit_account_id, t.amount) for t in moved] == [
        (g.account_id, breakage_id, free)
    ]
    [recorded] = meter.store.lookup_transfers([moved[0].id])
    assert (recorded.debit_account_id, recorded.credit_account_id, recorded.amount) == (
        g.account_id,
        breakage_id,
        free,
    )
    assert recorded.code == TransferCode.BREAKAGE
    assert platform(meter, Code.BREAKAGE).credits_posted == free
    assert platform(meter, Code.WRITE_OFF).debits_posted == 0  # breakage is not a write-off
    grant = account(meter, g.account_id)
    assert (grant.debits_posted, grant.debits_pending) == (free, held_units * PRICE)
    assert grant.available == 0
    # A second sweep finds nothing more to move.
    assert meter.expire_grants(expires + MINUTE) == []
    assert platform(meter, Code.BREAKAGE).credits_posted == free
    assert_double_entry(meter)


def test_a_remainder_too_small_for_a_unit_still_goes_to_breakage() -> None:
    meter = grants_meter()
    units, crumb = 3, 1
    expires = T0 + HOUR
    g = meter.grant("alice", "promo", units * PRICE + crumb, expires, T0)
    assert meter.decide("alice", F, units, "k1", T0).allowed
    assert not meter.decide("alice", F, 1, "k2", T0).allowed  # the crumb buys no unit

    moved = meter.expire_grants(expires)

    assert [(t.debit_account_id, t.amount) for t in moved] == [(g.account_id, crumb)]
    assert platform(meter, Code.BREAKAGE).credits_posted == crumb
    assert account(meter, g.account_id).available == 0


def test_a_hold_placed_before_expiry_stays_valid_after_it() -> None:
    meter = grants_meter(timeout=HOLD_TIMEOUT)  # the hold outlives the grant
    amount, held_units = 100 * PRICE, 30
    expires = T0 + HOUR
    g = meter.grant("alice", "promo", amount, expires, T0)
    d = meter.decide("alice", F, held_units, "k1", T0)
    [hold] = d.parts
    meter.expire_grants(expires)

    c = meter.complete(d.decision_id, held_units, expires + MINUTE)

    assert meter.store.pending_status(hold.transfer_id) == PendingStatus.POSTED
    assert [(x.layer, x.units, x.amount) for x in c.charges] == [
        ("grant:promo", held_units, held_units * PRICE)
    ]
    assert c.written_off == 0
    assert platform(meter, Code.REVENUE).credits_posted == held_units * PRICE
    assert account(meter, g.account_id).debits_posted == amount  # breakage + the posted hold
    assert_double_entry(meter)


@pytest.mark.parametrize("actual", range(0, 7))
def test_what_a_hold_releases_after_the_grant_expired_goes_to_breakage(actual: int) -> None:
    meter = grants_meter(timeout=HOLD_TIMEOUT)
    amount, held_units = 10 * PRICE, 6
    expires = T0 + HOUR
    g = meter.grant("alice", "promo", amount, expires, T0)
    d = meter.decide("alice", F, held_units, "k1", T0)
    meter.expire_grants(expires)

    c = meter.complete(d.decision_id, actual, expires + MINUTE)
    meter.expire_grants(expires + 2 * MINUTE)  # the sweep after the release

    assert c.charged == actual * PRICE
    grant = account(meter, g.account_id)
    assert grant.available == 0 and grant.debits_pending == 0
    assert platform(meter, Code.BREAKAGE).credits_posted == amount - actual * PRICE
    assert platform(meter, Code.REVENUE).credits_posted == actual * PRICE
    assert_double_entry(meter)


# --- the organisation pool -----------------------------------------------------------------------


def pool_meter(pool: int, *, overage_cap: int = 0) -> Meter:
    meter = make_meter({F: feature(CREDITS, POOL)}, {F: PRICE})
    meter.add_org("acme", T0, overage_cap=overage_cap)
    meter.top_up_pool("acme", pool, "t1", T0)
    meter.add_customer("alice", "pro", T0, org="acme")
    meter.add_customer("bob", "pro", T0, org="acme")
    return meter


def test_two_members_share_the_pool() -> None:
    pool_units = 20
    meter = pool_meter(pool_units * PRICE)
    alice_units = 12
    a = meter.decide("alice", F, alice_units, "k1", T0)
    assert parts_of(a) == [("pool", alice_units, alice_units * PRICE)]
    assert meter.balances("bob")["pool"] == (pool_units - alice_units) * PRICE

    left = pool_units - alice_units
    too_much = meter.decide("bob", F, left + 1, "k1", T0)
    assert not too_much.allowed
    assert [(r.code, r.layer) for r in too_much.reasons] == [
        ("insufficient_funds", "credits"),
        ("insufficient_funds", "pool"),
    ]
    b = meter.decide("bob", F, left, "k2", T0)
    assert parts_of(b) == [("pool", left, left * PRICE)]
    assert meter.balances("alice")["pool"] == 0


def test_a_member_draws_on_the_pool_after_their_own_credits() -> None:
    meter = pool_meter(100 * PRICE)
    own = 4
    meter.purchase("alice", own * PRICE, "p1", T0)
    d = meter.decide("alice", F, own + 3, "k1", T0)
    assert parts_of(d) == [("credits", own, own * PRICE), ("pool", 3, 3 * PRICE)]
    assert meter.balances("bob")["pool"] == (100 - 3) * PRICE


def test_the_overage_is_drawn_after_the_pool_up_to_its_cap() -> None:
    pool_units, cap_units = 10, 5
    meter = pool_meter(pool_units * PRICE, overage_cap=cap_units * PRICE)
    overage_id = acc.overage_account("acme")

    d = meter.decide("alice", F, pool_units + 2, "k1", T0)
    assert parts_of(d) == [("pool", pool_units, pool_units * PRICE), ("overage", 2, 2 * PRICE)]

    refused = meter.decide("bob", F, cap_units - 2 + 1, "k1", T0)
    assert not refused.allowed
    assert [(r.code, r.layer) for r in refused.reasons] == [
        ("insufficient_funds", "credits"),
        ("pool_cap_reached", "pool"),
    ]
    assert parts_of(meter.decide("bob", F, cap_units - 2, "k2", T0)) == [
        ("overage", cap_units - 2, (cap_units - 2) * PRICE)
    ]
    overage = account(meter, overage_id)
    assert overage.debits_posted + overage.debits_pending == cap_units * PRICE
    assert not meter.decide("alice", F, 1, "k3", T0).allowed


def test_the_overage_cap_holds_at_completion_and_the_rest_is_written_off() -> None:
    pool_units, cap_units = 10, 5
    meter = pool_meter(pool_units * PRICE, overage_cap=cap_units * PRICE)
    overage_id = acc.overage_account("acme")
    d = meter.decide("alice", F, pool_units, "k1", T0)
    actual = pool_units + cap_units + 4

    c = meter.complete(d.decision_id, actual, T0 + MINUTE)

    overage = account(meter, overage_id)
    assert overage.debits_posted == cap_units * PRICE  # never more than the cap
    assert overage.debits_posted + overage.debits_pending <= overage.credits_posted
    assert [(x.layer, x.units) for x in c.charges] == [
        ("pool", pool_units),
        ("overage", cap_units),
        ("write_off", 4),
    ]
    assert c.written_off == 4 * PRICE
    assert platform(meter, Code.WRITE_OFF).debits_posted == 4 * PRICE
    assert_double_entry(meter)


def test_without_an_overage_cap_there_is_no_overage() -> None:
    pool_units = 10
    meter = pool_meter(pool_units * PRICE)
    d = meter.decide("alice", F, pool_units + 1, "k1", T0)
    assert not d.allowed
    assert [(r.code, r.layer) for r in d.reasons] == [
        ("insufficient_funds", "credits"),
        ("insufficient_funds", "pool"),
    ]
    before = snapshot(meter)
    assert not meter.decide("alice", F, pool_units + 1, "k1", T0 + NS).allowed  # a replay
    assert snapshot(meter)[0] == before[0]
    assert meter.balances("alice")["overage"] == 0
