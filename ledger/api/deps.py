"""What every endpoint depends on: the shared `Service`, and `Allow`, the auth check.

The auth check runs as the route's first dependency, before the body is validated, so a caller
without a valid key gets 401 (and a key of the wrong role 403) whatever it sent; the 422
handler runs the same check first for bodies that fail to parse.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from ledger.api import models
from ledger.api.auth import Keyring, Principal, Role
from ledger.api.batching import DecisionBatcher
from ledger.api.errors import ApiError
from ledger.api.metrics import Metrics
from ledger.metering import DecideRequest, Decision, Meter

M = TypeVar("M", bound=BaseModel)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer tg_...`: an API key or a customer read token.",
)


class FastJSON(Response):
    """JSON with no validation pass: for bodies built from the engine's own records."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode()


@dataclass
class Service:
    """What the endpoints share: the meter, the keys, the metrics and the clock. On a shared
    database, decisions go through `batcher` (group commit)."""

    meter: Meter
    keyring: Keyring
    metrics: Metrics
    clock: Callable[[], int]
    shared: bool
    batcher: DecisionBatcher | None = None

    def __post_init__(self) -> None:
        if self.shared and self.batcher is None:
            self.batcher = DecisionBatcher(self.meter)

    async def decide(self, q: DecideRequest) -> Decision:
        """`Meter.decide`, through the batcher when there is one."""
        if self.batcher is not None:
            return await self.batcher.decide(q)
        return self.meter.decide(q.customer, q.feature, q.units, q.key, q.now, timeout=q.timeout)


def the_service(request: Request) -> Service:
    svc: Service = request.app.state.tollgate
    return svc


async def service(request: Request) -> Service:
    """The dependency (async: a plain `def` dependency would run in the thread pool)."""
    return the_service(request)


class Allow:
    """The auth dependency of a route: which roles may call it, and whether a customer read
    token may (for its own customer, the `{customer}` in the path)."""

    def __init__(self, *roles: Role, own_customer: bool = False) -> None:
        self.roles = frozenset(roles)
        self.own_customer = own_customer

    def refusal(self, request: Request) -> tuple[Principal | None, ApiError | None]:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        principal = None
        if scheme.lower() == "bearer" and key:
            principal = the_service(request).keyring.lookup(key.strip())
        if principal is None:
            return None, ApiError(
                401,
                "unauthorized",
                "a valid API key is required: send `Authorization: Bearer <key>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if principal.role in self.roles:
            return principal, None
        if self.own_customer and principal.role is Role.CUSTOMER:
            if principal.customer == request.path_params.get("customer"):
                return principal, None
            return None, ApiError(403, "forbidden", "this token may read only its own customer")
        allowed = ", ".join(sorted(r.value for r in self.roles))
        return None, ApiError(403, "forbidden", f"this endpoint needs a key with role {allowed}")

    async def __call__(
        self,
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Principal:
        principal, refused = self.refusal(request)
        if refused is not None:
            raise refused
        assert principal is not None
        refuse_unknown_query(request)
        return principal


def refuse_unknown_query(request: Request) -> None:
    """A query parameter the endpoint does not take is a 422 naming it, not ignored: a
    misspelt `limt=10` must not silently mean the default."""
    if not request.query_params:
        return
    names = _query_names(getattr(request.scope.get("route"), "dependant", None))
    unknown = [name for name in request.query_params if name not in names]
    if unknown:
        takes = ", ".join(sorted(names)) or "none"
        message = f"unknown query parameter {unknown[0]!r} (this endpoint takes: {takes})"
        loc = ("query", unknown[0] or repr(unknown[0]))
        raise RequestValidationError([{"type": "extra_forbidden", "loc": loc, "msg": message}])


def _query_names(dependant: Any) -> set[str]:
    """The query parameters of an endpoint and of everything it depends on."""
    if dependant is None:
        return set()
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def authorise_route(request: Request) -> ApiError | None:
    """The refusal the matched route's auth would give (None: allowed, or a public route)."""
    route = request.scope.get("route")
    for dependency in getattr(getattr(route, "dependant", None), "dependencies", ()):
        if isinstance(dependency.call, Allow):
            return dependency.call.refusal(request)[1]
    return None


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": models.ErrorOut, "description": text}
    for status, text in (
        (401, "Missing or unknown API key"),
        (403, "The key's role may not call this, or another customer's data"),
        (404, "Unknown customer, organisation, decision or path"),
        (409, "Conflict with what was recorded (idempotency, completion, ledger refusal)"),
        (422, "Invalid request: the message and `field` name the field"),
        (503, "The database or the rate-window store is unavailable"),
    )
}


SERVICE_ONLY = Allow(Role.SERVICE)
SERVICE = Depends(SERVICE_ONLY)
ADMIN = Depends(Allow(Role.ADMIN))
READ = Depends(Allow(Role.ADMIN, Role.AUDITOR))
READ_DECISIONS = Depends(Allow(Role.SERVICE, Role.ADMIN, Role.AUDITOR))
READ_BALANCES = Depends(Allow(Role.SERVICE, Role.ADMIN, Role.AUDITOR, own_customer=True))
READ_OWN = Depends(Allow(Role.ADMIN, Role.AUDITOR, own_customer=True))

Svc = Annotated[Service, Depends(service)]
CustomerPath = Annotated[str, Path(pattern=models.NAME_PATTERN)]
OrgPath = Annotated[str, Path(pattern=models.NAME_PATTERN)]
DecisionPath = Annotated[str, Path(pattern=models.ID_PATTERN)]

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
LEAN: dict[Callable[..., Any], Handler] = {}
"""Endpoint -> its lean handler (see LeanRoute)."""


class LeanRoute(APIRoute):
    """A route FastAPI documents from its endpoint's signature as usual, but whose requests,
    when the endpoint has a lean handler in LEAN, run that handler instead: the same auth
    check, the same strict model (validated from the raw JSON by pydantic-core) and the same
    error bodies, without FastAPI's per-request dependency solving. For the hot path only
    (`POST /v1/decisions`), which `ledger.api.direct.LeanApp` also serves without the
    middleware and the router: this route is what serves it under a root path."""

    def get_route_handler(self) -> Handler:
        lean = LEAN.get(self.endpoint)
        return lean if lean is not None else super().get_route_handler()


def _body_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


async def strict_body(request: Request, model: type[M]) -> M:
    """`model` from the request's JSON body, or the RequestValidationError FastAPI would
    raise (the 422 handler names the field)."""
    raw = await request.body()
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        problem = "send a JSON object with Content-Type: application/json"
        raise RequestValidationError([{"type": "model_type", "loc": ("body",), "msg": problem}])
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(_body_errors(exc)) from None
