"""Bad input and refusals: strict validation at the edge (422 naming the field, nothing
written) and the mapping of every engine error to a status and a machine-readable code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.core.limits import AMOUNT_MAX, TIMEOUT_MAX_SECONDS
from ledger.metering.meter import UNITS_MAX

from .helpers import DAY_NS, FEATURE, PLAN, Api, error_of, ledger_snapshot, make_api

DECIDE = {"customer": "alice", "feature": FEATURE, "units": 5, "idempotency_key": "e-1"}


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield make_api()


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {k: v for k, v in base.items() if k not in changes or changes[k] is not ...}
    out.update({k: v for k, v in changes.items() if v is not ...})
    return out


def usage(**changes: Any) -> dict[str, Any]:
    event = {
        "customer": "alice",
        "feature": FEATURE,
        "units": 1,
        "key": "u-1",
        "decision_id": "12345",
        "occurred_at": 1,
    }
    return {"events": [with_(event, **changes)]}


GRANT = {"grant": "g", "amount": 1000, "expires_at": 2**62}
INVALID: list[tuple[str, str, str, Any, str]] = [
    # (who, method, path, body, the field the 422 names)
    ("service", "POST", "/v1/decisions", with_(DECIDE, units=1.5), "units"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, units=5.0), "units"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, units=-1), "units"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, units=0), "units"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, units=UNITS_MAX + 1), "units"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, units="5"), "units"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, units=True), "units"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, units=...), "units"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, unit=5), "unit"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, customer="al|ice"), "customer"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, idempotency_key=""), "idempotency_key"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, timeout=TIMEOUT_MAX_SECONDS + 1), "timeout"),
    ("service", "POST", "/v1/decisions", with_(DECIDE, timeout=0), "timeout"),
    ("service", "POST", "/v1/decisions", [DECIDE], "(body)"),
    ("service", "POST", "/v1/decisions/abc/complete", {"actual_units": 1}, "decision_id"),
    ("service", "POST", "/v1/decisions/9223372036854775807/complete", {"actual_units": 1},
     "decision_id"),
    ("service", "POST", "/v1/decisions/12345/complete", {"actual_units": -1}, "actual_units"),
    ("service", "POST", "/v1/decisions/12345/complete", {"actual_units": 2.5}, "actual_units"),
    ("service", "POST", "/v1/decisions/12345/complete", {}, "actual_units"),
    ("service", "POST", "/v1/usage", {"events": []}, "events"),
    ("service", "POST", "/v1/usage", usage(units=-1), "events.0.units"),
    ("service", "POST", "/v1/usage", usage(decision_id=12345), "events.0.decision_id"),
    ("service", "POST", "/v1/usage", usage(decision_id="0"), "events.0.decision_id"),
    ("service", "POST", "/v1/usage", usage(decision_id=str(2**63 - 1)), "events.0.decision_id"),
    ("service", "POST", "/v1/usage", usage(occurred_at=2**63), "events.0.occurred_at"),
    ("service", "POST", "/v1/usage", usage(extra=1), "events.0.extra"),
    ("admin", "POST", "/v1/customers/alice/purchases", {"purchase_id": "p", "amount": 0},
     "amount"),
    ("admin", "POST", "/v1/customers/alice/purchases",
     {"purchase_id": "p", "amount": AMOUNT_MAX + 1}, "amount"),
    ("admin", "POST", "/v1/customers/alice/purchases", {"purchase_id": "p", "amount": 1e3},
     "amount"),
    ("admin", "POST", "/v1/customers/alice/purchases", {"amount": 1}, "purchase_id"),
    ("admin", "POST", "/v1/customers/alice/grants", with_(GRANT, expires_at=1), "expires_at"),
    ("admin", "POST", "/v1/customers/alice/grants", with_(GRANT, priority=-1), "priority"),
    ("admin", "POST", "/v1/customers/alice/grants", with_(GRANT, features=[]), "features"),
    ("admin", "POST", "/v1/customers", {"customer": "zed", "plan": "gold"}, "plan"),
    ("admin", "POST", "/v1/customers", {"customer": "zed", "plan": "pro", "org": "nowhere"},
     "org"),
    ("admin", "POST", "/v1/orgs", {"org": "o", "overage_cap": -5}, "overage_cap"),
    ("admin", "POST", "/v1/plans", with_(PLAN, version=0), "version"),
    ("admin", "POST", "/v1/plans", with_(PLAN, colour="red"), "colour"),
    ("admin", "POST", "/v1/plans", with_(PLAN, features={FEATURE: {"layers": [{"kind": "gold"}]}}),
     "features.codex.task.layers.0"),
    ("admin", "POST", "/v1/plans",
     with_(PLAN, features={FEATURE: {"layers": [{"kind": "credits"}],
                                     "reservation_timeout": 2**40}}),
     "features.codex.task.reservation_timeout"),
    ("admin", "POST", "/v1/plans",
     with_(PLAN, features={FEATURE: {"layers": [
         {"kind": "windows", "windows": [{"name": "w", "length": 2**40, "limit": 5}]}]}}),
     "features.codex.task.layers.0.windows.windows.0.length"),
    ("admin", "POST", "/v1/price-books", {"version": 2, "effective_from": 0,
                                          "prices": {FEATURE: 0.5}}, "prices.codex.task"),
    ("admin", "GET", "/v1/customers/alice/history?limit=0", None, "limit"),
    ("admin", "GET", "/v1/customers/alice/history?cursor=x", None, "cursor"),
    ("admin", "GET", "/v1/customers/alice/history?limt=5", None, "limt"),
    ("admin", "GET", "/v1/customers/alice/history?limit=5&=null", None, "''"),
    ("admin", "GET", "/v1/customers/alice/balances?limit=5", None, "limit"),
    ("service", "POST", "/v1/decisions?dry_run=1", DECIDE, "dry_run"),
    ("service", "POST", "/v1/decisions/12345/complete?force=1", {"actual_units": 1}, "force"),
]  # fmt: skip


@pytest.mark.parametrize(("who", "method", "path", "body", "field"), INVALID)
def test_invalid_requests_are_422_naming_the_field_and_write_nothing(
    api: Api, who: str, method: str, path: str, body: Any, field: str
) -> None:
    before = ledger_snapshot(api.meter)
    response = api.client.request(method, path, json=body, headers=api.as_(who))
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["field"] == field, error
    assert error["code"] in ("invalid_request", "invalid_json")
    assert ledger_snapshot(api.meter) == before


def test_an_unknown_query_parameter_is_named_with_what_the_endpoint_takes(api: Api) -> None:
    response = api.client.get("/v1/customers/alice/history?limt=5", headers=api.as_("admin"))
    assert response.status_code == 422
    assert "'limt'" in error_of(response)["message"]
    assert "takes: cursor, limit" in error_of(response)["message"]
    known = api.client.get("/v1/customers/alice/history?limit=5", headers=api.as_("admin"))
    assert known.status_code == 200, known.text


def test_an_unknown_query_parameter_is_checked_after_the_key(api: Api) -> None:
    response = api.client.get("/v1/customers/alice/history?limt=5")
    assert response.status_code == 401
    wrong_role = api.client.post("/v1/decisions?x=1", json=DECIDE, headers=api.as_("auditor"))
    assert wrong_role.status_code == 403


def test_malformed_json_is_422_invalid_json(api: Api) -> None:
    headers = {**api.as_("service"), "Content-Type": "application/json"}
    for path in ("/v1/decisions", "/v1/usage"):
        response = api.client.post(path, content=b'{"units": ', headers=headers)
        assert response.status_code == 422
        assert error_of(response)["code"] == "invalid_json"


def decide(api: Api, **changes: Any) -> Any:
    return api.client.post(
        "/v1/decisions", json=with_(DECIDE, **changes), headers=api.as_("service")
    )


def test_unknown_customer_and_feature(api: Api) -> None:
    before = ledger_snapshot(api.meter)
    missing = decide(api, customer="nobody", idempotency_key="x-1")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "unknown_customer"
    assert error_of(missing)["field"] == "customer"
    feature = decide(api, feature="sora.video", idempotency_key="x-2")
    assert feature.status_code == 422
    assert (error_of(feature)["code"], error_of(feature)["field"]) == ("unknown_feature", "feature")
    balances = api.client.get("/v1/customers/nobody/balances", headers=api.as_("admin"))
    assert balances.status_code == 404
    assert ledger_snapshot(api.meter) == before


def test_idempotency_conflict_names_the_field(api: Api) -> None:
    first = decide(api, idempotency_key="conflict-1")
    assert first.status_code == 200
    again = decide(api, idempotency_key="conflict-1")
    assert again.json() == first.json()
    before = ledger_snapshot(api.meter)
    other = decide(api, idempotency_key="conflict-1", units=6)
    assert other.status_code == 409
    error = error_of(other)
    assert (error["code"], error["field"]) == ("idempotency_conflict", "units")
    assert ledger_snapshot(api.meter) == before


def test_completion_conflict_and_unknown_decision(api: Api) -> None:
    made = decide(api, idempotency_key="complete-1").json()
    path = f"/v1/decisions/{made['decision_id']}/complete"
    service = api.as_("service")
    first = api.client.post(path, json={"actual_units": 4}, headers=service)
    assert first.status_code == 200, first.text
    assert api.client.post(path, json={"actual_units": 4}, headers=service).json() == first.json()
    before = ledger_snapshot(api.meter)
    other = api.client.post(path, json={"actual_units": 3}, headers=service)
    assert other.status_code == 409
    assert error_of(other)["code"] == "completion_conflict"
    unknown = api.client.post("/v1/decisions/12345/complete", json={"actual_units": 1},
                              headers=service)  # fmt: skip
    assert unknown.status_code == 404
    assert (error_of(unknown)["code"], error_of(unknown)["field"]) == (
        "unknown_decision",
        "decision_id",
    )
    fetched = api.client.get("/v1/decisions/12345", headers=service)
    assert fetched.status_code == 404
    assert ledger_snapshot(api.meter) == before


def test_no_price_in_force_is_409(api: Api) -> None:
    admin = api.as_("admin")
    plan = with_(PLAN, version=2, features={**PLAN["features"], "sora.video": {
        "layers": [{"kind": "credits"}]}})  # fmt: skip
    assert api.client.post("/v1/plans", json=plan, headers=admin).status_code == 200
    before = ledger_snapshot(api.meter)
    response = decide(api, feature="sora.video", idempotency_key="np-1")
    assert response.status_code == 409
    assert error_of(response)["code"] == "no_price"
    assert ledger_snapshot(api.meter) == before


def test_usage_outcomes_per_event(api: Api) -> None:
    made = decide(api, idempotency_key="usage-1").json()
    event = usage(key="u-ok", decision_id=made["decision_id"], units=5)["events"][0]
    service = api.as_("service")
    first = api.client.post("/v1/usage", json={"events": [event]}, headers=service).json()
    assert (first["accepted"], first["results"][0]["status"]) == (1, "accepted")
    batch = [
        event,
        with_(event, units=6),
        with_(event, key="u-other"),
        with_(event, key="u-x", decision_id="777"),
    ]
    out = api.client.post("/v1/usage", json={"events": batch}, headers=service).json()
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (0, 1, 3)
    statuses = [(r["status"], (r["error"] or {}).get("code")) for r in out["results"]]
    assert statuses == [
        ("duplicate", None),
        ("rejected", "usage_conflict"),
        ("rejected", "decision_already_reported"),
        ("rejected", "unknown_decision"),
    ]
    assert out["results"][0]["usage_id"] == first["results"][0]["usage_id"]


def test_funding_conflicts_are_409(api: Api) -> None:
    admin = api.as_("admin")
    path = "/v1/customers/alice/purchases"
    assert api.client.post(path, json={"purchase_id": "pc", "amount": 10}, headers=admin).is_success
    again = api.client.post(path, json={"purchase_id": "pc", "amount": 10}, headers=admin)
    assert again.json()["available"] == api.meter.balances("alice")["credits"]
    before = ledger_snapshot(api.meter)
    other = api.client.post(path, json={"purchase_id": "pc", "amount": 11}, headers=admin)
    assert other.status_code == 409
    assert error_of(other)["code"] == "refused"
    grant = {"grant": "gc", "amount": 10, "expires_at": time.time_ns() + DAY_NS}
    grants = "/v1/customers/alice/grants"
    assert api.client.post(grants, json=grant, headers=admin).status_code == 200
    before = ledger_snapshot(api.meter)
    changed = api.client.post(grants, json=with_(grant, amount=20), headers=admin)
    assert changed.status_code == 409
    assert (error_of(changed)["code"], error_of(changed)["field"]) == ("grant_conflict", "grant")
    unknown_org = api.client.post("/v1/orgs/nowhere/top-ups", json={"top_up_id": "t",
                                  "amount": 1}, headers=admin)  # fmt: skip
    assert unknown_org.status_code == 404
    assert error_of(unknown_org)["code"] == "unknown_org"
    assert ledger_snapshot(api.meter) == before


def test_unknown_paths_and_methods(api: Api) -> None:
    missing = api.client.get("/v1/nothing", headers=api.as_("admin"))
    assert (missing.status_code, error_of(missing)["code"]) == (404, "not_found")
    wrong = api.client.delete("/v1/plans", headers=api.as_("admin"))
    assert (wrong.status_code, error_of(wrong)["code"]) == (405, "method_not_allowed")


def test_an_unexpected_error_is_a_bare_500(monkeypatch: pytest.MonkeyPatch) -> None:
    api = make_api()

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail /var/lib/tollgate")

    monkeypatch.setattr(api.meter, "decide", explode)
    response = decide(api, idempotency_key="boom")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error"
    assert "secret" not in response.text


def test_a_closed_store_is_503_and_not_ready() -> None:
    api = make_api()
    api.meter.store.close()
    response = api.client.get("/v1/customers/alice/balances", headers=api.as_("admin"))
    assert response.status_code == 503
    assert error_of(response)["code"] == "store_error"
    assert "closed" not in response.text  # the driver's words stay in the log
    ready = api.client.get("/readyz")
    assert ready.status_code == 503
    assert error_of(ready)["code"] == "not_ready"
    assert api.client.get("/healthz").status_code == 200
