"""Bad input to `Meter.decide`: each is refused with its own error naming the field, and leaves
no trace (DESIGN.md, "Decided edge cases of the waterfall": Units and money, Idempotency keys,
Clocks). "No trace" means the ledger, the windows, the decision log and the customer's clock are
all unchanged, and the idempotency key can be used afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest

from ledger.core.limits import AMOUNT_MAX
from ledger.metering import (
    UNITS_MAX,
    InvalidRequestError,
    Meter,
    MeteringError,
    UnknownCustomerError,
    UnknownFeatureError,
)

from .fixtures import (
    CREDITS,
    DAY,
    HOUR,
    T0,
    feature,
    make_meter,
    parts_of,
    snapshot,
    window,
    window_used,
    windows_layer,
)

F = "codex.task"
DEAR = "render.4k"  # a feature priced so high that a large request overflows the ledger
PRICE = 7
DEAR_PRICE = 10**7
KEY = "req-1"


def meter_with_usage() -> Meter:
    """alice on a plan with a window and credits, with one decision already made."""
    meter = make_meter(
        {
            F: feature(windows_layer(window("1h", "1h", 10)), CREDITS),
            DEAR: feature(CREDITS),
        },
        {F: PRICE, DEAR: DEAR_PRICE},
    )
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 1000 * PRICE, "p1", T0)
    assert meter.decide("alice", F, 4, "earlier", T0).allowed
    return meter


def good_call() -> dict[str, Any]:
    return {"customer": "alice", "feature": F, "units": 3, "key": KEY, "now": T0 + 1}


def decide(meter: Meter, call: dict[str, Any], timeout: Any = None) -> Any:
    return meter.decide(
        call["customer"], call["feature"], call["units"], call["key"], call["now"], timeout=timeout
    )


def assert_no_trace_then_key_reusable(meter: Meter, before: tuple[Any, ...]) -> None:
    assert snapshot(meter) == before
    d = decide(meter, good_call())
    assert d.allowed and d.key == KEY and d.now == T0 + 1
    assert parts_of(d) == [("windows", 3, 0)]
    assert window_used(meter, "alice", F, "1h", HOUR, T0 + 1) == 4 + 3


INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "units-zero": ({"units": 0}, "units"),
    "units-negative": ({"units": -5}, "units"),
    "units-bool": ({"units": True}, "units"),
    "units-float": ({"units": 3.0}, "units"),
    "units-string": ({"units": "3"}, "units"),
    "units-above-max": ({"units": UNITS_MAX + 1}, "units"),
    "units-absurd": ({"units": 10**40}, "units"),
    "units-times-price-overflows": (
        {"feature": DEAR, "units": AMOUNT_MAX // DEAR_PRICE + 1},
        "units",
    ),
    "key-empty": ({"key": ""}, "idempotency_key"),
    "key-oversized": ({"key": "k" * 129}, "idempotency_key"),
    "key-not-a-string": ({"key": 42}, "idempotency_key"),
    "now-negative": ({"now": -1}, "now"),
    "now-float": ({"now": float(T0)}, "now"),
    "now-bool": ({"now": True}, "now"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_field_is_refused_naming_it_and_leaves_no_trace(case: str) -> None:
    change, field = INVALID[case]
    meter = meter_with_usage()
    before = snapshot(meter)

    with pytest.raises(InvalidRequestError) as info:
        decide(meter, {**good_call(), **change})

    assert info.value.field == field
    assert field in str(info.value)
    assert_no_trace_then_key_reusable(meter, before)


@pytest.mark.parametrize("timeout", [0, -1, True, 60.0, 2**32])
def test_an_invalid_timeout_override_is_refused_naming_it(timeout: Any) -> None:
    meter = meter_with_usage()
    before = snapshot(meter)
    with pytest.raises(InvalidRequestError) as info:
        decide(meter, good_call(), timeout=timeout)
    assert info.value.field == "timeout"
    assert "timeout" in str(info.value)
    assert_no_trace_then_key_reusable(meter, before)


def test_an_unknown_customer_is_refused_naming_it_and_leaves_no_trace() -> None:
    meter = meter_with_usage()
    before = snapshot(meter)
    with pytest.raises(UnknownCustomerError, match=r"customer.*mallory"):
        decide(meter, {**good_call(), "customer": "mallory"})
    assert "mallory" not in meter.registry.customers
    assert_no_trace_then_key_reusable(meter, before)


def test_an_unknown_feature_is_refused_naming_it_and_leaves_no_trace() -> None:
    meter = meter_with_usage()
    before = snapshot(meter)
    with pytest.raises(UnknownFeatureError, match=r"feature.*dall-e"):
        decide(meter, {**good_call(), "feature": "dall-e"})
    assert_no_trace_then_key_reusable(meter, before)


def test_the_largest_units_that_fit_the_ledger_are_not_an_error() -> None:
    meter = meter_with_usage()
    d = decide(meter, {**good_call(), "feature": DEAR, "units": AMOUNT_MAX // DEAR_PRICE})
    assert not d.allowed  # a refusal (the credits cannot pay), not invalid input
    assert [(r.code, r.layer) for r in d.reasons] == [("insufficient_funds", "credits")]


def test_the_longest_key_is_accepted() -> None:
    meter = meter_with_usage()
    d = decide(meter, {**good_call(), "key": "k" * 128})
    assert d.allowed and d.key == "k" * 128


def test_a_rejected_request_does_not_move_the_customers_clock() -> None:
    meter = meter_with_usage()
    with pytest.raises(UnknownFeatureError):
        decide(meter, {**good_call(), "feature": "dall-e", "now": T0 + DAY})
    with pytest.raises(InvalidRequestError):
        decide(meter, {**good_call(), "units": 0, "now": T0 + DAY})
    d = decide(meter, good_call())
    assert d.now == T0 + 1  # not T0 + DAY: the rejected requests were never seen


def test_every_bad_input_error_is_a_metering_error() -> None:
    for error in (InvalidRequestError, UnknownCustomerError, UnknownFeatureError):
        assert issubclass(error, MeteringError)
