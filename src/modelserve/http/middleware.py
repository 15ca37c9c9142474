"""Plain ASGI middleware for the FastAPI routes: request ids and the body-size cap.

The predict pipeline (`http/pipeline.py`) does the same for the predict routes, which are
dispatched before this middleware; both call the one implementation of each check and of the
request id in `http/context.py`.

A body that passes the cap while a route is reading it (chunked, no Content-Length) is
answered here with 413 and the route is told the client went away: raised inside `receive`,
the error would reach FastAPI's body parser, which turns any exception into a 400. Bodies with
a Content-Encoding are refused with 415: nothing here inflates a body, so decoding it as if it
were plain would misread it (and inflating it would open the door to compression bombs).
"""

from __future__ import annotations

from collections.abc import Mapping

from modelserve.auth.guard import refuse_query_credentials
from modelserve.errors import ModelserveError
from modelserve.http.context import (
    DEFAULT_MAX_HEADERS,
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    RequestLimits,
    check_encoding,
    check_size,
    header,
    request_id_from,
    too_large,
)
from modelserve.http.errors import render_error
from modelserve.types import ASGIApp, Message, Receive, Scope, Send

# Starlette's form parser refuses a field over 1 MiB with a 400; an urlencoded body over that
# size can only be such a field, so it is refused here first, as what it is: too large (413).
FORM_MAX_BODY_BYTES = 1024 * 1024
FORM_URLENCODED = b"application/x-www-form-urlencoded"


class RequestContextMiddleware:
    """Tags every non-predict request with a request id (echoed back) and caps body size.

    With auth on (`app.state.auth` set, as `http/deps.py` reads it), a query string holding
    something named like a credential is refused with 401 on every route, public ones
    included (S8); the predict endpoint makes the same check itself.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_headers: int = DEFAULT_MAX_HEADERS,
        body_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.limits = RequestLimits(max_body_bytes=max_body_bytes, max_headers=max_headers)
        self.max_body_bytes = max_body_bytes
        # Exact paths with their own cap (artifact uploads stream far more than a request).
        self.body_limits = dict(body_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope.get(REQUEST_ID_KEY) or request_id_from(scope["headers"])
        scope[REQUEST_ID_KEY] = request_id
        encoded = request_id.encode("ascii")
        limit = self.body_limits.get(scope["path"], self.max_body_bytes)
        content_type = header(scope["headers"], b"content-type") or b""
        if content_type.split(b";", 1)[0].strip().lower() == FORM_URLENCODED:
            limit = min(limit, FORM_MAX_BODY_BYTES)
        received = 0
        started = False
        # Set once this middleware answered in the route's place: the route's own answer
        # (whatever it makes of the disconnect) is dropped.
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, encoded))
                message["headers"] = headers
            await send(message)

        async def refuse(error: Exception) -> None:
            status, extra, body = render_error(error, request_id)
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                        *extra,
                    ],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body})

        async def limited_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = too_large(limit)
                    if started:  # too late to answer: the route's response is under way
                        raise over
                    await refuse(over)
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        refusal = self._refusal(scope, limit)
        if refusal is not None:
            await refuse(refusal)
            return
        await self.app(scope, limited_receive, send_with_id)

    def _refusal(self, scope: Scope, limit: int) -> ModelserveError | None:
        """Why the request is refused before its route runs, if it is: too many headers
        (431), a declared body over the cap (413), a compressed body (415), a credential in
        the query string (401)."""
        headers = scope["headers"]
        try:
            self.limits.check_headers(headers)
            declared = header(headers, b"content-length")
            if declared is not None and declared.isdigit():
                check_size(int(declared), limit)
            check_encoding(header(headers, b"content-encoding"))
            if scope.get("query_string") and _auth_on(scope):
                refuse_query_credentials(scope["query_string"])
        except ModelserveError as exc:
            return exc
        return None


def _auth_on(scope: Scope) -> bool:
    """Whether the app behind this request authenticates (its AuthSystem is set)."""
    state = getattr(scope.get("app"), "state", None)
    return getattr(state, "auth", None) is not None
