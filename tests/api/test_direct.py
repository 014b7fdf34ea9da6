"""`POST /v1/decisions` is served directly (ledger.api.direct): past FastAPI's middleware and
router, with the same answers, errors included, as the routed path gives."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from ledger.api import create_app
from ledger.api.direct import LeanApp
from tests.api.helpers import FEATURE, Api, make_api

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


class Seen:
    """A middleware that records the (method, path) of every HTTP request it passes on."""

    requests: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Seen.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


@pytest.fixture
def api() -> Api:
    return make_api()


def _app(api: Api) -> LeanApp:
    app = api.client.app
    assert isinstance(app, LeanApp)
    return app


@contextlib.contextmanager
def routed(app: LeanApp) -> Iterator[None]:
    """Every request through FastAPI's middleware and router, as without direct serving."""
    direct, app.direct = app.direct, {}
    try:
        yield
    finally:
        app.direct = direct


def _answer(response: Any) -> tuple[int, bytes, dict[str, str]]:
    kept = ("content-type", "www-authenticate", "allow")
    return response.status_code, response.content, {h: response.headers.get(h, "") for h in kept}


def test_a_decision_skips_the_middleware_and_other_requests_pass_it(api: Api) -> None:
    app = create_app(api.meter)
    app.add_middleware(Seen)
    client = TestClient(app, raise_server_exceptions=False)
    Seen.requests = []
    request = {"customer": "alice", "feature": FEATURE, "units": 3, "idempotency_key": "k1"}
    made = client.post("/v1/decisions", json=request, headers=api.as_("service"))
    assert made.status_code == 200, made.text
    decision_id = made.json()["decision_id"]
    assert client.get(f"/v1/decisions/{decision_id}", headers=api.as_("service")).is_success
    assert client.get("/v1/decisions", headers=api.as_("service")).status_code == 405
    assert Seen.requests == [("GET", f"/v1/decisions/{decision_id}"), ("GET", "/v1/decisions")]


def test_a_decision_served_directly_is_the_one_the_router_replays(api: Api) -> None:
    """The replay of a key gives the recorded decision: byte for byte the first answer."""
    app, service = _app(api), api.as_("service")
    for key, first_direct, units in (("direct-first", True, 120), ("routed-first", False, 50)):
        body = {"customer": "alice", "feature": FEATURE, "units": units, "idempotency_key": key}
        with contextlib.nullcontext() if first_direct else routed(app):
            first = api.client.post("/v1/decisions", json=body, headers=service)
        with routed(app) if first_direct else contextlib.nullcontext():
            again = api.client.post("/v1/decisions", json=body, headers=service)
        assert first.status_code == 200, first.text
        assert first.json()["allowed"] and first.json()["parts"][-1]["layer"] == "credits"
        assert _answer(again) == _answer(first)


BAD_REQUESTS: list[tuple[str, str | None, bytes, str]] = [
    # (what, who, body, content type)
    ("no key", None, b'{"customer": "alice"}', "application/json"),
    ("an unknown key", "tg_nope", b"{}", "application/json"),
    ("a role that may not decide", "auditor", b"{}", "application/json"),
    ("a customer's read token", "alice", b"{}", "application/json"),
    ("malformed JSON", "service", b'{"customer": ', "application/json"),
    ("not JSON", "service", b"customer=alice", "application/x-www-form-urlencoded"),
    ("a bad field", "service",
     b'{"customer": "alice", "feature": "codex.task", "units": 1.5, "idempotency_key": "x"}',
     "application/json"),
    ("an unknown field", "service",
     b'{"customer": "alice", "feature": "codex.task", "units": 1, "idempotency_key": "x", '
     b'"colour": "red"}', "application/json"),
    ("an unknown customer", "service",
     b'{"customer": "carol", "feature": "codex.task", "units": 1, "idempotency_key": "x"}',
     "application/json"),
    ("an unknown feature", "service",
     b'{"customer": "alice", "feature": "video", "units": 1, "idempotency_key": "x"}',
     "application/json"),
    ("zero units", "service",
     b'{"customer": "alice", "feature": "codex.task", "units": 0, "idempotency_key": "x"}',
     "application/json"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "who", "content", "media"), BAD_REQUESTS)
def test_a_refused_request_gets_the_routed_answer(
    api: Api, what: str, who: str | None, content: bytes, media: str
) -> None:
    headers = {**api.as_(who), "Content-Type": media}
    direct = api.client.post("/v1/decisions", content=content, headers=headers)
    with routed(_app(api)):
        through_router = api.client.post("/v1/decisions", content=content, headers=headers)
    assert direct.status_code in (401, 403, 404, 422), (what, direct.text)
    assert _answer(direct) == _answer(through_router), what


def test_an_unknown_query_parameter_gets_the_routed_answer(api: Api) -> None:
    body = {"customer": "alice", "feature": FEATURE, "units": 1, "idempotency_key": "q"}
    sent = {"json": body, "headers": api.as_("service"), "params": {"dry_run": "1"}}
    direct = api.client.post("/v1/decisions", **sent)  # type: ignore[arg-type]
    with routed(_app(api)):
        through_router = api.client.post("/v1/decisions", **sent)  # type: ignore[arg-type]
    assert direct.status_code == 422, direct.text
    assert _answer(direct) == _answer(through_router)


def test_an_unexpected_error_is_answered_500_and_raised_to_the_server(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the meter broke")

    monkeypatch.setattr(api.meter, "decide", broken)
    body = {"customer": "alice", "feature": FEATURE, "units": 1, "idempotency_key": "e"}
    headers = api.as_("service")
    direct = api.client.post("/v1/decisions", json=body, headers=headers)
    with routed(_app(api)):
        through_router = api.client.post("/v1/decisions", json=body, headers=headers)
    assert direct.status_code == 500
    assert _answer(direct) == _answer(through_router)
    raising = TestClient(api.client.app)  # raise_server_exceptions: what the server sees
    for serve in (contextlib.nullcontext, lambda: routed(_app(api))):
        with serve(), pytest.raises(RuntimeError, match="the meter broke"):
            raising.post("/v1/decisions", json=body, headers=headers)


def test_under_a_root_path_the_router_decides_what_is_served(api: Api) -> None:
    """With root path /v1 the route path of /v1/decisions is /decisions: no such route."""
    body = {"customer": "alice", "feature": FEATURE, "units": 1, "idempotency_key": "r"}
    client = TestClient(api.client.app, root_path="/v1", raise_server_exceptions=False)
    found = client.post("/v1/decisions", json=body, headers=api.as_("service"))
    assert found.status_code == 404, found.text
    served = client.post("/v1/v1/decisions", json=body, headers=api.as_("service"))
    assert served.status_code == 200, served.text


def test_the_handler_gets_the_scope_the_router_would_give(api: Api) -> None:
    from fastapi import Request, Response

    from ledger.api import routes

    app, seen = _app(api), {}
    route, handler = app.direct[("POST", "/v1/decisions")]

    async def probe(request: Request) -> Response:
        seen.update((k, request.scope[k]) for k in ("app", "route", "endpoint", "path_params"))
        return await handler(request)

    app.direct[("POST", "/v1/decisions")] = (route, probe)
    body = {"customer": "alice", "feature": FEATURE, "units": 1, "idempotency_key": "s"}
    assert api.client.post("/v1/decisions", json=body, headers=api.as_("service")).is_success
    assert seen["app"] is app and seen["endpoint"] is routes.decide and seen["path_params"] == {}
    assert seen["route"].path == "/v1/decisions" and seen["route"].endpoint is routes.decide
