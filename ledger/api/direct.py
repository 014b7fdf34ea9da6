"""The hot path served without FastAPI's per-request machinery.

FastAPI sends every request through Starlette's middleware stack (server errors, telemetry,
body limit, exception handlers, the dependencies' exit stacks), then the router, which tries
each route in turn, then the route's request wrapper. For `POST /v1/decisions` that machinery
cost about a third of the server's CPU (bench/RESULTS.md, "HTTP"). `LeanApp`
serves a request whose method and exact path name a route with a lean handler
(`ledger.api.deps.LEAN`) by calling that handler itself, with the scope the router would have
given it, and answers what the handler raises with the app's own exception handlers, as
Starlette's middleware would: a handler registered for `Exception` answers 500 and the
exception goes on to the server, which logs it. Every other request, and every request under a
root path, goes through FastAPI unchanged; a middleware added to the app does not see the
requests served directly.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from ledger.api.deps import LEAN, Handler


class LeanApp(FastAPI):
    """A FastAPI app that serves its lean routes directly (see the module)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direct: dict[tuple[str, str], tuple[APIRoute, Handler]] = {}
        """(method, path) -> the route and its lean handler; empty: every request is routed."""

    def serve_lean_routes_directly(self, router: APIRouter) -> None:
        """Index `router`'s lean routes without path parameters; `router` is one this app
        included without a prefix (its routes' paths are the app's)."""
        self.direct = {
            (method, route.path): (route, LEAN[route.endpoint])
            for route in router.routes
            if isinstance(route, APIRoute) and route.endpoint in LEAN and "{" not in route.path
            for method in route.methods or ()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = None
        # Under a root path the router matches a path it derives; leave those to it.
        if scope["type"] == "http" and not self.root_path and not scope.get("root_path"):
            found = self.direct.get((scope["method"], scope["path"]))
        if found is None:
            await super().__call__(scope, receive, send)
            return
        route, handler = found
        scope.update(app=self, route=route, endpoint=route.endpoint, path_params={})
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except Exception as exc:
            await self._answer(request, exc, send)
            return
        await response(scope, receive, send)

    async def _answer(self, request: Request, exc: Exception, send: Send) -> None:
        """Send the response of the app's handler for `exc`, looked up as Starlette looks it
        up (an HTTPException's status first, then the exception's classes, most specific
        first); raise `exc` on when only the handler for `Exception` answers it, or none."""
        handlers = self.exception_handlers
        handler = handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
        cls: type[BaseException] | None = None
        if handler is None:
            cls = next((c for c in type(exc).__mro__ if c in handlers), None)
            handler = handlers.get(cls) if cls is not None else None
        if handler is None:
            raise exc
        response = handler(request, exc)
        if inspect.isawaitable(response):
            response = await response
        await response(request.scope, request.receive, send)
        if cls is Exception:
            raise exc
