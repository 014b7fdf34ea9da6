"""Every error the API can return, translated in one place: a status, a stable machine-readable
`code`, a message that says what to do, and the field at fault when there is one. Bodies never
carry a stack trace, a driver message about the server's files, or key material."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from ledger.core.errors import LedgerError
from ledger.metering import (
    CompletionConflictError,
    ConcurrentChangeError,
    GrantConflictError,
    IdempotencyConflictError,
    InvalidRequestError,
    NoPriceError,
    PlanError,
    UnknownCustomerError,
    UnknownDecisionError,
    UnknownFeatureError,
)
from ledger.metering.redis_windows import WindowStoreUnavailableError
from ledger.metering.settlement import UsageConflictError, UsageRejectedError
from ledger.store.base import StoreError, StoreUnavailableError

log = logging.getLogger("tollgate.api")


class ApiError(Exception):
    """An error the API raises itself (auth, unknown path resources, conflicts it detects)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


# (exception class, HTTP status, code), most specific first: the first match wins.
ERROR_TABLE: tuple[tuple[type[Exception], int, str], ...] = (
    (UnknownCustomerError, 404, "unknown_customer"),
    (UnknownDecisionError, 404, "unknown_decision"),
    (UnknownFeatureError, 422, "unknown_feature"),
    (InvalidRequestError, 422, "invalid_request"),
    (PlanError, 422, "invalid_plan"),
    (NoPriceError, 409, "no_price"),
    (IdempotencyConflictError, 409, "idempotency_conflict"),
    (CompletionConflictError, 409, "completion_conflict"),
    (GrantConflictError, 409, "grant_conflict"),
    (UsageConflictError, 409, "usage_conflict"),
    (UsageRejectedError, 422, "usage_rejected"),
    (ConcurrentChangeError, 409, "concurrent_change"),
    (WindowStoreUnavailableError, 503, "windows_unavailable"),
    (StoreUnavailableError, 503, "store_unavailable"),
    (StoreError, 503, "store_error"),
    (LedgerError, 409, "refused"),
)
_FIELDS: dict[type[Exception], str] = {
    UnknownCustomerError: "customer",
    UnknownFeatureError: "feature",
    UnknownDecisionError: "decision_id",
    GrantConflictError: "grant",
}


def body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def classify(exc: Exception) -> tuple[int, str, str | None]:
    """(status, code, field) of an engine error, by ERROR_TABLE."""
    for kind, status, code in ERROR_TABLE:
        if isinstance(exc, kind):
            field = getattr(exc, "field", None) or _FIELDS.get(kind)
            if isinstance(exc, UsageRejectedError) and not isinstance(exc, UsageConflictError):
                code = exc.reason
            return status, code, field
    return 500, "internal_error", None


def _message(exc: Exception, status: int) -> str:
    if status == 503:
        # Driver messages can name files, hosts and users: say what, not where.
        log.warning("backend unavailable: %s", exc)
        return "a backend (database or rate-window store) is unavailable; retry shortly"
    return str(exc)


async def engine_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LedgerError)
    status, code, field = classify(exc)
    return JSONResponse(body(code, _message(exc, status), field), status_code=status)


async def api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(
        body(exc.code, exc.message, exc.field), status_code=exc.status, headers=exc.headers
    )


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "(body)"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 naming the first field at fault (all of them in the message); the input is never
    echoed. Auth is checked first, so a caller without a valid key learns nothing here."""
    assert isinstance(exc, RequestValidationError)
    from ledger.api.deps import authorise_route

    refused = authorise_route(request)
    if refused is not None:
        return await api_error(request, refused)
    errors = [e for e in jsonable_encoder(exc.errors()) if isinstance(e, dict)]
    fields = [_location(tuple(e.get("loc", ()))) for e in errors]
    if errors and errors[0].get("type") == "json_invalid":
        return JSONResponse(body("invalid_json", "the body is not valid JSON"), status_code=422)
    lines = [f"{f}: {e.get('msg', 'invalid')}" for f, e in zip(fields, errors, strict=True)]
    message = "; ".join(lines[:10]) or "invalid request"
    return JSONResponse(
        body("invalid_request", message, fields[0] if fields else None), status_code=422
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own errors: unknown path (404), method (405, with every
    method the path has in `Allow`), and a body that cannot be read as text (a 422 like any
    malformed JSON, after the auth check)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        from ledger.api.deps import authorise_route

        refused = authorise_route(request)
        if refused is not None:
            return await api_error(request, refused)
        return JSONResponse(
            body("invalid_json", "the body is not valid JSON (UTF-8)"), status_code=422
        )
    if exc.status_code == 405:
        return JSONResponse(
            body("method_not_allowed", "method not allowed on this endpoint"),
            status_code=405,
            headers={"Allow": ", ".join(_methods(request))},
        )
    code = "not_found" if exc.status_code == 404 else "http_error"
    message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse(
        body(code, message), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


def _methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path."""
    path = request.url.path
    found: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            found |= route.methods or set()
    return sorted(found)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(body("internal_error", "internal error; it was logged"), status_code=500)
