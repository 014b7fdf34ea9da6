"""The usage dataset and its settlement (DESIGN.md, "Three datasets and the settlement pipeline";
"Decided edge cases of the waterfall": Units and money, Completion), on the memory store and on
a SQLite file.

`report_usage` writes one usage event and its outbox entry in one transaction; a repeat of the
same key and body is a no-op, anything else is refused whole and recorded as a rejection.
Settlement turns a usage event into monetization events and ledger transfers whose ids are
derived from the decision and the layer, so settling again (a redelivery) writes nothing new.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from ledger.core.errors import LedgerError
from ledger.core.results import Result
from ledger.core.types import PendingStatus, Transfer
from ledger.metering import (
    CompletionConflictError,
    InvalidRequestError,
    Meter,
    plan_from_data,
    price_book_from_data,
)
from ledger.metering import accounts as acc
from ledger.metering.accounts import Code, TransferCode
from ledger.metering.completion import monetization_id
from ledger.metering.ids import derive_id
from ledger.metering.settlement import (
    UsageConflictError,
    UsageRejectedError,
    run_worker,
    settle,
)
from ledger.store.base import Store
from ledger.store.memory import MemoryStore

from .fixtures import (
    CREDITS,
    HOUR,
    MINUTE,
    NS,
    T0,
    allowance_layer,
    assert_double_entry,
    book_data,
    credits_account,
    feature,
    ledger_snapshot,
    plan_data,
    platform,
    window,
    window_used,
    windows_layer,
)

F = "codex.task"
G = "sora.video"
PRICE = 7
W = 10  # the one-hour window's limit
CUSTOMER = acc.customer_account("alice")
REVENUE = acc.platform_account(Code.REVENUE)
WRITE_OFF = acc.platform_account(Code.WRITE_OFF)


def new_meter(
    store: Store,
    features: Mapping[str, dict[str, Any]] | None = None,
    prices: Mapping[str, int] | None = None,
) -> Meter:
    """A meter on `store`: plan "pro" (by default a one-hour window of W units, then credits,
    for F; credits only for G), price book version 1 in force from 0, customer alice."""
    if features is None:
        features = {
            F: feature(windows_layer(window("1h", "1h", W)), CREDITS),
            G: feature(CREDITS),
        }
    meter = Meter(store)
    meter.publish_plan(plan_from_data(plan_data(features)))
    meter.publish_prices(price_book_from_data(book_data(prices or {F: PRICE, G: PRICE})))
    meter.add_customer("alice", "pro", T0)
    return meter


# --- reading the tables back (the same on every store) -----------------------------------------


def rows(meter: Meter) -> dict[str, Any]:
    """Every row of the usage and monetization datasets, the outbox and the rejections."""
    t = meter.tables
    found: dict[str, Any] = t.read(
        meter.store,
        lambda cur: {
            "usage": list(t.all_usage(cur)),
            "outbox": t.outbox_ids(cur),
            "rejections": list(t.all_rejections(cur)),
            "monetization": list(t.all_monetization(cur)),
            "completions": list(t.all_completions(cur)),
        },
    )
    return found


def state(meter: Meter) -> tuple[Any, ...]:
    """The ledger and every metering row: equal states, nothing was written."""
    r = rows(meter)
    return (
        ledger_snapshot(meter),
        r["usage"],
        r["outbox"],
        r["rejections"],
        r["monetization"],
        r["completions"],
    )


def transfers(meter: Meter) -> list[Transfer]:
    return [e for e in meter.store.journal() if isinstance(e, Transfer)]


def tagged(meter: Meter) -> dict[int, int]:
    """Posted micro-credits per user_data (monetization id), over the whole journal."""
    out: dict[int, int] = {}
    for t in transfers(meter):
        if t.flags & (2 | 8):  # a hold or a void moves no posted money
            continue
        out[t.user_data] = out.get(t.user_data, 0) + t.amount
    return out


def assert_m1(meter: Meter) -> None:
    """M1 on the rows: the posted transfers naming each monetization event add up to it."""
    moved = tagged(meter)
    for m in rows(meter)["monetization"]:
        assert moved.get(m.id, 0) == m.amount, m


# --- report_usage: one usage event and one outbox entry ----------------------------------------


def test_a_report_writes_one_usage_event_and_one_outbox_entry(store: Store) -> None:
    meter = new_meter(store)
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    d = meter.decide("alice", F, W + 5, "k1", T0)
    ledger_before = ledger_snapshot(meter)

    report = meter.report_usage("alice", F, W + 3, "u1", d.decision_id, T0 + 1, T0 + MINUTE)

    assert not report.duplicate
    u = report.usage
    assert u.id == derive_id("usage", "alice", "u1")
    assert (u.customer, u.key, u.feature, u.units) == ("alice", "u1", F, W + 3)
    assert (u.decision_id, u.occurred_at, u.received_at) == (d.decision_id, T0 + 1, T0 + MINUTE)
    r = rows(meter)
    assert r["usage"] == [u]
    assert r["outbox"] == {u.id}
    assert r["rejections"] == [] and r["monetization"] == [] and r["completions"] == []
    assert meter.backlog() == (1, T0 + 1)
    assert ledger_snapshot(meter) == ledger_before  # reporting moves no money


def test_the_same_key_and_body_again_is_a_no_op(store: Store) -> None:
    meter = new_meter(store)
    d = meter.decide("alice", F, 3, "k1", T0)
    first = meter.report_usage("alice", F, 3, "u1", d.decision_id, T0, T0)
    before = state(meter)

    again = meter.report_usage("alice", F, 3, "u1", d.decision_id, T0, T0 + MINUTE)

    assert again.duplicate
    assert again.usage == first.usage  # the first report, received_at included
    assert state(meter) == before


@pytest.mark.parametrize(
    "change",
    [{"units": 4}, {"occurred_at": T0 + 1}, {"decision": "k2"}],
    ids=["units", "occurred_at", "decision"],
)
def test_the_same_key_with_a_different_body_is_a_recorded_conflict(
    store: Store, change: dict[str, Any]
) -> None:
    meter = new_meter(store)
    d1 = meter.decide("alice", F, 3, "k1", T0)
    d2 = meter.decide("alice", F, 3, "k2", T0)
    first = meter.report_usage("alice", F, 3, "u1", d1.decision_id, T0, T0).usage
    ledger_before = ledger_snapshot(meter)
    units = change.get("units", 3)
    occurred = change.get("occurred_at", T0)
    decision = d2 if change.get("decision") else d1

    with pytest.raises(UsageConflictError) as caught:
        meter.report_usage("alice", F, units, "u1", decision.decision_id, occurred, T0 + MINUTE)

    assert caught.value.reason == "key_reused"
    assert "'u1'" in str(caught.value)
    r = rows(meter)
    assert r["usage"] == [first] and r["outbox"] == {first.id}
    [rejection] = r["rejections"]
    assert (rejection.customer, rejection.key, rejection.reason) == ("alice", "u1", "key_reused")
    body = json.loads(rejection.body)
    assert (body["units"], body["occurred_at"], body["decision_id"]) == (
        units,
        occurred,
        decision.decision_id,
    )
    assert ledger_snapshot(meter) == ledger_before


# --- bad reports: refused whole, recorded as rejected -----------------------------------------

# (name, changes to a good report, the reason recorded, what the error must name)
BAD_REPORTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown_decision", {"decision_id": 12345}, "unknown_decision", "12345"),
    ("unknown_customer", {"customer": "mallory"}, "unknown_customer", "mallory"),
    ("another_customers_decision", {"decision": "bob"}, "unknown_decision", "alice"),
    ("refused_decision", {"decision": "refused"}, "decision_refused", "refusal"),
    ("wrong_feature", {"feature": G}, "feature_mismatch", G),
    ("negative_units", {"units": -1}, "invalid", "units"),
    ("bool_units", {"units": True}, "invalid", "units"),
    ("float_units", {"units": 3.0}, "invalid", "units"),
    ("units_too_large", {"units": 10**12 + 1}, "invalid", "units"),
    ("empty_key", {"key": ""}, "invalid", "key"),
    ("key_not_a_string", {"key": 7}, "invalid", "key"),
    ("negative_occurred_at", {"occurred_at": -1}, "invalid", "occurred_at"),
    ("zero_decision_id", {"decision_id": 0}, "invalid", "decision_id"),
]


@pytest.mark.parametrize(
    ("changes", "reason", "named"),
    [case[1:] for case in BAD_REPORTS],
    ids=[case[0] for case in BAD_REPORTS],
)
def test_a_bad_report_raises_names_the_problem_and_is_recorded_as_rejected(
    store: Store, changes: dict[str, Any], reason: str, named: str
) -> None:
    meter = new_meter(store)
    meter.add_customer("bob", "pro", T0)
    good = meter.decide("alice", F, 3, "k1", T0)
    decisions = {
        "bob": meter.decide("bob", F, 3, "b1", T0),
        "refused": meter.decide("alice", F, W + 1, "k2", T0),  # no credits: refused
    }
    assert not decisions["refused"].allowed
    report: dict[str, Any] = {
        "customer": "alice",
        "feature": F,
        "units": 3,
        "key": "u1",
        "decision_id": good.decision_id,
        "occurred_at": T0,
        "now": T0 + MINUTE,
    }
    report.update({k: v for k, v in changes.items() if k != "decision"})
    if "decision" in changes:
        report["decision_id"] = decisions[changes["decision"]].decision_id
    before = ledger_snapshot(meter)

    expected = InvalidRequestError if reason == "invalid" else UsageRejectedError
    with pytest.raises(expected) as caught:
        meter.report_usage(**report)

    error = caught.value
    if reason == "invalid":
        assert isinstance(error, InvalidRequestError) and error.field == named
    else:
        assert isinstance(error, UsageRejectedError) and error.reason == reason
        assert not isinstance(error, UsageConflictError)
    assert named in str(error) and "rejected" in str(error)
    if reason != "invalid":
        assert f"({reason})" in str(error)
    r = rows(meter)
    assert r["usage"] == [] and r["outbox"] == frozenset()  # never half-applied
    assert r["monetization"] == [] and r["completions"] == []
    [rejection] = r["rejections"]
    assert rejection.reason == reason
    assert ledger_snapshot(meter) == before
    assert meter.backlog() == (0, None)
    # Nothing of it was kept: the good report goes through afterwards (under a fresh key).
    ok = meter.report_usage("alice", F, 3, "u-good", good.decision_id, T0, T0 + MINUTE)
    assert not ok.duplicate and rows(meter)["outbox"] == {ok.usage.id}


@pytest.mark.parametrize("now", [-5, True, "x", None, 2**64], ids=repr)
def test_a_report_with_a_bad_now_writes_nothing(
    store: Store, now: Any, request: pytest.FixtureRequest
) -> None:
    """`now` is input too: it must be refused, naming it, before anything is written."""
    meter = new_meter(store)
    d = meter.decide("alice", F, 3, "k1", T0)
    before = state(meter)

    with pytest.raises(LedgerError, match="now"):
        meter.report_usage("alice", F, 3, "u1", d.decision_id, T0, now)

    assert state(meter) == before


def test_a_second_usage_for_the_same_decision_is_rejected(store: Store) -> None:
    meter = new_meter(store)
    d = meter.decide("alice", F, 3, "k1", T0)
    first = meter.report_usage("alice", F, 3, "u1", d.decision_id, T0, T0).usage
    before = ledger_snapshot(meter)

    with pytest.raises(UsageRejectedError) as caught:
        meter.report_usage("alice", F, 3, "u2", d.decision_id, T0, T0 + MINUTE)

    assert caught.value.reason == "decision_already_reported"
    assert "'u1'" in str(caught.value)
    r = rows(meter)
    assert r["usage"] == [first] and r["outbox"] == {first.id}
    assert [(x.key, x.reason) for x in r["rejections"]] == [("u2", "decision_already_reported")]
    assert ledger_snapshot(meter) == before


# --- settlement ----------------------------------------------------------------------------------


def test_settle_pending_settles_what_is_queued_and_drains_the_outbox(store: Store) -> None:
    meter = new_meter(store)
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    d1 = meter.decide("alice", F, W + 5, "k1", T0)  # windows W, credits 5 (held)
    d2 = meter.decide("alice", F, 4, "k2", T0 + 1)  # credits 4 (held): the window is full
    u1 = meter.report_usage("alice", F, W + 3, "u1", d1.decision_id, T0, T0 + 2).usage
    u2 = meter.report_usage("alice", F, 6, "u2", d2.decision_id, T0 + 1, T0 + 3).usage
    assert meter.backlog() == (2, T0)

    assert meter.settle_pending("w1", T0 + MINUTE) == 2

    assert meter.backlog() == (0, None)
    r = rows(meter)
    assert r["outbox"] == frozenset()
    assert {c.usage_id: c.actual_units for c in r["completions"]} == {u1.id: W + 3, u2.id: 6}
    units = {(m.usage_id, m.layer): (m.units, m.amount) for m in r["monetization"]}
    assert units == {
        (u1.id, "windows"): (W, 0),
        (u1.id, "credits"): (3, 3 * PRICE),
        (u2.id, "credits"): (6, 6 * PRICE),  # 4 held and posted, 2 charged on top
    }
    assert credits_account(meter, "alice").debits_posted == 9 * PRICE
    assert credits_account(meter, "alice").debits_pending == 0
    assert platform(meter, Code.REVENUE).credits_posted == 9 * PRICE
    assert meter.settle_pending("w1", T0 + 2 * MINUTE) == 0  # nothing left to claim
    assert_m1(meter)
    assert_double_entry(meter)


def test_settling_again_is_a_redelivery_that_writes_nothing(store: Store) -> None:
    """M2: a redelivery names the same transfers and monetization events; nothing moves."""
    meter = new_meter(store)
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    d = meter.decide("alice", F, W + 5, "k1", T0)
    u = meter.report_usage("alice", F, W + 8, "u1", d.decision_id, T0, T0).usage
    [first] = settle(meter, [u.id], T0 + MINUTE)
    after = state(meter)
    balances = meter.balances("alice")

    for later in (T0 + MINUTE, T0 + 2 * MINUTE):
        assert settle(meter, [u.id], later) == []  # settled before: nothing new
        assert meter.settle_pending("w2", later) == 0

    assert state(meter) == after
    assert meter.balances("alice") == balances
    assert meter.completion(d.decision_id) == first
    # Settling together with an unsettled one still settles only the new one.
    d2 = meter.decide("alice", G, 2, "k2", T0 + 2 * MINUTE)
    u2 = meter.report_usage("alice", G, 2, "u2", d2.decision_id, T0, T0 + 2 * MINUTE).usage
    done = settle(meter, [u.id, u2.id], T0 + 3 * MINUTE)
    assert [c.usage_id for c in done] == [u2.id]
    assert len(rows(meter)["monetization"]) == len(after[4]) + 1
    assert_m1(meter)


def test_the_same_usage_twice_in_one_batch_settles_once(store: Store) -> None:
    meter = new_meter(store)
    d = meter.decide("alice", F, 8, "k1", T0)  # 8 units of the window
    u = meter.report_usage("alice", F, 2, "u1", d.decision_id, T0, T0).usage

    done = settle(meter, [u.id, u.id], T0 + MINUTE)

    assert window_used(meter, "alice", F, "1h", HOUR, T0 + MINUTE) == 2
    assert len(done) == 1


def test_the_same_charged_usage_twice_in_one_batch_settles_once(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """The batch's second copy of the chain is refused (its first event `exists`), so the batch
    is rolled back and each usage is settled on its own."""
    meter = new_meter(store)
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    d = meter.decide("alice", G, 5, "k1", T0)
    u = meter.report_usage("alice", G, 8, "u1", d.decision_id, T0, T0).usage

    done = settle(meter, [u.id, u.id], T0 + MINUTE)

    assert [c.usage_id for c in done] == [u.id]
    assert credits_account(meter, "alice").debits_posted == 8 * PRICE
    assert rows(meter)["outbox"] == frozenset()
    assert_m1(meter)


def test_settled_ids_are_derived_from_the_decision_and_the_layer(store: Store) -> None:
    meter = new_meter(store)
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    d = meter.decide("alice", F, W + 5, "k1", T0)  # windows W, credits 5 (held)
    u = meter.report_usage("alice", F, W + 8, "u1", d.decision_id, T0, T0).usage
    [c] = settle(meter, [u.id], T0 + MINUTE)

    did = d.decision_id
    [hold] = [p for p in d.parts if p.layer == "credits"]
    assert hold.transfer_id == derive_id("hold", did, "credits")
    post, charge = derive_id("post", did, "credits"), derive_id("charge", did, "credits")
    assert c.transfer_ids == (post, charge)
    mid = monetization_id(did, "credits")
    assert mid == derive_id("monetization", did, "credits")
    found = {t.id: t for t in transfers(meter)}
    assert (found[post].pending_id, found[post].amount, found[post].user_data) == (
        hold.transfer_id,
        5 * PRICE,
        mid,
    )
    assert (found[charge].debit_account_id, found[charge].amount, found[charge].user_data) == (
        CUSTOMER,
        3 * PRICE,
        mid,
    )
    assert {(m.id, m.layer) for m in rows(meter)["monetization"]} == {
        (monetization_id(did, "windows"), "windows"),
        (mid, "credits"),
    }
    assert {(x.layer, x.monetization_id) for x in c.charges} == {
        ("windows", monetization_id(did, "windows")),
        ("credits", mid),
    }
    # The charge submitted again is answered `exists`: a second debit is impossible.
    before = ledger_snapshot(meter)
    assert meter.store.apply([replace(found[charge], timestamp=0)], T0 + 2 * MINUTE) == [
        Result.EXISTS
    ]
    assert ledger_snapshot(meter) == before


def test_the_same_workload_on_two_stores_names_the_same_transfers(store: Store) -> None:
    """The ids do not depend on the store, the worker or the time of settlement."""
    journals = []
    runs = ((new_meter(store), T0 + MINUTE), (new_meter(MemoryStore()), T0 + 30 * MINUTE))
    for m, settle_at in runs:
        m.purchase("alice", 100 * PRICE, "p1", T0)
        d = m.decide("alice", F, W + 5, "k1", T0)
        m.report_usage("alice", F, W + 8, "u1", d.decision_id, T0, T0)
        assert m.settle_pending(f"worker-{settle_at}", settle_at) == 1
        journals.append(
            sorted(
                (t.id, t.debit_account_id, t.credit_account_id, t.amount, t.user_data, t.flags)
                for t in transfers(m)
            )
        )
    assert journals[0] == journals[1]


def test_a_late_report_is_charged_at_the_price_locked_in_its_decision(store: Store) -> None:
    """Usage reported late and out of order, after a price change, pays the price in force
    when its decision was made, excess included."""
    meter = new_meter(store, {F: feature(CREDITS, timeout="1d")}, {F: PRICE})
    meter.purchase("alice", 1000 * PRICE, "p1", T0)
    early = meter.decide("alice", F, 10, "k-early", T0)
    new_price = 11
    meter.publish_prices(
        price_book_from_data(book_data({F: new_price}, version=2, effective_from=T0 + HOUR))
    )
    late = meter.decide("alice", F, 5, "k-late", T0 + 2 * HOUR)
    assert (early.price, early.price_version) == (PRICE, 1)
    assert (late.price, late.price_version) == (new_price, 2)
    # The later decision's usage is reported and settled first.
    meter.report_usage("alice", F, 5, "u-late", late.decision_id, T0 + 2 * HOUR, T0 + 2 * HOUR)
    assert meter.settle_pending("w", T0 + 2 * HOUR) == 1
    # Then the early one, stamped with its own (earlier) time, above its reservation.
    u = meter.report_usage("alice", F, 12, "u-early", early.decision_id, T0 + 1, T0 + 3 * HOUR)
    assert meter.backlog() == (1, T0 + 1)

    assert meter.settle_pending("w", T0 + 3 * HOUR) == 1

    c = meter.completion(early.decision_id)
    assert c is not None and c.usage_id == u.usage.id
    assert [(x.layer, x.units, x.amount) for x in c.charges] == [("credits", 12, 12 * PRICE)]
    [m] = [m for m in rows(meter)["monetization"] if m.usage_id == u.usage.id]
    assert (m.price, m.price_version, m.units, m.amount) == (PRICE, 1, 12, 12 * PRICE)
    debited = credits_account(meter, "alice").debits_posted
    assert debited == 12 * PRICE + 5 * new_price
    assert_m1(meter)


def test_an_excess_beyond_the_funds_is_charged_as_far_as_covered_and_written_off(
    store: Store,
) -> None:
    """M4 and M1: the customer pays what the balance covers; the rest goes to the write-off
    account, tied to a monetization event of the same usage."""
    meter = new_meter(store)
    covered, spare = 12, 3  # the balance buys 12 units, plus 3 micro-credits that buy none
    meter.purchase("alice", covered * PRICE + spare, "p1", T0)
    d = meter.decide("alice", G, 10, "k1", T0)
    u = meter.report_usage("alice", G, 16, "u1", d.decision_id, T0, T0).usage

    [c] = settle(meter, [u.id], T0 + MINUTE)

    uncovered = 16 - covered
    assert [(x.layer, x.units, x.amount, x.account_id) for x in c.charges] == [
        ("credits", covered, covered * PRICE, CUSTOMER),
        ("write_off", uncovered, uncovered * PRICE, WRITE_OFF),
    ]
    assert c.written_off == uncovered * PRICE
    alice = credits_account(meter, "alice")
    assert (alice.debits_posted, alice.debits_pending) == (covered * PRICE, 0)
    assert meter.balances("alice")["credits"] == spare  # never charged beyond the balance
    assert platform(meter, Code.WRITE_OFF).debits_posted == uncovered * PRICE
    assert platform(meter, Code.REVENUE).credits_posted == 16 * PRICE
    monetization = {m.layer: m for m in rows(meter)["monetization"]}
    assert set(monetization) == {"credits", "write_off"}
    write_off = monetization["write_off"]
    assert write_off.id == monetization_id(d.decision_id, "write_off")
    assert (write_off.usage_id, write_off.decision_id, write_off.account_id) == (
        u.id,
        d.decision_id,
        WRITE_OFF,
    )
    [wt] = [t for t in transfers(meter) if t.code == TransferCode.WRITE_OFF]
    assert wt.id == derive_id("write_off", d.decision_id, "write_off")
    assert (wt.debit_account_id, wt.amount, wt.user_data) == (
        WRITE_OFF,
        uncovered * PRICE,
        write_off.id,
    )
    assert_m1(meter)  # transfers tagged with each monetization event sum to its amount
    assert_double_entry(meter)


def test_settling_after_the_holds_expired_charges_afresh(store: Store) -> None:
    meter = new_meter(store, {F: feature(CREDITS, timeout=60)}, {F: PRICE})
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    d = meter.decide("alice", F, 10, "k1", T0)
    [hold] = d.parts
    late = T0 + 2 * 60 * NS
    u = meter.report_usage("alice", F, 12, "u1", d.decision_id, T0 + 1, late).usage

    assert meter.settle_pending("w", late) == 1

    assert meter.store.pending_status(hold.transfer_id) == PendingStatus.EXPIRED
    c = meter.completion(d.decision_id)
    assert c is not None and c.usage_id == u.id
    assert [(x.layer, x.units, x.amount) for x in c.charges] == [("credits", 12, 12 * PRICE)]
    assert c.transfer_ids == (derive_id("charge", d.decision_id, "credits"),)
    alice = credits_account(meter, "alice")
    assert (alice.debits_posted, alice.debits_pending) == (12 * PRICE, 0)
    assert_m1(meter)
    assert_double_entry(meter)


# --- the worker ----------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: int, step: int = 0) -> None:
        self.now, self.step = now, step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def test_the_worker_drains_the_queue_and_reports_what_it_did(store: Store) -> None:
    meter = new_meter(store, {F: feature(allowance_layer(1000), CREDITS)}, {F: PRICE})
    reported = []
    for i in range(7):
        d = meter.decide("alice", F, 2, f"k{i}", T0 + i)
        reported.append(meter.report_usage("alice", F, 2, f"u{i}", d.decision_id, T0 + i, T0 + i))
    assert meter.backlog() == (7, T0)

    stats = run_worker(meter, "w", Clock(T0 + MINUTE, 1), limit=3, until_idle=True)

    assert stats.settled == 7
    assert stats.batches == 3  # 3 + 3 + 1
    assert stats.lag_ns == 0  # nothing left waiting when it stopped
    assert stats.seconds > 0 and stats.per_second > 0
    assert meter.backlog() == (0, None)
    assert {c.usage_id for c in rows(meter)["completions"]} == {r.usage.id for r in reported}
    again = run_worker(meter, "w", Clock(T0 + HOUR), until_idle=True)
    assert (again.settled, again.batches) == (0, 0)


def test_the_worker_reports_the_lag_and_takes_over_a_dead_workers_lease(store: Store) -> None:
    meter = new_meter(store, {F: feature(allowance_layer(1000))}, {F: PRICE})
    d = meter.decide("alice", F, 2, "k1", T0)
    u = meter.report_usage("alice", F, 2, "u1", d.decision_id, T0, T0).usage
    lease = 30 * NS
    # A worker claims it and dies before settling.
    claimed: list[int] = []
    meter.tables.write(
        meter.store,
        T0,
        lambda cur: claimed.extend(meter.tables.claim(cur, "dead", T0, lease, 10)),
    )
    assert claimed == [u.id]
    polls: list[int] = []
    clock = Clock(T0 + 10 * NS)

    held = run_worker(
        meter,
        "w",
        clock,
        until_idle=False,
        stop=lambda: len(polls) >= 1,
        idle=lambda: polls.append(1),
    )

    assert held.settled == 0
    assert held.lag_ns == 10 * NS  # the oldest waiting event occurred 10 s before
    assert meter.backlog() == (1, T0)

    def wait() -> None:
        polls.append(1)
        clock.now += lease

    taken = run_worker(meter, "w", clock, until_idle=True, stop=lambda: len(polls) > 20, idle=wait)

    assert taken.settled == 1 and len(polls) == 2  # one wait for the lease to run out
    assert meter.backlog() == (0, None)
    assert meter.completion(d.decision_id) is not None


# --- Meter.complete records a usage event too ----------------------------------------------------


def test_complete_records_a_usage_event_so_the_datasets_reconcile(store: Store) -> None:
    meter = new_meter(store)
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    d = meter.decide("alice", F, W + 5, "k1", T0)

    c = meter.complete(d.decision_id, W + 2, T0 + MINUTE)

    r = rows(meter)
    [u] = r["usage"]
    assert u.key == f"complete-{d.decision_id}"
    assert u.id == derive_id("usage", "alice", f"complete-{d.decision_id}")
    assert (u.customer, u.feature, u.units, u.decision_id) == ("alice", F, W + 2, d.decision_id)
    assert c.usage_id == u.id
    assert r["outbox"] == frozenset()  # settled at once
    assert r["completions"] == [c]
    assert sum(m.units for m in r["monetization"]) == u.units
    assert {m.usage_id for m in r["monetization"]} == {u.id}
    assert_m1(meter)
    # Completing again returns the same and writes nothing; a usage report for the decision
    # is now a second usage of it.
    before = state(meter)
    assert meter.complete(d.decision_id, W + 2, T0 + 2 * MINUTE) == c
    assert state(meter) == before
    with pytest.raises(UsageRejectedError) as caught:
        meter.report_usage("alice", F, W + 2, "u1", d.decision_id, T0, T0 + 2 * MINUTE)
    assert caught.value.reason == "decision_already_reported"


def test_complete_after_a_report_settles_that_report(store: Store) -> None:
    meter = new_meter(store)
    meter.purchase("alice", 100 * PRICE, "p1", T0)
    d = meter.decide("alice", F, W + 5, "k1", T0)
    u = meter.report_usage("alice", F, W + 1, "u1", d.decision_id, T0, T0).usage
    before = state(meter)

    with pytest.raises(CompletionConflictError):
        meter.complete(d.decision_id, W + 2, T0 + MINUTE)  # not what was reported
    assert state(meter) == before

    c = meter.complete(d.decision_id, W + 1, T0 + MINUTE)
    assert c.usage_id == u.id
    assert [x.key for x in rows(meter)["usage"]] == ["u1"]
    assert meter.backlog() == (0, None)
