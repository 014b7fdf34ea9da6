"""Who may call what: every endpoint with every role, no key, a wrong key, and customer read
tokens for their own and for another customer. A refused call is 401 (no valid key) or 403
(wrong role, another customer's data), its body leaks nothing, and it writes nothing."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.api import Keyring, create_api_key, create_app
from ledger.api.auth import UnknownKeyError, key_hash, list_api_keys, revoke_api_key
from ledger.metering import Meter
from ledger.store.sqlite import SqliteStore

from .helpers import FEATURE, PLAN, PRICES, Api, TestClient, bearer, error_of, ledger_snapshot
from .helpers import make_api as _make_api

FAR = 2**62
PRINCIPALS = ("none", "wrong", "basic", "service", "admin", "auditor", "own", "other")

# (method, path, JSON body or None, the principals allowed). "{decision}" is filled in with a
# decision of alice's; "own" is alice's read token and "other" bob's, on alice's data.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, frozenset[str]]] = [
    (
        "POST",
        "/v1/decisions",
        {"customer": "alice", "feature": FEATURE, "units": 1, "idempotency_key": "auth-d"},
        frozenset({"service"}),
    ),
    ("GET", "/v1/decisions/{decision}", None, frozenset({"service", "admin", "auditor"})),
    ("POST", "/v1/decisions/{decision}/complete", {"actual_units": 3}, frozenset({"service"})),
    (
        "POST",
        "/v1/usage",
        {
            "events": [
                {
                    "customer": "alice",
                    "feature": FEATURE,
                    "units": 1,
                    "key": "auth-u",
                    "decision_id": "{decision}",
                    "occurred_at": 1,
                }
            ]
        },
        frozenset({"service"}),
    ),
    ("POST", "/v1/plans", PLAN, frozenset({"admin"})),
    ("GET", "/v1/plans", None, frozenset({"admin", "auditor"})),
    ("POST", "/v1/price-books", PRICES, frozenset({"admin"})),
    ("GET", "/v1/price-books", None, frozenset({"admin", "auditor"})),
    ("POST", "/v1/orgs", {"org": "acme", "overage_cap": 0}, frozenset({"admin"})),
    (
        "POST",
        "/v1/orgs/acme/top-ups",
        {"top_up_id": "t-auth", "amount": 1000},
        frozenset({"admin"}),
    ),
    ("POST", "/v1/customers", {"customer": "carol", "plan": "pro"}, frozenset({"admin"})),
    ("GET", "/v1/customers/alice", None, frozenset({"admin", "auditor", "own"})),
    (
        "POST",
        "/v1/customers/alice/grants",
        {"grant": "g-auth", "amount": 1000, "expires_at": FAR},
        frozenset({"admin"}),
    ),
    (
        "POST",
        "/v1/customers/alice/purchases",
        {"purchase_id": "p-auth", "amount": 1000},
        frozenset({"admin"}),
    ),
    (
        "GET",
        "/v1/customers/alice/balances",
        None,
        frozenset({"service", "admin", "auditor", "own"}),
    ),
    ("GET", "/v1/customers/alice/history", None, frozenset({"admin", "auditor", "own"})),
    ("GET", "/v1/audit", None, frozenset({"admin", "auditor"})),
    ("GET", "/v1/settlement", None, frozenset({"admin", "auditor"})),
    ("POST", "/v1/settlement/run", None, frozenset({"admin"})),
    ("POST", "/v1/keys", {"role": "auditor"}, frozenset({"admin"})),
]
PUBLIC = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"]


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[Api, str]]:
    api = _make_api()
    admin = api.as_("admin")
    assert api.client.post("/v1/orgs", json={"org": "acme"}, headers=admin).status_code == 200
    decided = api.client.post(
        "/v1/decisions",
        json={"customer": "alice", "feature": FEATURE, "units": 5, "idempotency_key": "auth-0"},
        headers=api.as_("service"),
    )
    assert decided.status_code == 200, decided.text
    yield api, decided.json()["decision_id"]


def headers_for(api: Api, principal: str) -> dict[str, str]:
    if principal == "none":
        return {}
    if principal == "wrong":
        return bearer("tg_" + "A" * 43)
    if principal == "basic":
        return {"Authorization": "Basic " + api.keys["admin"]}
    name = {"own": "alice", "other": "bob"}.get(principal, principal)
    return api.as_(name)


def fill(value: Any, decision: str) -> Any:
    return json.loads(json.dumps(value).replace("{decision}", decision))


def test_the_table_names_every_endpoint_of_the_openapi_document(api: tuple[Api, str]) -> None:
    client = api[0].client
    paths = client.get("/openapi.json").json()["paths"]
    documented = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    tested = {(m, p.replace("{decision}", "{decision_id}")) for m, p, _, _ in ENDPOINTS}
    tested |= {("GET", p) for p in PUBLIC if p in paths}
    tested = {(m, p.replace("/alice", "/{customer}").replace("/acme", "/{org}")) for m, p in tested}
    assert documented == tested


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_every_endpoint_with_every_principal(
    api: tuple[Api, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    allowed: frozenset[str],
    principal: str,
) -> None:
    app, decision = api
    before = ledger_snapshot(app.meter)
    response = app.client.request(
        method,
        fill(path, decision),
        json=fill(body, decision) if body is not None else None,
        headers=headers_for(app, principal),
    )
    if principal in allowed:
        assert response.is_success, (response.status_code, response.text)
        return
    expected = 401 if principal in ("none", "wrong", "basic") else 403
    assert response.status_code == expected, response.text
    error = error_of(response)
    assert error["code"] == ("unauthorized" if expected == 401 else "forbidden")
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert ledger_snapshot(app.meter) == before, "a refused request wrote something"


@pytest.mark.parametrize("path", PUBLIC)
def test_health_docs_and_metrics_need_no_key(api: tuple[Api, str], path: str) -> None:
    response = api[0].client.get(path)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer tg_nope"}, 401), ("auditor", 403)],
)
def test_auth_is_checked_before_the_body(
    api: tuple[Api, str], headers: dict[str, str] | str, status: int
) -> None:
    """Without the right key the caller learns nothing about its body: no 422, for a bad
    field, for malformed JSON, on the hot path (lean) and on an ordinary route."""
    app = api[0]
    sent = app.as_(headers) if isinstance(headers, str) else headers
    json_headers = {**sent, "Content-Type": "application/json"}
    for path, content in (
        ("/v1/decisions", b'{"units": 1.5}'),
        ("/v1/decisions", b"{not json"),
        ("/v1/customers", b'{"customer": 7}'),
        ("/v1/customers", b"{not json"),
    ):
        response = app.client.post(path, content=content, headers=json_headers)
        assert response.status_code == status, (path, content, response.text)


def test_keys_are_stored_as_sha256_only(api: tuple[Api, str]) -> None:
    app = api[0]
    rows = app.meter.tables.read(
        app.meter.store, lambda cur: app.meter.tables.records(cur, "api_key")
    )
    assert len(rows) >= 5
    stored = json.dumps(rows)
    for key in app.keys.values():
        assert key not in stored
        assert hashlib.sha256(key.encode()).hexdigest() in {digest for digest, _ in rows}


def test_a_key_made_by_the_admin_endpoint_works_at_once_and_is_shown_once(
    api: tuple[Api, str],
) -> None:
    app = api[0]
    made = app.client.post("/v1/keys", json={"role": "customer", "customer": "bob"},
                           headers=app.as_("admin"))  # fmt: skip
    assert made.status_code == 200, made.text
    token = made.json()["key"]
    assert made.json()["key_id"] == hashlib.sha256(token.encode()).hexdigest()[:12]
    assert app.client.get("/v1/customers/bob/balances", headers=bearer(token)).status_code == 200
    assert app.client.get("/v1/customers/alice/balances", headers=bearer(token)).status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "customer"}, "customer"),
        ({"role": "service", "customer": "alice"}, "customer"),
        ({"role": "root"}, "role"),
    ],
)
def test_key_requests_that_make_no_sense_are_422(
    api: tuple[Api, str], body: dict[str, Any], field: str
) -> None:
    app = api[0]
    before = ledger_snapshot(app.meter)
    response = app.client.post("/v1/keys", json=body, headers=app.as_("admin"))
    assert response.status_code == 422
    assert error_of(response)["field"] == field
    assert ledger_snapshot(app.meter) == before


def test_a_read_token_for_an_unknown_customer_is_refused(api: tuple[Api, str]) -> None:
    app = api[0]
    response = app.client.post(
        "/v1/keys", json={"role": "customer", "customer": "nobody"}, headers=app.as_("admin")
    )
    assert response.status_code == 404
    assert error_of(response)["code"] == "unknown_customer"


def test_a_key_made_by_another_process_is_known_after_a_refresh(tmp_path: Path) -> None:
    """`tollgate keys create` writes to the database while the server runs: an unknown key
    makes the server re-read the keys (at most once per refresh interval)."""
    path = tmp_path / "keys.db"
    served = Meter(SqliteStore(path))
    clock = [0.0]
    keyring = Keyring(served, refresh_interval_s=1.0, monotonic=lambda: clock[0])
    client = TestClient(create_app(served, keyring=keyring), raise_server_exceptions=False)
    other = Meter(SqliteStore(path))
    key = create_api_key(other, "auditor", time.time_ns())
    assert client.get("/v1/plans", headers=bearer(key)).status_code == 401  # within 1 s
    clock[0] = 1.0
    assert client.get("/v1/plans", headers=bearer(key)).status_code == 200
    other.store.close()
    served.store.close()


def test_a_revoked_key_is_refused_on_a_running_server_within_the_max_age(tmp_path: Path) -> None:
    """`tollgate keys revoke` writes to the database while servers run: each server re-reads
    its keys once its copy is older than `max_age_s`, so the key stops working there."""
    path = tmp_path / "keys.db"
    served = Meter(SqliteStore(path))
    clock = [0.0]
    keyring = Keyring(served, refresh_interval_s=1.0, max_age_s=5.0, monotonic=lambda: clock[0])
    client = TestClient(create_app(served, keyring=keyring), raise_server_exceptions=False)
    other = Meter(SqliteStore(path))
    key = create_api_key(other, "auditor", time.time_ns())
    clock[0] = 1.0
    assert client.get("/v1/plans", headers=bearer(key)).status_code == 200
    [record] = list_api_keys(other)
    revoked = revoke_api_key(other, record.key_id, time.time_ns())
    assert revoked.revoked_at is not None and revoked.key_id == record.key_id
    clock[0] = 4.9
    assert client.get("/v1/plans", headers=bearer(key)).status_code == 200  # the cached copy
    clock[0] = 6.0
    response = client.get("/v1/plans", headers=bearer(key))
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    other.store.close()
    served.store.close()


def test_keys_are_listed_without_the_key_and_revoked_once(tmp_path: Path) -> None:
    meter = Meter(SqliteStore(tmp_path / "keys.db"))
    made_at = time.time_ns()
    admin = create_api_key(meter, "admin", made_at)
    create_api_key(meter, "service", made_at + 1)
    listed = list_api_keys(meter)
    assert [(r.role.value, r.created_at, r.revoked_at) for r in listed] == [
        ("admin", made_at, None),
        ("service", made_at + 1, None),
    ]
    assert listed[0].key_id == key_hash(admin)[:12]
    first = revoke_api_key(meter, listed[0].key_id, made_at + 10)
    again = revoke_api_key(meter, listed[0].key_id, made_at + 20)
    assert first.revoked_at == again.revoked_at == made_at + 10
    assert [r.revoked_at for r in list_api_keys(meter)] == [made_at + 10, None]
    assert Keyring(meter).lookup(admin) is None
    for wrong in ("0" * 12, "xyz", listed[0].key_id.upper()):
        with pytest.raises(UnknownKeyError):
            revoke_api_key(meter, wrong, made_at + 30)
    # Two stored hashes sharing the first 12 digits: the id names neither, nothing is revoked.
    body = '{"role":"auditor","customer":null,"created_at":1}'
    twins = [listed[1].key_id + "0" * 52, listed[1].key_id + "1" * 52]
    for digest in twins:
        meter.tables.write(
            meter.store,
            made_at,
            lambda cur, d=digest: meter.tables.put_record(cur, "api_key", d, body),
        )
    with pytest.raises(UnknownKeyError, match="3 keys have"):
        revoke_api_key(meter, listed[1].key_id, made_at + 40)
    assert all(r.revoked_at is None for r in list_api_keys(meter) if r.role.value != "admin")
    meter.store.close()
