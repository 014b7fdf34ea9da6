"""Plans and price books: loading from TOML and JSON, strict validation (each error names its
field), durations, and the versions in force at a decision's time (DESIGN.md, "The metering
layer" and "Decided edge cases of the waterfall": Units and money, Decision fields, Clocks).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.metering import (
    Meter,
    NoPriceError,
    PlanError,
    load_plan,
    load_price_book,
    plan_from_data,
    price_book_from_data,
)
from ledger.metering.plans import WindowsLayer
from ledger.store.memory import MemoryStore

from .fixtures import (
    CREDITS,
    DAY,
    HOUR,
    MINUTE,
    T0,
    book_data,
    feature,
    make_meter,
    parts_of,
    plan_data,
    snapshot,
    window,
    window_used,
    windows_layer,
)

F = "codex.task"
G = "sora.video"

PLAN_TOML = """
plan = "pro"
version = 3
effective_from = 0

[features."codex.task"]
reservation_timeout = "30m"
layers = [
  { kind = "windows", windows = [
      { name = "5h", length = "5h", limit = 100 },
      { name = "7d", length = "7d", limit = 1000 },
  ] },
  { kind = "allowance", amount = 50, period = "week" },
  { kind = "grants" },
  { kind = "credits" },
]

[features."sora.video"]
layers = [{ kind = "credits" }]
"""

PLAN_JSON = {
    "plan": "pro",
    "version": 3,
    "effective_from": 0,
    "features": {
        "codex.task": {
            "reservation_timeout": "30m",
            "layers": [
                {
                    "kind": "windows",
                    "windows": [
                        {"name": "5h", "length": "5h", "limit": 100},
                        {"name": "7d", "length": "7d", "limit": 1000},
                    ],
                },
                {"kind": "allowance", "amount": 50, "period": "week"},
                {"kind": "grants"},
                {"kind": "credits"},
            ],
        },
        "sora.video": {"layers": [{"kind": "credits"}]},
    },
}

PRICES_TOML = """
version = 2
effective_from = 0

