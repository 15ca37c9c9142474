"""Plain ASGI middleware that reports every non-predict request to the request observers.

With tracing on it also gives each of these requests its server span (named by the route
template once routing has happened), so error bodies and log lines carry a trace id.

The predict pipeline reports its own requests (`PredictPipeline.report`); this does the same
for the FastAPI routes, with the route template Starlette resolved (`scope["route"]`),
never the raw path, so metrics stay bounded and URLs with secrets in them are never recorded.
Add it last (outermost), so requests refused by other middleware are counted too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from modelserve.http.context import PRINCIPAL_KEY, REQUEST_ID_KEY, notify_observers
from modelserve.observability import tracing
from modelserve.types import (
    ASGIApp,
    Message,
    Principal,
    Receive,
    RequestObserver,
    RequestRecord,
    Scope,
    Send,
)

UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The matched route's template ("/v1/models/{name}"), or "unmatched"."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


class AccessMiddleware:
    """Times each HTTP request and hands a RequestRecord to every observer when it ends."""

    def __init__(self, app: ASGIApp, *, observers: Sequence[RequestObserver]) -> None:
        self.app = app
        self.observers = tuple(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.observers or tracing.enabled):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope.get("method", "GET")
        # The route is known only once Starlette has routed: the span is renamed at the end.
        trace = tracing.start_request(method, "unmatched", scope["headers"])
        # A request that ends without a response (the app raised, the client left) counts as
        # the 500 the server would have sent.
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_template(scope)
            principal = scope.get(PRINCIPAL_KEY)
            if not isinstance(principal, Principal):
                principal = None
            request_id = scope.get(REQUEST_ID_KEY)
            if trace is not None:
                trace.finish(
                    status,
                    request_id=request_id if isinstance(request_id, str) else None,
                    principal=principal,
                    route=(method, route),
                )
            if self.observers:
                record = RequestRecord(
                    method,
                    route,
                    status,
                    time.perf_counter() - started,
                    request_id if isinstance(request_id, str) else "",
                    principal,
                    trace_id=trace.trace_id if trace is not None else None,
                )
                notify_observers(self.observers, record)