[prices]
"codex.task" = 7
"sora.video" = 250
"""


# --- loading -------------------------------------------------------------------------------------


def check_loaded_plan(plan: Any) -> None:
    assert (plan.plan, plan.version, plan.effective_from) == ("pro", 3, 0)
    codex = plan.features[F]
    assert [layer.kind for layer in codex.layers] == ["windows", "allowance", "grants", "credits"]
    windows_layer_ = codex.layers[0]
    assert isinstance(windows_layer_, WindowsLayer)
    assert [(w.name, w.length, w.limit) for w in windows_layer_.windows] == [
        ("5h", 5 * 3600, 100),
        ("7d", 7 * 86400, 1000),
    ]
    assert codex.reservation_timeout == 30 * 60
    assert plan.features[G].reservation_timeout == 3600  # the default


def test_a_plan_loads_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "pro.toml"
    path.write_text(PLAN_TOML, encoding="utf-8")
    check_loaded_plan(load_plan(path))


def test_a_plan_loads_from_json(tmp_path: Path) -> None:
    path = tmp_path / "pro.json"
    path.write_text(json.dumps(PLAN_JSON), encoding="utf-8")
    plan = load_plan(str(path))
    check_loaded_plan(plan)
    toml_path = tmp_path / "pro.toml"
    toml_path.write_text(PLAN_TOML, encoding="utf-8")
    assert plan == load_plan(toml_path)


@pytest.mark.parametrize("suffix", ["toml", "json"])
def test_a_price_book_loads_from_a_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"prices.{suffix}"
    if suffix == "toml":
        path.write_text(PRICES_TOML, encoding="utf-8")
    else:
        path.write_text(json.dumps(book_data({F: 7, G: 250}, version=2)), encoding="utf-8")
    book = load_price_book(path)
    assert (book.version, book.effective_from, book.prices) == (2, 0, {F: 7, G: 250})


def test_a_loaded_plan_and_price_book_drive_decisions(tmp_path: Path) -> None:
    (tmp_path / "pro.toml").write_text(PLAN_TOML, encoding="utf-8")
    (tmp_path / "prices.toml").write_text(PRICES_TOML, encoding="utf-8")
    meter = Meter(MemoryStore())
    meter.publish_plan(load_plan(tmp_path / "pro.toml"))
    meter.publish_prices(load_price_book(tmp_path / "prices.toml"))
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 10_000, "p1", T0)

    d = meter.decide("alice", F, 160, "k1", T0)  # 100 from the 5h window, 50 allowance, 10 paid
    assert (d.plan, d.plan_version, d.price_version, d.price) == ("pro", 3, 2, 7)
    assert d.timeout == 30 * 60
    assert parts_of(d) == [("windows", 100, 0), ("allowance", 50, 0), ("credits", 10, 70)]
    assert window_used(meter, "alice", F, "7d", 7 * DAY, T0) == 100


@pytest.mark.parametrize(
    ("name", "text"),
    [("bad.toml", "plan = "), ("bad.json", "{"), ("missing.toml", None)],
)
def test_an_unreadable_or_malformed_file_is_a_plan_error_naming_it(
    tmp_path: Path, name: str, text: str | None
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(PlanError, match=name):
        load_plan(path)


# --- strict validation ---------------------------------------------------------------------------


def base_plan() -> dict[str, Any]:
    return plan_data(
        {F: feature(windows_layer(window("5h", "5h", 10), window("7d", "7d", 50)), CREDITS)}
    )


def codex_layers(d: dict[str, Any]) -> list[dict[str, Any]]:
    return d["features"][F]["layers"]


def first_window(d: dict[str, Any]) -> dict[str, Any]:
    return codex_layers(d)[0]["windows"][0]


def with_shared(weights: dict[str, int]) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d["features"][G] = feature(windows_layer(shared=["team"]))
        codex_layers(d)[0]["shared"] = ["team"]
        d["shared_windows"] = [{**window("team", "1h", 100), "weights": weights}]

    return change


BAD_PLANS: dict[str, tuple[Callable[[dict[str, Any]], None], list[str]]] = {
    "unknown-layer-kind": (
        lambda d: codex_layers(d).append({"kind": "coupons"}),
        ["kind", "coupons"],
    ),
    "duplicate-layer": (lambda d: codex_layers(d).append({"kind": "credits"}), ["credits"]),
    "duplicate-window-name": (
        lambda d: codex_layers(d)[0]["windows"].append(window("5h", "1h", 3)),
        ["duplicate window", "5h"],
    ),
    "float-limit": (lambda d: first_window(d).update(limit=10.0), ["limit"]),
    "float-version": (lambda d: d.update(version=1.0), ["version"]),
    "float-allowance": (
        lambda d: codex_layers(d).insert(1, {"kind": "allowance", "amount": 5.0, "period": "day"}),
        ["amount"],
    ),
    "negative-limit": (lambda d: first_window(d).update(limit=-5), ["limit"]),
    "zero-limit": (lambda d: first_window(d).update(limit=0), ["limit"]),
    "zero-allowance": (
        lambda d: codex_layers(d).insert(1, {"kind": "allowance", "amount": 0, "period": "day"}),
        ["amount"],
    ),
    "unknown-period": (
        lambda d: codex_layers(d).insert(1, {"kind": "allowance", "amount": 5, "period": "year"}),
        ["period"],
    ),
    "unknown-field-in-feature": (lambda d: d["features"][F].update(colour="red"), ["colour"]),
    "unknown-field-in-window": (lambda d: first_window(d).update(burst=3), ["burst"]),
    "unknown-field-at-top": (lambda d: d.update(owner="me"), ["owner"]),
    "unknown-shared-window": (
        lambda d: codex_layers(d)[0].update(shared=["team"]),
        ["shared window", "team"],
    ),
    "missing-weight": (with_shared({F: 1}), ["weights", G]),
    "zero-weight": (with_shared({F: 1, G: 0}), ["weights", G]),
    "float-weight": (with_shared({F: 1, G: 1.5}), ["weights", G]),  # type: ignore[dict-item]
    "bad-duration": (lambda d: first_window(d).update(length="5 hours"), ["length"]),
    "zero-duration": (lambda d: first_window(d).update(length=0), ["length"]),
    "bad-timeout": (
        lambda d: d["features"][F].update(reservation_timeout="soon"),
        ["reservation_timeout"],
    ),
    "no-layers": (lambda d: d["features"][F].update(layers=[]), ["layers"]),
    "empty-windows-layer": (lambda d: codex_layers(d)[0].update(windows=[]), ["window"]),
    "negative-effective-from": (lambda d: d.update(effective_from=-1), ["effective_from"]),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_a_bad_plan_raises_a_plan_error_naming_the_field(case: str) -> None:
    change, named = BAD_PLANS[case]
    data = copy.deepcopy(base_plan())
    plan_from_data(data)  # the base plan is valid: the change alone makes it bad
    change(data)
    with pytest.raises(PlanError) as info:
        plan_from_data(data)
    for word in named:
        assert word in str(info.value)


@pytest.mark.parametrize(
    ("prices", "field"),
    [({F: 1.5}, f"prices.{F}"), ({F: 0}, f"prices.{F}"), ({F: -3}, f"prices.{F}"), ({}, "prices")],
)
def test_a_bad_price_book_raises_a_plan_error_naming_the_field(
    prices: dict[str, Any], field: str
) -> None:
    with pytest.raises(PlanError, match=field.replace(".", r"\.")):
        price_book_from_data(book_data(prices))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("30m", 30 * 60),
        ("5h", 5 * 3600),
        ("7d", 7 * 86400),
        ("2w", 14 * 86400),
        (90, 90),
    ],
)
def test_durations_parse(text: str | int, seconds: int) -> None:
    data = base_plan()
    first_window(data)["length"] = text
    data["features"][F]["reservation_timeout"] = text
    plan = plan_from_data(data)
    layer = plan.features[F].layers[0]
    assert isinstance(layer, WindowsLayer)
    assert layer.windows[0].length == seconds
    assert plan.features[F].reservation_timeout == seconds


@pytest.mark.parametrize("text", ["5x", "0h", "h", "-5h", "5.5h", "5H", " 5h", True, 0, -1, 2.0])
def test_malformed_durations_are_rejected(text: object) -> None:
    data = base_plan()
    first_window(data)["length"] = text
    with pytest.raises(PlanError, match="length"):
        plan_from_data(data)


# --- versions in force ---------------------------------------------------------------------------


def test_a_decision_records_the_plan_version_in_force_at_its_time() -> None:
    switch = T0 + DAY
    v1 = plan_data({F: feature(CREDITS)}, version=1, effective_from=0)
    v2 = plan_data(
        {F: feature(windows_layer(window("1h", "1h", 5)), CREDITS)},
        version=2,
        effective_from=switch,
    )
    meter = Meter(MemoryStore())
    meter.publish_plan(plan_from_data(v2))  # published out of order on purpose
    meter.publish_plan(plan_from_data(v1))
    meter.publish_prices(price_book_from_data(book_data({F: 7})))
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 1000, "p1", T0)

    before = meter.decide("alice", F, 2, "k1", switch - 1)
    at = meter.decide("alice", F, 2, "k2", switch)

    assert before.plan_version == 1
    assert parts_of(before) == [("credits", 2, 14)]  # v1 has no window
    assert at.plan_version == 2
    assert parts_of(at) == [("windows", 2, 0)]  # v2's window serves first


def test_the_price_in_force_includes_its_own_instant() -> None:
    switch = T0 + HOUR
    old, new = 7, 11
    meter = make_meter({F: feature(CREDITS)}, {F: old})
    meter.publish_prices(
        price_book_from_data(book_data({F: new}, version=2, effective_from=switch))
    )
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 10_000, "p1", T0)
    units = 3

    before = meter.decide("alice", F, units, "k1", switch - 1)
    at = meter.decide("alice", F, units, "k2", switch)

    assert (before.price_version, before.price, before.cost) == (1, old, units * old)
    assert (at.price_version, at.price, at.cost) == (2, new, units * new)
    assert meter.balances("alice")["credits"] == 10_000 - units * old - units * new


def test_the_price_is_locked_at_decision_time() -> None:
    switch = T0 + HOUR
    old, new = 7, 11
    meter = make_meter({F: feature(CREDITS)}, {F: old})
    meter.publish_prices(
        price_book_from_data(book_data({F: new}, version=2, effective_from=switch))
    )
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 10_000, "p1", T0)
    d = meter.decide("alice", F, 3, "k1", switch - 1)

    c = meter.complete(d.decision_id, 5, switch + MINUTE)  # above the estimate, after the switch

    assert c.charged == 5 * old
    assert meter.balances("alice")["credits"] == 10_000 - 5 * old


def test_a_feature_with_no_price_in_force_raises_and_consumes_nothing() -> None:
    meter = make_meter(
        {F: feature(windows_layer(window("1h", "1h", 10)), CREDITS), G: feature(CREDITS)},
        {F: 7},
    )
    meter.add_customer("alice", "pro", T0)
    meter.purchase("alice", 1000, "p1", T0)
    before = snapshot(meter)

    with pytest.raises(NoPriceError, match=G):
        meter.decide("alice", G, 1, "k1", T0)

    assert snapshot(meter) == before
    meter.publish_prices(
        price_book_from_data(book_data({F: 7, G: 9}, version=2, effective_from=T0))
    )
    d = meter.decide("alice", G, 1, "k1", T0)  # the key left no trace
    assert d.allowed and parts_of(d) == [("credits", 1, 9)]


def test_no_price_before_the_first_book_takes_effect() -> None:
    meter = Meter(MemoryStore())
    meter.publish_plan(
        plan_from_data(plan_data({F: feature(windows_layer(window("1h", "1h", 9)))}))
    )
    meter.publish_prices(price_book_from_data(book_data({F: 7}, effective_from=T0 + HOUR)))
    meter.add_customer("alice", "pro", T0)
    before = snapshot(meter)

    with pytest.raises(NoPriceError):
        meter.decide("alice", F, 1, "k1", T0)

    assert snapshot(meter) == before
    assert window_used(meter, "alice", F, "1h", HOUR, T0) == 0
    assert meter.decide("alice", F, 1, "k1", T0 + HOUR).allowed
